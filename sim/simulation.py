"""The simulation: a world, a vehicle, collisions with interventions, rendering and metrics.

Deterministic from (scenario, seed): the same inputs give the same trajectory, bit for bit.
Call ``step`` once per camera frame (default 1/30 s) with the motor controller's normalised
``steering`` and ``throttle``; ``render`` returns what the two cameras see now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rover.errors import ConfigError
from sim.camera import CameraModel
from sim.metrics import RunLog, compute_metrics, write_trajectory_png
from sim.render import GroundTruth, StereoRenderer
from sim.scenario import Scenario, load_scenario
from sim.vehicle import VehicleConfig, VehicleState, clamp_unit, step_vehicle
from sim.world import World, generate_world

FRAME_DT_S = 1.0 / 30.0  # the camera rate: one step per frame
TRAIL_SPACING_M = 0.05
SAFETY_DRIVER_MAX_S = 30.0  # a takeover longer than this is no takeover but a second driver


def check_safety_driver_s(seconds: float, name: str = "safety_driver_s") -> float:
    """The one range check of a safety driver's takeover time (ConfigError naming `name`)."""
    if not 0.0 <= seconds <= SAFETY_DRIVER_MAX_S:
        raise ConfigError(f"{name} {seconds:g}: give 0 to {SAFETY_DRIVER_MAX_S:g} seconds")
    return seconds


@dataclass(frozen=True)
class SimState:
    """Everything a policy, HUD or metric needs about the run right now."""

    step: int
    time_s: float
    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float
    steering: float  # applied (after the servo lag), normalised
    steering_cmd: float  # last command, normalised
    throttle_cmd: float
    collisions: int
    collided: bool  # an intervention happened during the last step
    distance_m: float
    clearance_m: float  # footprint to the nearest obstacle
    min_clearance_m: float
    goal_progress: float
    reached_goal: bool
    timed_out: bool
    takeover: bool = False  # the safety driver (the expert) drives this step, not the policy

    @property
    def done(self) -> bool:
        """The episode is over: goal reached or time limit hit."""
        return self.reached_goal or self.timed_out


@dataclass(frozen=True)
class Observation:
    """What a policy gets: the state, the world (privileged) and optionally the images."""

    state: SimState
    world: World
    vehicle: VehicleConfig
    dt_s: float
    left: np.ndarray | None = None
    right: np.ndarray | None = None


class Policy(Protocol):
    """Anything that maps an observation to (steering, throttle), each in [-1, 1]."""

    def act(self, observation: Observation) -> tuple[float, float]:
        """The command to apply for the next step."""
        ...


