"""The guard: it slows, then stops before an obstacle, and biases the autopilot toward free arcs."""

from __future__ import annotations

import numpy as np
import pytest

from perception.traversability.guard import (
    GuardConfig,
    TraversabilityGuard,
    allowed_speed_mps,
    stopping_distance_m,
)
from perception.traversability.polar import PolarSummary


def test_stopping_distance_and_allowed_speed_agree():
    cfg = GuardConfig()
    for speed in (0.0, 0.5, 1.0, 2.0, 3.0):
        free = stopping_distance_m(speed, cfg)
        assert allowed_speed_mps(free, cfg) == pytest.approx(speed, abs=1e-6)
    assert allowed_speed_mps(cfg.margin_m, cfg) == 0.0


def polar_with(free_by_steering: dict[float, float], default: float = 25.0) -> PolarSummary:
    steering = np.linspace(-1, 1, 15).astype(np.float32)
    free = np.full(15, default, np.float32)
    for s, f in free_by_steering.items():
        free[np.argmin(np.abs(steering - s))] = f
    return PolarSummary(steering, free)


def test_guard_slows_then_stops_before_an_obstacle_whatever_the_source():
    guard = TraversabilityGuard(GuardConfig(steer_bias=False))
    far = guard.apply(polar_with({}), 0.0, 0.7, autopilot=False)
    assert far.throttle == 0.7 and not far.limited
    closer = guard.apply(polar_with({0.0: 1.2}), 0.0, 0.7, autopilot=False)
    assert 0.0 < closer.throttle < 0.7 and closer.limited
    blocked = guard.apply(polar_with({0.0: 0.2}), 0.0, 0.7, autopilot=True)
    assert blocked.throttle == 0.0
    reverse = guard.apply(polar_with({0.0: 0.2}), 0.0, -0.4, autopilot=False)
    assert reverse.throttle == -0.4  # backing away is never blocked
    off = TraversabilityGuard(GuardConfig(enabled=False))
    assert off.apply(polar_with({0.0: 0.2}), 0.0, 0.7, autopilot=False).throttle == 0.7
    assert guard.apply(None, 0.0, 0.7, autopilot=False).throttle == 0.7


def test_guard_biases_autopilot_steering_toward_the_freer_nearby_arc():
    guard = TraversabilityGuard()
    polar = polar_with({0.0: 1.0, 0.1428: 1.0, -0.1428: 1.0}, default=1.0)
    polar.free_m[np.argmin(np.abs(polar.steering - 0.4286))] = 20.0
    polar.free_m[np.argmin(np.abs(polar.steering - 0.2857))] = 20.0
    auto = guard.apply(polar, 0.0, 0.6, autopilot=True)
    assert auto.biased and auto.steering > 0.1
    human = guard.apply(polar, 0.0, 0.6, autopilot=False)
    assert not human.biased and human.steering == 0.0
