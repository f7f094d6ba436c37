"""Control node: arbitrated command → DRIVE over serial at a fixed rate; STATE → motor/state.

A new input is forwarded at once (lowest latency) and the DRIVE is repeated at `rate_hz`
whether or not inputs change, so the firmware's watchdog trips only when something is wrong.
On shutdown it sends a last zero-throttle, disarmed DRIVE.

It watches, and reports on health/control (one line each when it happens and when it
recovers): the motor controller (its device gone, or no STATE for ``MCU_SILENT_S``), the camera
(camera/stereo quiet for five camera periods, at least ``stale_ms``; the autopilot's
throttle is zeroed meanwhile when ``[control] camera_stale``), and on the robot whether an
operator input that can stop it is connected (``[control] require_operator``; see
rover/control.py for why the check lives here).

`--lockstep-maps` (the stack passes it for a lock-step simulator run with the traversability
node): an estimate for frame N waits until the map of frame N arrived (or `--map-wait-ms`
passed: the stack gives the simulator's answer timeout, so a later map makes a counted late
frame), so the guard judges the same frame as the CNN and a run is reproducible. The map itself is held
until its frame's estimate is answered: a 50 Hz repeat that fell between map N and estimate N
would otherwise brake with map N first, and where it fell (wall time) would move the answer.
In real time the node never waits: the newest map is the best there is.

`--lockstep` (implied by `--lockstep-maps`; `rover replay` passes it): inputs come in lock-step,
so their age is the frames' business, not the wall clock's: the controller dates every input by
its capture stamp (the simulator's frame clock), so staleness, the guard's map age and the slew
ramps count frames. The 50 Hz repeat re-sends the last command instead of re-judging it at the
wall time it fell on. A run then depends on its inputs only. An input silent for
`LOCKSTEP_STALE_FACTOR` x `stale_ms` of wall time still stops the motors, but that stop leaves
the controller as the frames left it: a stall on a loaded machine (the simulator frozen
meanwhile) changes no later command.
"""

from __future__ import annotations

import time
from dataclasses import replace

from drivers.protocol import DriveCommand
from drivers.serial_link import SerialMotorLink
from perception.traversability.polar import PolarSummary
from rover import bus, topics
from rover import messages as m
from rover.control import ControlOutput, GuardedController
from rover.node import (
    HealthPublisher,
    RateKeeper,
    Shutdown,
    node_argparser,
    node_config,
    run_main,
    spin,
)
from rover.operators import InputSelect
from rover.perturb import Perturber, perturbed

MAP_WAIT_MS = 300.0  # lock-step: longest wait for the map of an estimate's frame
# the motor controller is lost when its device is gone this long, or it sent no STATE for
# MCU_SILENT_S (a busy machine can delay a reply; the firmware's watchdog acts at 250 ms)
MCU_UNPLUGGED_S = 0.5
MCU_SILENT_S = 1.0
MCU_FIRST_REPLY_S = 1.0  # at start, on top of MCU_SILENT_S
OPERATOR_GRACE_S = 2.0  # after the first frame: the teleop node's first heartbeat may lag
NO_OPERATOR = (
    "not arming: no operator input that can stop the robot is connected: plug in a gamepad, "
    "run where a display is for the keyboard window, or pass --unattended"
)
LOCKSTEP_STALE_FACTOR = 5.0  # lock-step: the repeats re-judge (and stop) after this x stale_ms