class Simulation:
    """One scenario, one seed, one vehicle: step it, render it, score it."""

    def __init__(
        self,
        scenario: Scenario | str | Path,
        seed: int | None = None,
        *,
        vehicle: VehicleConfig | None = None,
        camera: CameraModel | None = None,
        dt_s: float = FRAME_DT_S,
        reset_back_m: float = 1.0,
        safety_driver_s: float = 0.0,
        safety_driver: Policy | None = None,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.vehicle = vehicle or VehicleConfig()
        self.camera = camera or CameraModel()
        if not 0 < dt_s <= 1.0:
            raise ConfigError(f"dt_s must be in (0, 1] seconds; got {dt_s}")
        if not 0 < reset_back_m <= 20.0:
            raise ConfigError(f"reset_back_m must be in (0, 20] metres; got {reset_back_m}")
        self.dt_s = dt_s
        check_safety_driver_s(safety_driver_s)
        self.reset_back_m = reset_back_m
        if safety_driver_s > 0 and safety_driver is None:
            raise ConfigError(
                "safety_driver_s > 0 needs a safety_driver policy (e.g. sim.Expert())"
            )
        self.safety_driver_s = float(safety_driver_s)
        self._safety_driver: Any = safety_driver  # injected: the core knows no policy
        self._seed = self.scenario.seed if seed is None else int(seed)
        self._world = generate_world(self.scenario, self._seed)
        self._renderer: StereoRenderer | None = None
        self.reset()

    @classmethod
    def from_world(cls, world: World, **kwargs: Any) -> Simulation:
        """A simulation of a given (e.g. hand-built) world; ``reset(seed)`` draws new ones."""
        sim = cls(world.scenario, world.seed, **kwargs)
        sim._world = world
        sim._renderer = None
        sim.reset()
        return sim

    @property
    def world(self) -> World:
        """The current world (changes only on ``reset`` with a new seed)."""
        return self._world

    @property
    def renderer(self) -> StereoRenderer:
        """The stereo renderer (built on first use: its textures take ~50 ms)."""
        if self._renderer is None:
            self._renderer = StereoRenderer(self.world, self.camera)
        return self._renderer

    @property
    def state(self) -> SimState:
        """The current state."""
        return self._state

    @property
    def done(self) -> bool:
        """True once the goal is reached or the time limit is hit."""
        return self._state.done

    def reset(self, seed: int | None = None) -> SimState:
        """Start again at the start pose; a new ``seed`` draws a new world."""
        if seed is not None and int(seed) != self._seed:
            self._seed = int(seed)
            self._world = generate_world(self.scenario, self._seed)
            self._renderer = None
        x, y, yaw = self.world.start_pose
        self._vehicle_state = VehicleState(x_m=x, y_m=y, yaw_rad=yaw)
        self._trail = [(x, y, yaw, 0.0)]  # (x, y, yaw, distance along the trail) every 5 cm
        self._trail_distance = 0.0
        self._steps = 0
        self._time_s = 0.0
        self._takeover_until_s = -1.0
        self.log = RunLog()
        clearance = self._clearance(self._vehicle_state)
        self._state = self._make_state((0.0, 0.0), False, clearance, clearance)
        return self._state

    def step(self, steering: float, throttle: float, dt_s: float | None = None) -> SimState:
        """Apply (steering, throttle) for ``dt_s`` (default: one frame); returns the new state."""
        if self._state.done:
            raise RuntimeError("the episode is over (goal or time limit); call reset()")
        dt = self.dt_s if dt_s is None else float(dt_s)
        takeover = self._time_s < self._takeover_until_s - 1e-9
        if takeover:
            steering, throttle = self._safety_driver.act(self.observation())
        command = (clamp_unit(steering), clamp_unit(throttle))
        before = self._vehicle_state
        after = step_vehicle(self.vehicle, before, command[0], command[1], dt)
        half_l, half_w = self.vehicle.length_m / 2, self.vehicle.width_m / 2
        hit = self.world.shapes.footprint_hits(after.x_m, after.y_m, after.yaw_rad, half_l, half_w)
        moved = math.hypot(after.x_m - before.x_m, after.y_m - before.y_m)
        if takeover:
            self.log.takeover_m += moved
        else:
            self.log.distance_m += moved
        self._trail_distance += moved
        collided = hit.size > 0
        if collided:
            self.log.collision_xy.append((after.x_m, after.y_m))
            after = self._intervene(after)
            self._take_over(self._time_s + dt)
        else:
            self._extend_trail(after)
        self._vehicle_state = after
        self._steps += 1
        self._time_s += dt
        clearance = 0.0 if collided else self._clearance(after)
        min_clearance = min(self._state.min_clearance_m, clearance)
        self._state = self._make_state(command, collided, clearance, min_clearance, takeover)
        self.log.reached_goal = self._state.reached_goal
        pose = (after.x_m, after.y_m, after.yaw_rad)
        self.log.append(self._time_s, pose, after.speed_mps, command, clearance)
        return self._state

    def render(self) -> tuple[np.ndarray, np.ndarray, GroundTruth]:
        """Left and right RGB images (H, W, 3 uint8) and per-pixel ground truth, now."""
        s = self._vehicle_state
        return self.renderer.render_vehicle(s.x_m, s.y_m, s.yaw_rad)

    def observation(self, images: bool = False) -> Observation:
        """The current observation; ``images=True`` renders the stereo pair into it."""
        left = right = None
        if images:
            left, right, _ = self.render()
        return Observation(self._state, self.world, self.vehicle, self.dt_s, left, right)

    def run(self, policy: Policy, images: bool = False, max_steps: int | None = None):
        """Drive ``policy`` until the episode ends; returns the metrics dict."""
        steps = 0
        while not self.done and (max_steps is None or steps < max_steps):
            steering, throttle = policy.act(self.observation(images))
            self.step(steering, throttle)
            steps += 1
        return self.metrics()

    def metrics(self) -> dict[str, Any]:
        """The run's figures so far (see ``sim.metrics``)."""
        return compute_metrics(self.log, self.world)

    def write_trajectory_png(self, path: str | Path, px_per_m: float = 8.0) -> Path:
        """Top-down picture of the run so far."""
        return write_trajectory_png(path, self.world, self.log, px_per_m)

    def _make_state(
        self, command, collided: bool, clearance: float, min_clearance: float, takeover=False
    ):
        v = self._vehicle_state
        return SimState(
            step=self._steps,
            time_s=self._time_s,
            x_m=v.x_m,
            y_m=v.y_m,
            yaw_rad=v.yaw_rad,
            speed_mps=v.speed_mps,
            steering=v.steering,
            steering_cmd=command[0],
            throttle_cmd=command[1],
            collisions=len(self.log.collision_xy),
            collided=collided,
            distance_m=self.log.distance_m,
            clearance_m=clearance,
            min_clearance_m=min_clearance,
            goal_progress=1.0 if self.log.reached_goal else self.world.goal_progress(v.x_m),
            reached_goal=self.log.reached_goal or self.world.reached_goal(v.x_m),
            timed_out=self._time_s >= self.scenario.task.time_limit_s - 1e-9,
            takeover=takeover,
        )

    def _clearance(self, v: VehicleState) -> float:
        return self.world.shapes.footprint_clearance(
            v.x_m, v.y_m, v.yaw_rad, self.vehicle.length_m / 2, self.vehicle.width_m / 2
        )

    def _extend_trail(self, v: VehicleState) -> None:
        last = self._trail[-1]
        if math.hypot(v.x_m - last[0], v.y_m - last[1]) >= TRAIL_SPACING_M:
            self._trail.append((v.x_m, v.y_m, v.yaw_rad, self._trail_distance))

    def _intervene(self, crashed: VehicleState) -> VehicleState:
        """Put the vehicle back on a free pose of its trail behind the collision, as it was there."""
        half_l = self.vehicle.length_m / 2 + 0.05
        half_w = self.vehicle.width_m / 2 + 0.05
        target = self._trail_distance - self.reset_back_m
        while True:
            i = self._index_at(target)
            x, y, yaw, _ = self._trail[i]
            free = not self.world.shapes.footprint_hits(x, y, yaw, half_l, half_w).size
            if free or i == 0:
                break
            target -= 0.25
        if not free:
            x, y, yaw = self.world.start_pose
            i = 0
        del self._trail[i + 1 :]
        self._trail_distance = self._trail[i][3]
        return VehicleState(x_m=x, y_m=y, yaw_rad=yaw)

    def _take_over(self, now_s: float) -> None:
        """A safety driver's intervention: the injected policy (the expert) drives for
        ``safety_driver_s`` from the put-back pose, then hands back (PilotNet's protocol; off
        at 0)."""
        if self.safety_driver_s <= 0:
            return
        if now_s >= self._takeover_until_s and hasattr(self._safety_driver, "reset"):
            self._safety_driver.reset()
        self._takeover_until_s = now_s + self.safety_driver_s

    def _index_at(self, distance_m: float) -> int:
        dists = [p[3] for p in self._trail]
        return max(0, int(np.searchsorted(dists, distance_m, side="right")) - 1)
