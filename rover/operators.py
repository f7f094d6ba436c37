"""Who drives: plain logic for remote operators, no bus, no sockets.

`OperatorGate` runs in the robot's remote node: one operator at a time holds the controls (the
first to connect; the next one when it lets go), the others get the view; a new session moves
nothing until its operator acts (presses the deadman or switches to autopilot): until then its
commands are heartbeats (deadman released, naming the operator, so the control node counts a
connected console as an input that can stop the robot). An e-stop from anyone latches until the
driver re-arms.

`InputSelect` runs in the control node: it picks the local operator input (teleop/command: the
keyboard window or gamepad by the robot) or the remote one (teleop/remote). A remote operator
takes over when it acts (deadman, autopilot or e-stop), not by connecting; the person by the
robot wins whenever they hold the deadman or press e-stop. Once a remote operator drives, its
link going quiet is a stale input and throttle goes to zero, whatever mode it left.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rover import messages as m
from rover.control import ControlOutput

DRIVER, VIEWER = "driver", "viewer"


@dataclass(frozen=True)
class OperatorInput:
    """What one operator's device says now (a console page, a laptop's window or gamepad)."""

    steering: float = 0.0
    throttle: float = 0.0
    deadman: bool = False
    autopilot: bool = False
    estop: bool = False
    record: bool = False


@dataclass
class _Session:
    name: str
    engaged: bool = False
    last: OperatorInput = dataclasses.field(default_factory=OperatorInput)
    heard_ns: int = 0


class OperatorGate:
    """Turns remote operators' inputs into the commands the robot publishes (or none)."""

    def __init__(self, resume_gap_ms: float = 1000.0):
        # a session silent this long lost its link: it must act again (release, then press).
        # Shorter gaps are hiccups: the control node zeroes throttle after stale_ms anyway, and
        # the finger that never left the joystick drives on when the commands come back.
        self.resume_gap_ns = int(resume_gap_ms * 1e6)
        self.sessions: dict[str, _Session] = {}
        self.driver: str | None = None
        self.estop_latched = False

    def join(self, sid: str, name: str) -> str:
        """A new session; returns its role. The first one connected holds the controls."""
        self.sessions[sid] = _Session(name)
        self._disengage(self.sessions[sid])
        if self.driver is None:
            self.driver = sid
        return self.role(sid)

    def role(self, sid: str) -> str:
        return DRIVER if sid == self.driver else VIEWER

    def driver_name(self) -> str:
        return self.sessions[self.driver].name if self.driver in self.sessions else ""

    def leave(self, sid: str) -> m.TeleopCommand | None:
        """A session closed (or its link was dropped): hand the controls on. Returns the stop
        command to publish when it was driving."""
        session = self.sessions.pop(sid, None)
        if session is None or sid != self.driver:
            return None
        return self.release(sid, closing=session)

    def release(self, sid: str, closing: _Session | None = None) -> m.TeleopCommand | None:
        """The driver lets go: the next session in line gets the view's controls (and must act
        before anything moves). Returns a stop command when the driver had engaged."""
        if sid != self.driver:
            return None
        session = closing or self.sessions[sid]
        was_engaged, session.engaged = session.engaged, False
        waiting = [s for s in self.sessions if s != sid]
        self.driver = waiting[0] if waiting else None
        if self.driver is not None:
            self._disengage(self.sessions[self.driver])
        # the recording stays as the driver left it (a pause outlives the page)
        return self._stop(session.name, session.last.record) if was_engaged else None

    @staticmethod
    def _disengage(session: _Session) -> None:
        """It must act anew: a deadman or autopilot already on is no act (release, press)."""
        session.engaged = False
        session.last = OperatorInput(deadman=True, autopilot=True)

    def rearm(self, sid: str) -> bool:
        """Only the driver clears a latched e-stop."""
        if sid == self.driver:
            self.estop_latched = False
            return True
        return False

    def command(self, sid: str, inp: OperatorInput, now_ns: int = 0) -> m.TeleopCommand | None:
        """The command to publish for this input, or None (a viewer). A driver who has not
        acted since connecting, or since its link went quiet, gets heartbeats only."""
        session = self.sessions.get(sid)
        if session is None:
            return None
        if now_ns and session.heard_ns and now_ns - session.heard_ns > self.resume_gap_ns:
            self._disengage(session)  # the link came back: a held deadman is no new act
        session.heard_ns = now_ns or session.heard_ns
        previous, session.last = session.last, inp
        if inp.estop and not self.estop_latched:
            self.estop_latched = True
            return self._stop(session.name, inp.record)
        if sid != self.driver:
            return None
        acted = (inp.deadman and not previous.deadman) or (inp.autopilot and not previous.autopilot)
        session.engaged = session.engaged or acted
        if not session.engaged:
            # a heartbeat: connected, moving nothing (its record button still pauses)
            return self._stop(session.name, inp.record)
        return m.TeleopCommand(
            steering=inp.steering,
            throttle=inp.throttle if inp.deadman else 0.0,
            deadman=inp.deadman and not self.estop_latched,
            autopilot=inp.autopilot and not self.estop_latched,
            estop=self.estop_latched,
            operator=f"remote {session.name}",
            record_paused=inp.record,  # the driver's record button: pause the recording
        )

    def _stop(self, name: str = "", record_paused: bool = False) -> m.TeleopCommand:
        return m.TeleopCommand(
            estop=self.estop_latched,
            operator=f"remote {name}" if name else "",
            record_paused=record_paused,
        )


