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
        "net_forward_m": round(final_x - world.start_pose[0], 4),  # < 0: it went backwards
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


TITLE_PX, LEGEND_PX, MIN_WIDTH_PX = 46, 30, 640  # bands above and below the map
PUT_BACK_RADIUS_M = 1.0  # collisions this close together count at one spot
_FONT = cv2.FONT_HERSHEY_SIMPLEX  # stroke font: every glyph keeps its shape at any size
INK, DIM_INK, BAND = (30, 30, 30), (90, 90, 90), (246, 246, 242)
GROUND, ROCK, STONE = (214, 222, 196), (96, 84, 70), (120, 100, 80)
PATH_RGB, CRASH, GOAL_RGB, START = (30, 60, 220), (220, 30, 30), (40, 170, 60), (40, 90, 200)


def collision_spots(points: list[tuple[float, float]], radius_m: float = PUT_BACK_RADIUS_M):
    """Collisions grouped by place: [(x_m, y_m, count)], a policy that hits the same obstacle
    again and again after each put-back giving one spot with its count."""
    spots: list[list[float]] = []
    for x, y in points:
        for spot in spots:
            if (spot[0] - x) ** 2 + (spot[1] - y) ** 2 <= radius_m**2:
                spot[2] += 1
                break
        else:
            spots.append([x, y, 1])
    return [(x, y, int(n)) for x, y, n in spots]


def draw_trajectory(world: World, log: RunLog, px_per_m: float = 8.0) -> np.ndarray:
    """The run as one picture (RGB): a title with its figures, the top-down map (obstacles,
    goal line, the path driven, collision marks with their counts), a legend and a scale bar.
    The map's top-left pixel is at (0, TITLE_PX); 1 m is ``px_per_m`` pixels."""
    x0, x1, y0, y1 = world.bounds
    map_w, map_h = int((x1 - x0) * px_per_m) + 1, int((y1 - y0) * px_per_m) + 1
    width = max(map_w, MIN_WIDTH_PX)
    img = np.full((TITLE_PX + map_h + LEGEND_PX, width, 3), BAND, np.uint8)
    _draw_map(img[TITLE_PX : TITLE_PX + map_h, :map_w], world, log, px_per_m)
    figures = compute_metrics(log, world)
    title = f"{world.scenario.name}, seed {world.seed}"
    line = (
        f"{figures['distance_m']:.1f} m driven, {_count(figures['collisions'], 'collision')}, "
        f"goal {100 * figures['goal_progress']:.0f} %"
        + (" (reached)" if figures["reached_goal"] else "")
        + f", {figures['elapsed_s']:.1f} s"
    )
    _text(img, title, (8, 19), 0.6, INK, 2)
    _text(img, line, (8, 38), 0.45, DIM_INK)
    _draw_legend(img, TITLE_PX + map_h, px_per_m)
    return img


def _draw_map(img: np.ndarray, world: World, log: RunLog, px_per_m: float) -> None:
    x0, _, y0, y1 = world.bounds

    def to_px(x, y) -> np.ndarray:
        cols = (np.asarray(x) - x0) * px_per_m
        rows = (y1 - np.asarray(y)) * px_per_m  # +y (left) is up in the picture
        return np.stack([cols, rows], axis=-1).round().astype(np.int32)

    img[:] = GROUND
    goal = to_px([world.goal_x_m, world.goal_x_m], [y0, y1])
    cv2.line(img, tuple(goal[0]), tuple(goal[1]), GOAL_RGB, 2)
    for ob in world.obstacles:
        if ob.is_round:
            radius = max(1, int(round(ob.radius_m * px_per_m)))
            cv2.circle(img, tuple(to_px([ob.x_m], [ob.y_m])[0]), radius, ROCK, -1)
        else:
            corners = ob.corners()
            cv2.fillPoly(img, [to_px(corners[:, 0], corners[:, 1])], STONE)
    if len(log.x_m) > 1:
        cv2.polylines(img, [to_px(log.x_m, log.y_m)], False, PATH_RGB, 1, cv2.LINE_AA)
    cv2.circle(img, tuple(to_px([world.start_pose[0]], [world.start_pose[1]])[0]), 4, START, -1)
    for x, y, count in collision_spots(log.collision_xy):
        p = tuple(int(v) for v in to_px([x], [y])[0])
        cv2.drawMarker(img, p, CRASH, cv2.MARKER_TILTED_CROSS, 11, 2)
        if count > 1:  # repeated collisions at one put-back spot: say how many
            label = f"x{count}"
            (tw, th), _ = cv2.getTextSize(label, _FONT, 0.45, 1)
            at = (min(p[0] + 7, img.shape[1] - tw - 2), max(p[1] - 5, th + 2))
            cv2.rectangle(img, (at[0] - 2, at[1] - th - 2), (at[0] + tw + 2, at[1] + 3), BAND, -1)
            _text(img, label, at, 0.45, CRASH)


def _draw_legend(img: np.ndarray, top: int, px_per_m: float) -> None:
    """Symbol keys along the bottom band, a scale bar at its right end."""
    y, x = top + 20, 10
    entries = (
        ("start", "dot"),
        ("path driven", "line"),
        ("collision (xN: N at one spot)", "cross"),
        ("goal line", "goal"),
        ("obstacle", "rock"),
    )
    for label, kind in entries:
        if kind == "dot":
            cv2.circle(img, (x + 5, y - 4), 4, START, -1)
        elif kind == "line":
            cv2.line(img, (x, y - 4), (x + 12, y - 4), PATH_RGB, 2, cv2.LINE_AA)
        elif kind == "cross":
            cv2.drawMarker(img, (x + 6, y - 4), CRASH, cv2.MARKER_TILTED_CROSS, 9, 2)
        elif kind == "goal":
            cv2.line(img, (x + 6, y - 11), (x + 6, y + 3), GOAL_RGB, 2)
        else:
            cv2.circle(img, (x + 6, y - 4), 5, ROCK, -1)
        x = _text(img, label, (x + 17, y), 0.4, INK) + 14
    metres = _scale_metres(px_per_m)
    bar = round(metres * px_per_m)
    right = img.shape[1] - 10
    label = f"{metres:g} m"
    (tw, _), _ = cv2.getTextSize(label, _FONT, 0.4, 1)
    if right - bar - tw - 8 > x:  # room left of the bar's label after the keys
        cv2.line(img, (right - bar, y - 2), (right, y - 2), INK, 2)
        for end in (right - bar, right):
            cv2.line(img, (end, y - 7), (end, y + 3), INK, 2)
        _text(img, label, (right - bar - tw - 6, y), 0.4, INK)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _scale_metres(px_per_m: float) -> float:
    """A round length whose bar is 40-120 px long."""
    for metres in (1, 2, 5, 10, 20, 50, 100):
        if metres * px_per_m >= 40:
            return float(metres)
    return 100.0


def _text(img: np.ndarray, text: str, at, scale: float, colour, thick: int = 1) -> int:
    """Draw ``text`` with its baseline at ``at``; returns the x where it ends."""
    cv2.putText(img, text, at, _FONT, scale, colour, thick, cv2.LINE_AA)
    return at[0] + cv2.getTextSize(text, _FONT, scale, thick)[0][0]


def write_trajectory_png(path: str | Path, world: World, log: RunLog, px_per_m: float = 8.0):
    """Write the top-down map of a run as a PNG; returns the path."""
    path = Path(path)
    img = draw_trajectory(world, log, px_per_m)
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: folder {path.parent} does not exist; create it")
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise DataError(f"cannot write {path}: check the file name ends in .png and is writable")
    return path