class ControlNode:
    """Wires the Controller to the bus and the motor link."""

    def __init__(
        self,
        cfg,
        bus_cfg: topics.BusConfig,
        lockstep_maps: bool = False,
        lockstep: bool = False,
        map_wait_ms: float = MAP_WAIT_MS,
    ):
        self.cfg = cfg
        # the traversability guard acts only while perception/traversability is published
        self.controller = GuardedController(cfg.control, cfg.guard)
        # liveness as the bus judges it (rover.topics), at the camera's rate; at least stale_ms
        camera_stale_s = topics.CAMERA_STEREO.stale_after_s(cfg.camera.fps)
        self.controller.camera_stale_ms = max(cfg.control.stale_ms, 1000.0 * camera_stale_s)
        self.link = SerialMotorLink(cfg.motor)
        self.teleop = bus.Subscriber(topics.TELEOP_COMMAND, bus_cfg)
        self.remote = bus.Subscriber(topics.TELEOP_REMOTE, bus_cfg)  # remote operators
        self.inputs = InputSelect(cfg.control.stale_ms)
        self.autopilot = bus.Subscriber(topics.PERCEPTION_STEERING, bus_cfg)
        self.trav = bus.Subscriber(topics.PERCEPTION_TRAVERSABILITY, bus_cfg)
        self.camera = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg)
        self.command_pub = bus.Publisher(topics.CONTROL_COMMAND, bus_cfg)
        self.state_pub = bus.Publisher(topics.MOTOR_STATE, bus_cfg)
        self.health = HealthPublisher(topics.HEALTH_CONTROL, bus_cfg, "control")
        self.port = cfg.motor.port
        self.started_ns = time.monotonic_ns()
        self.unplugged_ns: int | None = None  # when the link last went down
        self.first_camera_ns: int | None = None
        self.rate = RateKeeper(cfg.control.rate_hz)
        self.drive_seq = 0
        self.lockstep_maps = lockstep_maps
        self.lockstep = lockstep or lockstep_maps
        self.map_wait_ms = map_wait_ms
        self.last_out: ControlOutput | None = None
        self.last_input_ns = 0
        self.lockstep_stale_ns = int(cfg.control.stale_ms * LOCKSTEP_STALE_FACTOR * 1e6)
        self.map_frame = m.NO_FRAME  # frame_seq of the newest traversability map
        self.pending: tuple[m.SteeringEstimate, int] | None = None  # waiting for its map
        self.held_map: tuple[m.TraversabilityMap, int] | None = None  # lock-step: for its estimate
        self.perturber = Perturber(cfg.perturb)  # [perturb]: DART spans, off by default

    def _offset(self, out: ControlOutput, input_stamp_ns: int | None) -> float:
        """The perturbation to add now; a new input (its capture stamp) advances it."""
        teleop = self.controller.teleop
        deadman = teleop.deadman if teleop is not None and not teleop.autopilot else True
        ok = not out.stale and self.perturber.allowed(out.throttle, deadman, out.estop)
        if input_stamp_ns is not None:
            return self.perturber.update(input_stamp_ns, ok)
        return self.perturber.offset if ok else 0.0

    def send(self, out: ControlOutput, input_stamp_ns: int | None = None) -> None:
        self.last_out = out
        self.drive_seq = (self.drive_seq + 1) & 0xFFFF
        steering, offset = perturbed(out.steering, self._offset(out, input_stamp_ns))
        self.link.send(
            DriveCommand(
                seq=self.drive_seq,
                steering=steering,
                throttle=out.throttle,
                arm=out.arm,
                estop=out.estop,
            )
        )
        self.command_pub.publish(
            m.ControlCommand(
                frame_seq=out.frame_seq,
                steering=steering,
                throttle=out.throttle,
                perturbation=offset,
                drive_seq=self.drive_seq,
                source=out.source,
                stale=out.stale,
                estop=out.estop,
            )
        )

    def output(self, now_ns: int) -> ControlOutput:
        """The controller's command, with throttle zero while a driving remote link is quiet
        (and the controller told so, so nothing resumes until the operator acts again)."""
        if self.inputs.remote_stale(now_ns):
            self.controller.on_teleop(m.TeleopCommand(stamp_ns=now_ns), self.inputs.remote_recv_ns)
        return self.inputs.guard(self.controller.output(now_ns), now_ns)

    def forward_states(self) -> None:
        health = self.link.health()
        for state in self.link.poll():
            self.state_pub.publish(
                m.MotorState(
                    steering=state.steering,
                    throttle=state.throttle,
                    armed=state.armed,
                    estop=state.estop,
                    watchdog_tripped=state.watchdog_tripped,
                    connected=health.connected,
                    drive_seq_echo=state.seq,
                    rtt_ms=health.rtt_p50_ms or 0.0,
                    reconnects=health.reconnects,
                    bad_frames=health.bad_frames,
                )
            )

    def spin_once(self) -> None:
        """Wait for input until the next tick; forward new inputs at once, then keep the rate."""
        timeout_ms = max(0.0, self.rate.remaining_s() * 1000)
        if self.pending is not None:
            timeout_ms = min(timeout_ms, 1.0)
        # wake when a driving remote link turns stale, not at the next tick
        timeout_ms = min(timeout_ms, self.inputs.ms_until_stale(time.monotonic_ns()))
        subs = [self.teleop, self.remote, self.autopilot, self.trav]
        for sub in bus.wait_any(subs, timeout_ms):
            msg = sub.receive()
            if msg is None:
                continue
            now = self.last_input_ns = time.monotonic_ns()
            at = self._dated(msg, now)
            if sub is self.trav:
                self.held_map = (msg, at)
                if not self.lockstep_maps:
                    self._apply_map()
                self.map_frame = msg.frame_seq
            elif sub is self.teleop or sub is self.remote:
                chosen = self.inputs.accept(msg, now, remote=sub is self.remote)
                if chosen is not None:
                    self.controller.on_teleop(chosen, at)
                self.send(self.output(at), msg.stamp_ns)
            elif self.lockstep_maps and msg.frame_seq > self.map_frame:
                self.pending = (msg, now)
            else:
                self._apply_map()
                self.controller.on_estimate(msg, at)
                self.send(self.output(at), msg.stamp_ns)
        if self.controller.estimate is None:
            self._apply_map()  # no autopilot in this run (teleop): no estimate to wait for
        self._release_pending()
        if self.inputs.stale_due(time.monotonic_ns()):
            self.send(self.output(time.monotonic_ns()))
        if self.rate.remaining_s() <= 0:
            if self.camera.receive() is not None:  # the newest frame: only its arrival counts
                self.controller.on_camera(self.camera.last_recv_ns)
            out = self._repeat(time.monotonic_ns())
            self.send(out)
            self.rate.keep_time()
            self.check_health(out)
        self.forward_states()

    def check_health(self, out: ControlOutput) -> None:
        """Once a tick: the motor controller, the camera and the operator, as health events."""
        now = time.monotonic_ns()
        if self.cfg.control.camera_stale:  # the robot path (see _check_link)
            self._check_link(now)
            self._check_camera(now)
        self._check_operator(out, now)
        self.health.tick()

    def _check_link(self, now: int) -> None:
        """The link down for MCU_UNPLUGGED_S, or no STATE for MCU_SILENT_S: not a blip. (Not in
        the simulator: it takes its emulator away while it writes its metrics, before it exits.)"""
        link = self.link.health()
        if link.last_state_age_ms is None:  # never answered: allow a slow first reply
            age_s = (now - self.started_ns) / 1e9 - MCU_FIRST_REPLY_S
        else:
            age_s = link.last_state_age_ms / 1000
        if link.connected:
            self.unplugged_ns = None
        elif self.unplugged_ns is None:
            self.unplugged_ns = now
        unplugged_s = 0.0 if self.unplugged_ns is None else (now - self.unplugged_ns) / 1e9
        faults = self.health.faults
        if unplugged_s > MCU_UNPLUGGED_S or age_s > MCU_SILENT_S:
            why = f"no reply for {max(age_s, MCU_SILENT_S):.1f} s"
            if not link.connected:
                why = link.last_error or "the device is gone"
            text = f"motor controller lost on {self.port} ({why}): its watchdog stops the motors"
            self.health.set("motor_link", True, text + "; reconnecting")
        elif faults.active("motor_link"):
            gone_s = faults.active_for_s("motor_link", now)
            self.health.set("motor_link", False, f"motor controller back after {gone_s:.1f} s")

    def _check_camera(self, now: int) -> None:
        faults = self.health.faults
        seen = self.controller.camera_recv_ns is not None
        if seen and self.controller.camera_stale_now(now):
            quiet_ms = self.controller.camera_stale_ms
            text = f"camera stalled: no camera/stereo frame for {quiet_ms:.0f} ms"
            self.health.set("camera_stall", True, f"{text}; the autopilot holds zero throttle")
        elif faults.active("camera_stall"):
            # the stall began camera_stale_ms before the fault was raised
            gone_s = (
                faults.active_for_s("camera_stall", now) + self.controller.camera_stale_ms / 1e3
            )
            self.health.set("camera_stall", False, f"camera frames back after {gone_s:.1f} s")

    def _check_operator(self, out: ControlOutput, now: int) -> None:
        # said once the stack is up (frames flow): a setup error is the one line before that
        first = self.first_camera_ns
        if first is None and self.controller.camera_recv_ns is not None:
            self.first_camera_ns = first = now
        up = first is not None and (now - first) / 1e9 > OPERATOR_GRACE_S
        if not out.operator and up:
            self.health.set("operator", True, NO_OPERATOR)
        elif out.operator and self.health.faults.active("operator"):
            who = self.controller.teleop.operator if self.controller.teleop else ""
            self.health.set("operator", False, f"operator input connected ({who}): arming")

    def _dated(self, msg: m.Message, recv_ns: int) -> int:
        """When the controller takes an input to have come: in lock-step its capture stamp
        (time is the frame count there), else its arrival on the wall clock."""
        return msg.stamp_ns if self.lockstep else recv_ns

    def _release_pending(self) -> None:
        """Lock-step: answer the held estimate once its frame's map is in (or waited enough)."""
        if self.pending is None:
            return
        est, received = self.pending
        now = time.monotonic_ns()
        if self.map_frame >= est.frame_seq or (now - received) / 1e6 >= self.map_wait_ms:
            self.pending = None
            self._apply_map()
            at = self._dated(est, received)
            self.controller.on_estimate(est, at)
            self.send(self.output(at), est.stamp_ns)

    def _repeat(self, now_ns: int) -> ControlOutput:
        """The 50 Hz repeat: re-judged now, or in lock-step the last command again; after
        ``LOCKSTEP_STALE_FACTOR`` x ``stale_ms`` of silence a stop that leaves the controller
        alone (the frames did not move meanwhile: the next answer is the one they call for)."""
        if not self.lockstep or self.last_out is None:
            return self.output(now_ns)
        if now_ns - self.last_input_ns > self.lockstep_stale_ns:
            last = self.last_out
            return replace(last, throttle=0.0, arm=False, stale=True, source="lockstep:silent")
        return self.last_out

    def _apply_map(self) -> None:
        """Hand the newest map to the guard (lock-step: just before its frame's estimate)."""
        if self.held_map is not None:
            msg, received = self.held_map
            self.held_map = None
            self.controller.on_traversability(PolarSummary.from_arcs(msg.arcs), received)

    def close(self) -> None:
        self.link.send(
            DriveCommand(
                seq=(self.drive_seq + 1) & 0xFFFF,
                steering=0.0,
                throttle=0.0,
                arm=False,
                estop=False,
            )
        )
        self.link.close()
        self.health.close()


def main() -> None:
    parser = node_argparser(__doc__)
    parser.add_argument(
        "--lockstep-maps", action="store_true", help="answer frame N only with its map in"
    )
    parser.add_argument(
        "--map-wait-ms",
        type=float,
        default=MAP_WAIT_MS,
        help="lock-step: longest wait for a frame's map (default: %(default)s)",
    )
    parser.add_argument(
        "--lockstep", action="store_true", help="inputs in lock-step: repeats re-send, not re-judge"
    )
    args = parser.parse_args()
    cfg, bus_cfg = node_config(args)
    stop = Shutdown()
    spin(
        ControlNode(
            cfg, bus_cfg, args.lockstep_maps, lockstep=args.lockstep, map_wait_ms=args.map_wait_ms
        ),
        stop,
    )


if __name__ == "__main__":
    run_main("control", main)
