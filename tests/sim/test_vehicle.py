"""The bicycle model: speeds, lags, turning radius, limits and config errors."""

from __future__ import annotations

import math

import pytest

from rover.errors import ConfigError
from sim.vehicle import VehicleConfig, VehicleState, curvature, step_vehicle

DT = 1.0 / 30.0


def drive(config: VehicleConfig, steering: float, throttle: float, seconds: float):
    state = VehicleState()
    for _ in range(round(seconds / DT)):
        state = step_vehicle(config, state, steering, throttle, DT)
    return state


def test_default_truck_is_dave_sized_and_cruises_near_two_metres_per_second():
    config = VehicleConfig()
    assert 0.4 <= config.length_m <= 0.6
    state = drive(config, 0.0, config.cruise_throttle, 3.0)
    assert state.speed_mps == pytest.approx(2.0, abs=0.02)
    assert state.y_m == pytest.approx(0.0, abs=1e-9)
    assert state.x_m == pytest.approx(2.0 * 3.0 - 2.0 * config.speed_lag_s, rel=0.02)


def test_speed_follows_throttle_with_first_order_lag():
    config = VehicleConfig(speed_lag_s=0.3)
    after_tau = drive(config, 0.0, 1.0, 0.3)
    assert after_tau.speed_mps == pytest.approx(config.max_speed_mps * (1 - math.exp(-1)), rel=0.01)


def test_reverse_is_slower_than_forward():
    config = VehicleConfig()
    state = drive(config, 0.0, -1.0, 3.0)
    assert state.speed_mps == pytest.approx(-config.max_reverse_mps, abs=0.01)
    assert state.x_m < 0


def test_steady_full_left_turn_follows_the_minimum_radius_circle():
    config = VehicleConfig()
    state = VehicleState(speed_mps=1.0, steering=1.0)
    xs, ys = [], []
    for _ in range(300):
        state = step_vehicle(config, state, 1.0, 1.0 / config.max_speed_mps, DT)
        xs.append(state.x_m)
        ys.append(state.y_m)
    radius = 1.0 / curvature(config, 1.0)
    # The centre of the footprint slides at the slip angle beta; the turn centre is square to it.
    beta = math.atan(0.5 * math.tan(config.max_steer_rad))
    cx, cy = -radius * math.sin(beta), radius * math.cos(beta)
    dists = [math.hypot(x - cx, y - cy) for x, y in zip(xs, ys, strict=True)]
    assert min(dists) == pytest.approx(radius, rel=0.03)
    assert max(dists) == pytest.approx(radius, rel=0.03)
    assert config.min_turn_radius_m < radius < 2 * config.min_turn_radius_m


def test_steering_servo_lags_and_inputs_are_clamped():
    config = VehicleConfig(steer_lag_s=0.1)
    state = step_vehicle(config, VehicleState(), 5.0, 0.0, 0.1)
    assert state.steering == pytest.approx(1 - math.exp(-1), rel=1e-6)
    assert step_vehicle(config, VehicleState(), float("nan"), float("nan"), DT) == VehicleState()


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"length_m": 0}, "length_m"),
        ({"max_steer_rad": 2.0}, "max_steer_rad"),
        ({"speed_lag_s": -1}, "speed_lag_s"),
        ({"wheel_base": 1}, "wheel_base"),
        ({"cruise_throttle": 1.5}, "cruise_throttle"),
    ],
)
def test_bad_vehicle_config_names_the_key(values, needle):
    with pytest.raises(ConfigError, match=needle):
        VehicleConfig.from_dict(values)
