"""Command arbitration for the control node: plain logic, no bus, no serial.

Picks the source (the human's teleop command, or the autopilot's steering estimate), limits how
fast steering and throttle change, and zeroes throttle when the source goes stale or on e-stop.

On the robot two more rules hold (``require_operator``, ``camera_stale``; the stack sets them
without ``--sim``). The operator check lives here, on the teleop heartbeats, rather than in the
CLI before the stack starts: the control node is the last process before the motors, so
whatever fails upstream (the teleop node crashes, its window closes, the pad is unplugged, a
remote console's link drops) reads as no live heartbeat naming an input, and the motors are
disarmed within ``stale_ms``, for the whole run, not only at start. Any source of teleop
commands (the teleop node's window, gamepad or script; the remote console) passes the check by
naming its input in ``TeleopCommand.operator``.
Slew limits advance with the inputs' capture stamps, so a lock-step simulation run (whose
stamps advance exactly one frame period per step) is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from perception.traversability.guard import GuardConfig, TraversabilityGuard, stopping_distance_m
from perception.traversability.polar import PolarSummary
from rover import messages as m
from rover.config import dataclass_from_dict
from rover.errors import ConfigError


@dataclass(frozen=True)
class ControlConfig:
    """[control] section: send rate, staleness, slew limits, autopilot default."""

    rate_hz: float = 50.0
    stale_ms: float = 200.0
    steering_slew_per_s: float = 6.0  # full left to full right in 1/3 s
    throttle_slew_per_s: float = 3.0
    max_throttle: float = 1.0
    autopilot_without_teleop: bool = False  # drive mode: follow the autopilot when no human
    # the robot path: never arm without a live operator input that can stop the robot
    # (a teleop heartbeat naming its input); `--unattended` turns it off
    require_operator: bool = False
    # the robot path: the autopilot's throttle is zeroed when camera/stereo goes quiet
    camera_stale: bool = False

    @classmethod
    def from_dict(cls, raw: dict) -> ControlConfig:
        cfg = dataclass_from_dict(cls, raw, "control")
        if cfg.rate_hz <= 0 or cfg.stale_ms <= 0:
            raise ConfigError("[control] rate_hz and stale_ms must be positive")
        if not 0 < cfg.max_throttle <= 1:
            raise ConfigError(f"[control] max_throttle = {cfg.max_throttle}: use (0, 1]")
        return cfg


@dataclass(frozen=True)
class ControlOutput:
    """What goes to the motors now, and why."""

    steering: float
    throttle: float
    arm: bool
    estop: bool
    stale: bool
    source: str
    frame_seq: int
    operator: bool = True  # an operator input that can stop the robot is connected (or none needed)


def _clamp(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return lo if x < lo else hi if x > hi else x


class _Ramp:
    def __init__(self, slew_per_s: float):
        self.slew = slew_per_s
        self.value = 0.0
        self.stamp_ns: int | None = None

    def toward(self, target: float, stamp_ns: int) -> float:
        dt = 0.0 if self.stamp_ns is None else max(0.0, (stamp_ns - self.stamp_ns) / 1e9)
        dt = min(dt, 0.1)  # after a pause, ramp from where we were, not in one jump
        self.stamp_ns = stamp_ns
        step = self.slew * dt
        self.value = _clamp(target, self.value - step, self.value + step)
        return self.value


class Controller:
    """Arbitrates teleop vs autopilot, applies slew limits, stale and e-stop safety."""

    def __init__(self, config: ControlConfig | None = None):
        self.cfg = config or ControlConfig()
        self.teleop: m.TeleopCommand | None = None
        self.teleop_recv_ns = 0
        self.estimate: m.SteeringEstimate | None = None
        self.estimate_recv_ns = 0
        self._steer = _Ramp(self.cfg.steering_slew_per_s)
        self._throttle = _Ramp(self.cfg.throttle_slew_per_s)
        self.source = "none"
        self.frame_seq = m.NO_FRAME
        self.camera_recv_ns: int | None = None  # None until the first camera frame
        # a camera is stalled after stale_ms, or five of its periods if that is longer
        self.camera_stale_ms = self.cfg.stale_ms

    def on_teleop(self, cmd: m.TeleopCommand, recv_ns: int) -> None:
        self.teleop, self.teleop_recv_ns = cmd, recv_ns
        if self._active() == "teleop":
            self._advance(
                cmd.steering,
                cmd.throttle if cmd.deadman else 0.0,
                cmd.stamp_ns,
                "teleop",
                cmd.frame_seq,
            )

    def on_estimate(self, est: m.SteeringEstimate, recv_ns: int) -> None:
        self.estimate, self.estimate_recv_ns = est, recv_ns
        if self._active() == "autopilot":
            self._advance(
                est.steering, est.throttle, est.stamp_ns, est.source or "autopilot", est.frame_seq
            )

    def on_camera(self, recv_ns: int) -> None:
        """A camera frame arrived (only its arrival matters: the autopilot needs fresh frames)."""
        self.camera_recv_ns = recv_ns

    def operator_connected(self, now_ns: int) -> bool:
        """True when a live teleop heartbeat names an input that can stop the robot."""
        t = self.teleop
        fresh = t is not None and (now_ns - self.teleop_recv_ns) / 1e6 <= self.cfg.stale_ms
        return fresh and bool(t.operator)

    def camera_stale_now(self, now_ns: int) -> bool:
        """No camera frame within ``camera_stale_ms`` (or none yet)."""
        recv = self.camera_recv_ns
        return recv is None or (now_ns - recv) / 1e6 > self.camera_stale_ms

    def _active(self) -> str:
        if self.teleop is not None and not self.teleop.autopilot:
            return "teleop"
        if self.teleop is not None or self.cfg.autopilot_without_teleop:
            return "autopilot"
        return "none"

    def _advance(
        self, steering: float, throttle: float, stamp_ns: int, source: str, frame_seq: int
    ) -> None:
        self._steer.toward(_clamp(steering), stamp_ns)
        self._throttle.toward(
            _clamp(throttle, -self.cfg.max_throttle, self.cfg.max_throttle), stamp_ns
        )
        self.source, self.frame_seq = source, frame_seq

    def output(self, now_ns: int) -> ControlOutput:
        """The command to send at `now_ns`: zero throttle if the active input is stale."""
        active = self._active()
        recv_ns = self.teleop_recv_ns if active == "teleop" else self.estimate_recv_ns
        stale = active == "none" or (now_ns - recv_ns) / 1e6 > self.cfg.stale_ms
        why = "stale"
        if not stale and active == "autopilot" and self.cfg.camera_stale:
            stale = self.camera_stale_now(now_ns)
            why = "stale-camera"
        operator = not self.cfg.require_operator or self.operator_connected(now_ns)
        if not operator and not stale:
            stale, why = True, "no-operator"
        if active == "teleop" and self.teleop is not None and not self.teleop.deadman:
            self._throttle.value = 0.0  # deadman released: stop now, not after a ramp
        estop = bool(self.teleop and self.teleop.estop)
        if stale or estop:
            self._throttle.value = 0.0
        return ControlOutput(
            steering=self._steer.value,
            throttle=self._throttle.value,
            arm=not estop and not stale,
            estop=estop,
            stale=stale,
            source=self.source if not stale else f"{active}:{why}",
            frame_seq=self.frame_seq,
            operator=operator,
        )


class GuardedController(Controller):
    """The control node's controller: arbitration (`Controller`) + the traversability guard.

    The autopilot's steering target is biased toward a freer nearby arc before the slew limit;
    the throttle is capped after it, so braking is immediate. A summary older than the guard's
    ``stale_ms`` (the traversability node stalled) caps the speed to a crawl.
    """

    def __init__(self, config: ControlConfig | None = None, guard: GuardConfig | None = None):
        super().__init__(config)
        self.guard = TraversabilityGuard(guard)
        self.polar: PolarSummary | None = None
        self.polar_recv_ns = 0
        self.limited_steps = self.biased_steps = 0  # how often it braked / steered

    def on_traversability(self, polar: PolarSummary, recv_ns: int) -> None:
        """A new summary from perception/traversability."""
        self.polar, self.polar_recv_ns = polar, recv_ns

    def _fresh_polar(self, now_ns: int) -> PolarSummary | None:
        if self.polar is None or not self.guard.cfg.enabled:
            return None
        if (now_ns - self.polar_recv_ns) / 1e6 > self.guard.cfg.stale_ms:
            room = stopping_distance_m(self.guard.cfg.stale_crawl_mps, self.guard.cfg)
            return PolarSummary(self.polar.steering, np.full_like(self.polar.free_m, room))
        return self.polar

    def on_estimate(self, est: m.SteeringEstimate, recv_ns: int) -> None:
        polar = self._fresh_polar(recv_ns)
        if polar is not None and self._active() == "autopilot":
            decision = self.guard.apply(polar, est.steering, est.throttle, True)
            self.biased_steps += decision.biased
            est = replace(est, steering=decision.steering)
        super().on_estimate(est, recv_ns)

    def output(self, now_ns: int) -> ControlOutput:
        out = super().output(now_ns)
        polar = self._fresh_polar(now_ns)
        if polar is None:
            return out
        decision = self.guard.apply(polar, out.steering, out.throttle, autopilot=False)
        if decision.throttle >= out.throttle:
            return out
        self._throttle.value = decision.throttle  # brake now, not after the slew ramp
        self.limited_steps += 1
        return replace(out, throttle=decision.throttle)