class InputSelect:
    """Local (teleop/command) or remote (teleop/remote): which one the controller follows."""

    def __init__(self, stale_ms: float):
        self.stale_ns = int(stale_ms * 1e6)
        self.source = "local"
        self.local_recv_ns = 0
        self.remote_recv_ns = 0
        self._local_holds = False
        self._stale_sent = False
        self.remote_operator = ""

    def accept(self, cmd: m.TeleopCommand, recv_ns: int, remote: bool) -> m.TeleopCommand | None:
        """The command the controller should take (`cmd`, or the local one naming a connected
        remote operator as the input that can stop the robot), else None."""
        if not remote:
            self.local_recv_ns = recv_ns
            self._local_holds = cmd.deadman or cmd.estop
            if self._local_holds:
                self.source = "local"
            if self.source != "local":
                return None
            if not cmd.operator and self._remote_fresh(recv_ns) and self.remote_operator:
                return dataclasses.replace(cmd, operator=self.remote_operator)
            return cmd
        self.remote_recv_ns = recv_ns
        self._stale_sent = False
        self.remote_operator = cmd.operator
        if self._local_holds and recv_ns - self.local_recv_ns <= self.stale_ns:
            return None  # the person by the robot has it
        if self.source != "remote" and not (cmd.deadman or cmd.autopilot or cmd.estop):
            return None  # connected, not acting: a heartbeat takes nothing over
        self.source = "remote"
        return cmd

    def ms_until_stale(self, now_ns: int) -> float:
        """How long until the driving remote link counts as stale (inf: not driving, or it
        already does): the control node wakes then, not at its next tick."""
        if self.source != "remote" or self._stale_sent:
            return float("inf")
        return max(0.0, (self.remote_recv_ns + self.stale_ns - now_ns) / 1e6) + 0.5

    def stale_due(self, now_ns: int) -> bool:
        """True once when the driving remote link has just turned stale (send the stop now)."""
        if self._stale_sent or not self.remote_stale(now_ns):
            return False
        self._stale_sent = True
        return True

    def _remote_fresh(self, now_ns: int) -> bool:
        return now_ns - self.remote_recv_ns <= self.stale_ns

    def remote_stale(self, now_ns: int) -> bool:
        return self.source == "remote" and now_ns - self.remote_recv_ns > self.stale_ns

    def guard(self, out: ControlOutput, now_ns: int) -> ControlOutput:
        """Zero throttle and disarm when the remote operator who drives went quiet."""
        if not self.remote_stale(now_ns):
            return out
        return dataclasses.replace(out, throttle=0.0, arm=False, stale=True, source="remote:stale")
