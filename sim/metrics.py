"""Per-run metrics (JSON-ready) and a top-down trajectory picture.

Figures follow DAVE (mean distance between collisions) and PilotNet (autonomy: each
intervention costs 6 s). ``steering_smoothness`` is the mean absolute rate of change of the
commanded steering, in normalised units per second: 0 is perfectly steady, lower is smoother.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rover.errors import DataError
from sim.world import World

INTERVENTION_COST_S = 6.0  # PilotNet: one intervention counts as 6 s of human driving


@dataclass
class RunLog:
    """What happened at each step of a run (appended by ``Simulation.step``)."""

    time_s: list[float] = field(default_factory=list)
    x_m: list[float] = field(default_factory=list)
    y_m: list[float] = field(default_factory=list)
    yaw_rad: list[float] = field(default_factory=list)
    speed_mps: list[float] = field(default_factory=list)
    steering: list[float] = field(default_factory=list)  # commanded, normalised
    throttle: list[float] = field(default_factory=list)
    clearance_m: list[float] = field(default_factory=list)
    collision_xy: list[tuple[float, float]] = field(default_factory=list)
    distance_m: float = 0.0  # driven by the policy
    takeover_m: float = 0.0  # driven by the safety driver after collisions
    reached_goal: bool = False

    def append(
        self,
        time_s: float,
        pose: tuple[float, float, float],
        speed_mps: float,
        command: tuple[float, float],
        clearance_m: float,
    ) -> None:
        """Record one step: time after it, pose, speed, the command applied, clearance."""
        self.time_s.append(time_s)
        self.x_m.append(pose[0])
        self.y_m.append(pose[1])
        self.yaw_rad.append(pose[2])
        self.speed_mps.append(speed_mps)
        self.steering.append(command[0])
        self.throttle.append(command[1])
        self.clearance_m.append(clearance_m)


def compute_metrics(log: RunLog, world: World) -> dict[str, Any]:
    """The run's figures as a flat, JSON-ready dict (units in the key names)."""
    elapsed = log.time_s[-1] if log.time_s else 0.0
    collisions = len(log.collision_xy)
    autonomy = 100.0 if elapsed <= 0 else 100.0 * (1.0 - INTERVENTION_COST_S * collisions / elapsed)
    final_x = log.x_m[-1] if log.x_m else world.start_pose[0]
    progress = 1.0 if log.reached_goal else world.goal_progress(final_x)
    return {
        "scenario": world.scenario.name,
        "seed": world.seed,
        "distance_m": round(log.distance_m, 4),
        "collisions": collisions,
        "mean_distance_between_collisions_m": round(log.distance_m / max(1, collisions), 4),
        "takeover_m": round(log.takeover_m, 4),
        "autonomy_pct": round(max(0.0, autonomy), 3),
        "goal_progress": round(progress, 4),
        "reached_goal": log.reached_goal,
        "min_clearance_m": round(min(log.clearance_m), 4) if log.clearance_m else None,
        "steering_smoothness": round(_smoothness(log), 5),
        "elapsed_s": round(elapsed, 4),
    }


def _smoothness(log: RunLog) -> float:
    if len(log.steering) < 2:
        return 0.0
    steer = np.asarray(log.steering)
    dt = np.diff(np.asarray(log.time_s))
    return float(np.mean(np.abs(np.diff(steer)) / np.maximum(dt, 1e-9)))


def draw_trajectory(world: World, log: RunLog, px_per_m: float = 8.0) -> np.ndarray:
    """Top-down map (RGB): obstacles, goal line, the trail driven and collision marks."""
    x0, x1, y0, y1 = world.bounds
    width, height = int((x1 - x0) * px_per_m) + 1, int((y1 - y0) * px_per_m) + 1

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cols = (np.asarray(x) - x0) * px_per_m
        rows = (y1 - np.asarray(y)) * px_per_m  # +y (left) is up in the picture
        return np.stack([cols, rows], axis=-1).round().astype(np.int32)

    img = np.full((height, width, 3), (214, 222, 196), np.uint8)
    goal = to_px([world.goal_x_m, world.goal_x_m], [y0, y1])
    cv2.line(img, tuple(goal[0]), tuple(goal[1]), (40, 170, 60), 2)
    start = to_px([world.start_pose[0]], [world.start_pose[1]])[0]
    cv2.circle(img, tuple(start), 4, (40, 90, 200), -1)
    for ob in world.obstacles:
        colour = (96, 84, 70) if ob.is_round else (120, 100, 80)
        if ob.is_round:
            centre = to_px([ob.x_m], [ob.y_m])[0]
            radius = max(1, int(round(ob.radius_m * px_per_m)))
            cv2.circle(img, tuple(centre), radius, colour, -1)
        else:
            corners = ob.corners()
            cv2.fillPoly(img, [to_px(corners[:, 0], corners[:, 1])], colour)
    if len(log.x_m) > 1:
        path = to_px(log.x_m, log.y_m)
        cv2.polylines(img, [path], False, (30, 60, 220), 1, cv2.LINE_AA)
    for cx, cy in log.collision_xy:
        p = to_px([cx], [cy])[0]
        cv2.drawMarker(img, tuple(p), (220, 30, 30), cv2.MARKER_TILTED_CROSS, 9, 2)
    return img


def write_trajectory_png(path: str | Path, world: World, log: RunLog, px_per_m: float = 8.0):
    """Write the top-down map of a run as a PNG; returns the path."""
    path = Path(path)
    img = draw_trajectory(world, log, px_per_m)
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: folder {path.parent} does not exist; create it")
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise DataError(f"cannot write {path}: check the file name ends in .png and is writable")
    return path
