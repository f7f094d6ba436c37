"""Control use of the polar summary: slow down and stop before what the arc ahead holds.

Pure logic (numpy only, no torch): the control node calls `TraversabilityGuard.apply` on the
command it is about to send, whatever its source. The allowed speed is the one whose stopping
distance (reaction latency plus braking) fits in the free distance of the arc being driven;
throttle is capped to that speed. In autopilot the guard may also move the steering to the
freest arc within ``bias_window`` of the policy's choice when that arc is much freer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perception.traversability.polar import PolarSummary
from rover.config import dataclass_from_dict
from rover.errors import ConfigError


@dataclass(frozen=True)
class GuardConfig:
    """[guard] settings; ``enabled = false`` switches the whole guard off."""

    enabled: bool = True
    steer_bias: bool = True  # autopilot only: steer toward a freer nearby arc
    decel_mps2: float = 2.5  # braking the drive can do (sim: ~6, kept conservative)
    latency_s: float = 0.2  # perception + control + actuator lag before braking starts
    margin_m: float = 0.25  # stop this far before the obstacle
    max_speed_mps: float = 3.0  # throttle 1.0 means this speed (the simulator's vehicle)
    bias_window: float = 0.5  # steering distance the bias may move the command
    bias_gain: float = 0.6  # how far toward the freer arc per command, 0..1
    stale_ms: float = 300.0  # older summaries mean the traversability node stalled ...
    stale_crawl_mps: float = 0.5  # ... and the speed is capped to this crawl until it returns

    @classmethod
    def from_dict(cls, raw: dict) -> GuardConfig:
        """Build from a table; unknown keys or bad values raise ConfigError."""
        cfg = dataclass_from_dict(cls, raw, "guard")
        if cfg.decel_mps2 <= 0 or cfg.max_speed_mps <= 0 or cfg.latency_s < 0:
            raise ConfigError(
                "[guard] decel_mps2 and max_speed_mps must be positive, latency_s >= 0"
            )
        return cfg


@dataclass(frozen=True)
class GuardDecision:
    """What the guard did to one command."""

    steering: float
    throttle: float
    free_m: float
    allowed_mps: float
    limited: bool  # throttle was capped
    biased: bool  # steering was moved


def stopping_distance_m(speed_mps: float, cfg: GuardConfig) -> float:
    """Distance covered before standing still from ``speed_mps`` (latency, then braking)."""
    v = max(0.0, speed_mps)
    return v * cfg.latency_s + v * v / (2.0 * cfg.decel_mps2) + cfg.margin_m


def allowed_speed_mps(free_m: float, cfg: GuardConfig) -> float:
    """The highest speed whose stopping distance fits in ``free_m``."""
    room = free_m - cfg.margin_m
    if room <= 0:
        return 0.0
    a, t = cfg.decel_mps2, cfg.latency_s
    return a * (-t + math.sqrt(t * t + 2.0 * room / a))


class TraversabilityGuard:
    """Caps throttle (any source) and, for the autopilot, biases steering toward free arcs."""

    def __init__(self, cfg: GuardConfig | None = None):
        self.cfg = cfg or GuardConfig()

    def apply(
        self, polar: PolarSummary | None, steering: float, throttle: float, autopilot: bool
    ) -> GuardDecision:
        """The command to send instead of (steering, throttle); unchanged without a summary."""
        cfg = self.cfg
        if not cfg.enabled or polar is None:
            return GuardDecision(steering, throttle, math.inf, math.inf, False, False)
        biased = False
        if autopilot and cfg.steer_bias:
            steering, biased = self._bias(polar, steering)
        free = polar.free_at(steering)
        allowed = allowed_speed_mps(free, cfg)
        cap = allowed / cfg.max_speed_mps
        limited = throttle > cap
        # reversing is never capped: backing away is how the vehicle leaves a dead end
        out = min(throttle, cap) if throttle > 0 else throttle
        return GuardDecision(steering, out, free, allowed, limited, biased)

    def _bias(self, polar: PolarSummary, steering: float) -> tuple[float, bool]:
        """Move toward the freest arc within the window when the chosen one is short."""
        free_here = polar.free_at(steering)
        horizon = stopping_distance_m(self.cfg.max_speed_mps, self.cfg)
        if free_here >= horizon:
            return steering, False
        near = [
            (min(f, horizon) - 0.5 * abs(s - steering), s)
            for s, f in zip(polar.steering.tolist(), polar.free_m.tolist(), strict=True)
            if abs(s - steering) <= self.cfg.bias_window
        ]
        best_score, best = max(near)
        if best_score <= free_here or best == steering:
            return steering, False
        return steering + self.cfg.bias_gain * (best - steering), True
