"""The privileged expert: sees the true obstacles and drives like a careful human.

Each step it rolls out a fan of candidate manoeuvres over ~2 s (hold a steering value for a
moment, then either keep it or straighten toward a carrot point ahead), scores each for
clearance, progress toward the goal and change from the last command, and eases the command
toward the best one. It slows down where the free path is short and backs out of dead ends.

With ``noise_steering`` or ``perturb_rate_hz`` it drives off its ideal line now and then while
``label`` keeps its clean command: record ``label`` as the training target and the
demonstrations teach recovery (PilotNet's point). Both are off by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from rover.errors import ConfigError
from sim.simulation import Observation

FOOTPRINT_CIRCLES = 3  # the footprint is covered by 3 circles along the vehicle's axis


@dataclass(frozen=True)
class ExpertConfig:
    """Planner and demonstration settings of the expert."""

    candidates: int = 21  # steering values in the fan
    horizon_s: float = 2.2
    samples: int = 12  # points checked along each rollout
    turn_s: float = 0.8  # how long a manoeuvre holds its steering before straightening
    margin_m: float = 0.15  # planned clearance below this counts as a collision
    comfort_m: float = 0.7  # clearance above this earns no further reward
    lookahead_m: float = 8.0  # carrot distance toward the goal
    smoothing_s: float = 0.1  # time constant easing the command toward the plan
    throttle: float | None = None  # cruising throttle; None: the vehicle's cruise throttle
    noise_steering: float = 0.0  # std of Gaussian noise on the steering output
    perturb_rate_hz: float = 0.0  # mean rate of recoverable steering perturbations
    perturb_steering: float = 0.5  # size of a perturbation
    perturb_duration_s: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.candidates < 3 or self.samples < 3:
            raise ConfigError("expert candidates and samples must be >= 3")
        for key in ("horizon_s", "turn_s", "margin_m", "comfort_m", "lookahead_m"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"expert {key} must be > 0; got {getattr(self, key)!r}")
        for key in ("noise_steering", "perturb_rate_hz", "perturb_steering", "smoothing_s"):
            if getattr(self, key) < 0:
                raise ConfigError(f"expert {key} must be >= 0; got {getattr(self, key)!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExpertConfig:
        """Build from a config table; unknown keys or bad values raise ConfigError."""
        names = {f.name for f in fields(cls)}
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown expert key {key!r}; valid: {', '.join(sorted(names))}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"bad expert config: {exc}; check the value types") from None


@dataclass(frozen=True)
class Plan:
    """The chosen manoeuvre: its first steering, free distance and worst clearance."""

    steering: float
    free_m: float
    clearance_m: float


class Expert:
    """Privileged planner; ``act`` returns the command, ``label`` the clean (unperturbed) one."""

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config or ExpertConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the previous command and any manoeuvre in progress."""
        self.rng = np.random.default_rng(self.config.seed)
        self.label = (0.0, 0.0)
        self.plan: Plan | None = None
        self._command = 0.0
        self._reverse_until_s = -1.0
        self._reverse_steering = 0.0
        self._perturb_until_s = -1.0
        self._perturb = 0.0

    def act(self, observation: Observation) -> tuple[float, float]:
        """The command for the next step (perturbed when demonstrations ask for it)."""
        steering, throttle = self._drive(observation)
        self.label = (steering, throttle)
        return self._perturbed(observation, steering), throttle

    def _drive(self, obs: Observation) -> tuple[float, float]:
        cfg, state, vehicle = self.config, obs.state, obs.vehicle
        cruise = vehicle.cruise_throttle if cfg.throttle is None else cfg.throttle
        if state.collided:
            self._command = 0.0
        if state.time_s < self._reverse_until_s:
            return self._reverse_steering, -0.45
        plan = self.plan = self._plan(obs)
        if plan.free_m < 0.45 and abs(state.speed_mps) < 0.4:
            # Dead end: back out, turning the nose toward the freer side.
            self._reverse_until_s = state.time_s + 0.8
            self._reverse_steering = -math.copysign(0.9, plan.steering or 1.0)
            self._command = 0.0
            return self._reverse_steering, -0.45
        alpha = 1.0 - math.exp(-obs.dt_s / cfg.smoothing_s) if cfg.smoothing_s > 0 else 1.0
        self._command += (plan.steering - self._command) * alpha
        length = cfg.horizon_s * vehicle.cruise_speed_mps
        ahead = float(np.clip((plan.free_m - 0.4) / (0.6 * length), 0.0, 1.0))
        throttle = cruise * max(0.12, ahead) * (1.0 - 0.4 * abs(self._command))
        return self._command, throttle

    def _plan(self, obs: Observation) -> Plan:
        """Roll out the fan, score every manoeuvre, return the best."""
        cfg, state, vehicle = self.config, obs.state, obs.vehicle
        fan = np.linspace(-1.0, 1.0, cfg.candidates)
        steer_targets = np.concatenate([fan, fan])  # first half holds, second half straightens
        straighten = np.repeat([False, True], cfg.candidates)
        carrot = self._carrot(obs)
        xs, ys, yaws = self._rollout(obs, steer_targets, straighten, carrot)
        clearance = self._clearance(obs, xs, ys, yaws)
        bad = clearance < cfg.margin_m
        first_bad = np.where(bad.any(axis=1), bad.argmax(axis=1), cfg.samples)
        length = cfg.horizon_s * vehicle.cruise_speed_mps
        step_m = length / cfg.samples
        last = np.maximum(first_bad - 1, 0)
        rows = np.arange(steer_targets.size)
        d0 = math.hypot(carrot[0] - state.x_m, carrot[1] - state.y_m)
        d_end = np.hypot(carrot[0] - xs[rows, last], carrot[1] - ys[rows, last])
        progress = np.where(first_bad > 0, (d0 - d_end) / length, -1.0)
        masked = np.where(np.arange(cfg.samples) < first_bad[:, None], clearance, np.inf)
        worst = np.minimum(masked.min(axis=1), cfg.comfort_m)
        worst = np.where(first_bad > 0, worst, 0.0)
        score = (
            4.0 * first_bad / cfg.samples
            + 2.0 * progress
            + 1.2 * worst / cfg.comfort_m
            - 0.35 * np.abs(steer_targets - self._command)
        )
        best = int(np.argmax(score))
        return Plan(float(steer_targets[best]), float(first_bad[best] * step_m), float(worst[best]))

    def _carrot(self, obs: Observation) -> tuple[float, float]:
        """A point ahead toward the goal: on the trail in corridors, drifting to the middle else."""
        cfg, state, world = self.config, obs.state, obs.world
        x = max(state.x_m, world.start_pose[0]) + cfg.lookahead_m
        if world.trail is not None:
            return x, float(world.trail.centre_y(x))
        return x, 0.6 * state.y_m

    def _rollout(self, obs, targets, straighten, carrot):
        """Poses (candidates, samples) along each manoeuvre, with the steering servo's lag."""
        cfg, state, vehicle = self.config, obs.state, obs.vehicle
        speed = vehicle.cruise_speed_mps
        dt = cfg.horizon_s / cfg.samples
        lag = vehicle.steer_lag_s + cfg.smoothing_s
        keep = math.exp(-dt / lag) if lag > 0 else 0.0
        n = targets.size
        x = np.full(n, state.x_m)
        y = np.full(n, state.y_m)
        yaw = np.full(n, state.yaw_rad)
        steer = np.full(n, state.steering)
        xs, ys, yaws = (np.empty((n, cfg.samples)) for _ in range(3))
        for j in range(cfg.samples):
            goal = targets
            if (j + 0.5) * dt > cfg.turn_s:
                bearing = np.arctan2(carrot[1] - y, carrot[0] - x)
                heading_error = (bearing - yaw + math.pi) % (2 * math.pi) - math.pi
                goal = np.where(straighten, np.clip(heading_error * 2.0, -1.0, 1.0), targets)
            steer = goal + (steer - goal) * keep
            delta = steer * vehicle.max_steer_rad
            beta = np.arctan(0.5 * np.tan(delta))
            turn = speed * np.cos(beta) * np.tan(delta) / vehicle.wheelbase_m * dt
            mid = yaw + 0.5 * turn + beta
            x = x + speed * dt * np.cos(mid)
            y = y + speed * dt * np.sin(mid)
            yaw = yaw + turn
            xs[:, j], ys[:, j], yaws[:, j] = x, y, yaw
        return xs, ys, yaws

    def _clearance(self, obs, xs, ys, yaws) -> np.ndarray:
        """Footprint clearance (candidates, samples), from circles covering the footprint."""
        vehicle, shapes = obs.vehicle, obs.world.shapes
        span = vehicle.length_m / FOOTPRINT_CIRCLES
        radius = math.hypot(span / 2, vehicle.width_m / 2)
        offsets = (np.arange(FOOTPRINT_CIRCLES) - (FOOTPRINT_CIRCLES - 1) / 2) * span
        reach = self.config.horizon_s * vehicle.cruise_speed_mps + vehicle.length_m + 1.0
        idx = shapes.near(obs.state.x_m, obs.state.y_m, reach)
        if idx.size == 0:
            return np.full(xs.shape, np.inf)
        px = xs[None] + offsets[:, None, None] * np.cos(yaws)[None]
        py = ys[None] + offsets[:, None, None] * np.sin(yaws)[None]
        dist = shapes.distance(px.reshape(-1), py.reshape(-1), idx).reshape(px.shape)
        return dist.min(axis=0) - radius

    def _perturbed(self, obs: Observation, steering: float) -> float:
        cfg, now = self.config, obs.state.time_s
        if cfg.perturb_rate_hz > 0 and now >= self._perturb_until_s:
            roomy = self.plan is not None and self.plan.clearance_m >= 0.5
            if roomy and self.rng.random() < cfg.perturb_rate_hz * obs.dt_s:
                self._perturb = float(self.rng.choice([-1.0, 1.0])) * cfg.perturb_steering
                self._perturb_until_s = now + cfg.perturb_duration_s
        if now < self._perturb_until_s:
            steering += self._perturb
        if cfg.noise_steering > 0:
            steering += float(self.rng.normal(0.0, cfg.noise_steering))
        return float(np.clip(steering, -1.0, 1.0))
