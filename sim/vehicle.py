"""Kinematic bicycle with first-order steering and speed lag, sized like DAVE's truck.

Inputs are what the motor controller applies: ``steering`` and ``throttle`` in [-1, 1].
Steering maps to a wheel angle up to ``max_steer_rad`` (positive turns left); throttle maps to
a target speed (forward up to ``max_speed_mps``, reverse up to ``max_reverse_mps``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from rover.errors import ConfigError


@dataclass(frozen=True)
class VehicleConfig:
    """Size, limits and actuator lags of the simulated vehicle."""

    length_m: float = 0.50
    width_m: float = 0.30
    wheelbase_m: float = 0.33
    max_steer_rad: float = 0.45
    max_speed_mps: float = 3.0
    max_reverse_mps: float = 1.0
    steer_lag_s: float = 0.10  # first-order time constant of the steering servo
    speed_lag_s: float = 0.30  # first-order time constant of the drive (speed response)
    cruise_throttle: float = 2.0 / 3.0  # throttle for the ~2 m/s cruising speed

    def __post_init__(self) -> None:
        positive = ("length_m", "width_m", "wheelbase_m", "max_steer_rad", "max_speed_mps")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ConfigError(f"vehicle {key} must be > 0; got {getattr(self, key)!r}")
        if not 0 < self.max_steer_rad < 1.4:
            raise ConfigError(
                f"vehicle max_steer_rad must be in (0, 1.4); got {self.max_steer_rad}"
            )
        for key in ("max_reverse_mps", "steer_lag_s", "speed_lag_s"):
            if getattr(self, key) < 0:
                raise ConfigError(f"vehicle {key} must be >= 0; got {getattr(self, key)!r}")
        if not 0 < self.cruise_throttle <= 1:
            raise ConfigError(
                f"vehicle cruise_throttle must be in (0, 1]; got {self.cruise_throttle}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VehicleConfig:
        """Build from a config table; unknown keys or bad values raise ConfigError."""
        names = {f.name for f in fields(cls)}
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown vehicle key {key!r}; valid: {', '.join(sorted(names))}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"bad vehicle config: {exc}; check the value types") from None

    @property
    def min_turn_radius_m(self) -> float:
        """Radius of the tightest turn (at full steering)."""
        return self.wheelbase_m / math.tan(self.max_steer_rad)

    @property
    def cruise_speed_mps(self) -> float:
        """Speed reached at the cruise throttle."""
        return self.cruise_throttle * self.max_speed_mps


@dataclass(frozen=True)
class VehicleState:
    """Pose of the footprint centre, speed and the actuators' current (lagged) positions."""

    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0
    speed_mps: float = 0.0
    steering: float = 0.0  # applied steering, normalised [-1, 1], after the servo lag
    throttle: float = 0.0  # last commanded throttle


def _lag(current: float, target: float, tau_s: float, dt_s: float) -> float:
    if tau_s <= 0:
        return target
    return current + (target - current) * (1.0 - math.exp(-dt_s / tau_s))


def clamp_unit(value: float) -> float:
    """Clamp to [-1, 1]; NaN becomes 0 so a broken policy stops rather than crashes."""
    if value != value:  # NaN
        return 0.0
    return max(-1.0, min(1.0, float(value)))


def step_vehicle(
    config: VehicleConfig, state: VehicleState, steering: float, throttle: float, dt_s: float
) -> VehicleState:
    """Advance the bicycle model by ``dt_s`` with the commanded steering and throttle."""
    steering, throttle = clamp_unit(steering), clamp_unit(throttle)
    new_steer = _lag(state.steering, steering, config.steer_lag_s, dt_s)
    top = config.max_speed_mps if throttle >= 0 else config.max_reverse_mps
    new_speed = _lag(state.speed_mps, throttle * top, config.speed_lag_s, dt_s)
    # Midpoint integration of the centre-referenced kinematic bicycle.
    speed = 0.5 * (state.speed_mps + new_speed)
    delta = 0.5 * (state.steering + new_steer) * config.max_steer_rad
    beta = math.atan(0.5 * math.tan(delta))  # slip angle at the centre (axles equidistant)
    yaw_rate = speed * math.cos(beta) * math.tan(delta) / config.wheelbase_m
    mid_yaw = state.yaw_rad + 0.5 * yaw_rate * dt_s
    x = state.x_m + speed * math.cos(mid_yaw + beta) * dt_s
    y = state.y_m + speed * math.sin(mid_yaw + beta) * dt_s
    yaw = _wrap(state.yaw_rad + yaw_rate * dt_s)
    return replace(
        state, x_m=x, y_m=y, yaw_rad=yaw, speed_mps=new_speed, steering=new_steer, throttle=throttle
    )


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def curvature(config: VehicleConfig, steering: float) -> float:
    """Path curvature (1/m, positive left) at a normalised steering position."""
    delta = clamp_unit(steering) * config.max_steer_rad
    beta = math.atan(0.5 * math.tan(delta))
    return math.cos(beta) * math.tan(delta) / config.wheelbase_m
