"""Obstacles and vectorised 2-D geometry: distances, footprint collision and clearance.

Round obstacles (trees, rocks, cones) are circles; boxes and walls are oriented rectangles.
Queries run on numpy arrays over all obstacles, pre-filtered by bounding circles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ROUND_SHAPES = ("tree", "rock", "cone")


@dataclass(frozen=True)
class Obstacle:
    """One obstacle: its shape, pose, size and look. ``radius_m`` bounds every shape."""

    shape: str  # tree, rock, cone (circles) or box, wall (oriented rectangles)
    x_m: float
    y_m: float
    yaw_rad: float
    radius_m: float
    length_m: float
    width_m: float
    height_m: float
    material: str
    albedo: float = 1.0  # brightness variation between obstacles of one material

    @property
    def is_round(self) -> bool:
        """True for circles (tree, rock, cone)."""
        return self.shape in ROUND_SHAPES

    def corners(self) -> np.ndarray:
        """The 4 footprint corners (x, y) of a box or wall, counter-clockwise."""
        return box_corners(self.x_m, self.y_m, self.yaw_rad, self.length_m / 2, self.width_m / 2)


def box_corners(x: float, y: float, yaw: float, half_length: float, half_width: float):
    """Corners (4, 2) of an oriented rectangle, counter-clockwise from rear-right."""
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array(
        [
            [-half_length, -half_width],
            [half_length, -half_width],
            [half_length, half_width],
            [-half_length, half_width],
        ]
    )
    return np.stack(
        [x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1]], 1
    )


class Shapes:
    """Struct-of-arrays view of the obstacles for fast vectorised queries."""

    def __init__(self, obstacles: Sequence[Obstacle]) -> None:
        self.count = len(obstacles)
        self.x = np.array([o.x_m for o in obstacles], dtype=np.float64)
        self.y = np.array([o.y_m for o in obstacles], dtype=np.float64)
        self.bound_r = np.array([o.radius_m for o in obstacles], dtype=np.float64)
        self.is_round = np.array([o.is_round for o in obstacles], dtype=bool)
        self.round_idx = np.flatnonzero(self.is_round)
        self.box_idx = np.flatnonzero(~self.is_round)
        yaw = np.array([o.yaw_rad for o in obstacles], dtype=np.float64)
        self.cos, self.sin = np.cos(yaw), np.sin(yaw)
        self.half_length = np.array([o.length_m / 2 for o in obstacles], dtype=np.float64)
        self.half_width = np.array([o.width_m / 2 for o in obstacles], dtype=np.float64)
        self.height = np.array([o.height_m for o in obstacles], dtype=np.float64)

    def near(self, x: float, y: float, radius: float) -> np.ndarray:
        """Indices of obstacles whose bounding circle comes within ``radius`` of (x, y)."""
        reach = radius + self.bound_r
        return np.flatnonzero((self.x - x) ** 2 + (self.y - y) ** 2 <= reach * reach)

    def distance(self, px: np.ndarray, py: np.ndarray, idx: np.ndarray | None = None):
        """Signed distance (M,) from points to the nearest obstacle among ``idx`` (all if None)."""
        px = np.asarray(px, dtype=np.float64).reshape(-1, 1)
        py = np.asarray(py, dtype=np.float64).reshape(-1, 1)
        idx = np.arange(self.count) if idx is None else idx
        best = np.full(px.shape[0], np.inf)
        rnd = idx[self.is_round[idx]]
        if rnd.size:
            d = np.hypot(px - self.x[rnd], py - self.y[rnd]) - self.bound_r[rnd]
            best = np.minimum(best, d.min(axis=1))
        box = idx[~self.is_round[idx]]
        if box.size:
            best = np.minimum(best, self._box_sdf(px, py, box).min(axis=1))
        return best

    def _box_sdf(self, px: np.ndarray, py: np.ndarray, box: np.ndarray) -> np.ndarray:
        dx, dy = px - self.x[box], py - self.y[box]
        c, s = self.cos[box], self.sin[box]
        qx = np.abs(c * dx + s * dy) - self.half_length[box]
        qy = np.abs(-s * dx + c * dy) - self.half_width[box]
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0)

    def footprint_hits(
        self, x: float, y: float, yaw: float, half_length: float, half_width: float
    ) -> np.ndarray:
        """Indices of obstacles overlapping the oriented rectangle (the vehicle footprint)."""
        idx = self.near(x, y, math.hypot(half_length, half_width))
        if idx.size == 0:
            return idx
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dy = self.x[idx] - x, self.y[idx] - y
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        hit = np.zeros(idx.size, dtype=bool)
        rnd = self.is_round[idx]
        # Circle: the closest footprint point to the centre lies within the radius.
        ex = np.abs(lx) - half_length
        ey = np.abs(ly) - half_width
        gap = np.hypot(np.maximum(ex, 0.0), np.maximum(ey, 0.0))
        hit[rnd] = gap[rnd] < self.bound_r[idx][rnd]
        # Rectangles: separating axis test over the four edge normals.
        b = ~rnd
        if b.any():
            bc, bs = self.cos[idx][b], self.sin[idx][b]
            hl, hw = self.half_length[idx][b], self.half_width[idx][b]
            tx, ty = dx[b], dy[b]
            overlap = np.ones(int(b.sum()), dtype=bool)
            for ax, ay in ((c, s), (-s, c), (bc, bs), (-bs, bc)):
                proj_t = np.abs(tx * ax + ty * ay)
                ra = half_length * np.abs(c * ax + s * ay) + half_width * np.abs(-s * ax + c * ay)
                rb = hl * np.abs(bc * ax + bs * ay) + hw * np.abs(-bs * ax + bc * ay)
                overlap &= proj_t <= ra + rb
            hit[b] = overlap
        return idx[hit]

    def footprint_clearance(
        self,
        x: float,
        y: float,
        yaw: float,
        half_length: float,
        half_width: float,
        search_m: float = 10.0,
    ) -> float:
        """Distance from the footprint to the nearest obstacle (0 when touching), capped."""
        idx = self.near(x, y, search_m + math.hypot(half_length, half_width))
        if idx.size == 0:
            return search_m
        if self.footprint_hits(x, y, yaw, half_length, half_width).size:
            return 0.0
        c, s = math.cos(yaw), math.sin(yaw)
        best = search_m
        rnd = idx[self.is_round[idx]]
        if rnd.size:
            dx, dy = self.x[rnd] - x, self.y[rnd] - y
            ex = np.abs(c * dx + s * dy) - half_length
            ey = np.abs(-s * dx + c * dy) - half_width
            out = np.hypot(np.maximum(ex, 0.0), np.maximum(ey, 0.0))
            best = min(best, float((out - self.bound_r[rnd]).min()))
        box = idx[~self.is_round[idx]]
        if box.size:
            # Two disjoint convex polygons are closest at a vertex of one of them.
            corners = box_corners(x, y, yaw, half_length, half_width)
            best = min(best, float(self._box_sdf(corners[:, :1], corners[:, 1:], box).min()))
            bx, by = self._corners_of(box)
            dx, dy = bx - x, by - y
            ex = np.abs(c * dx + s * dy) - half_length
            ey = np.abs(-s * dx + c * dy) - half_width
            out = np.hypot(np.maximum(ex, 0.0), np.maximum(ey, 0.0))
            best = min(best, float(out.min()))
        return max(0.0, best)

    def _corners_of(self, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sx = np.array([-1.0, 1.0, 1.0, -1.0])
        sy = np.array([-1.0, -1.0, 1.0, 1.0])
        hl = self.half_length[box][:, None] * sx
        hw = self.half_width[box][:, None] * sy
        c, s = self.cos[box][:, None], self.sin[box][:, None]
        return self.x[box][:, None] + c * hl - s * hw, self.y[box][:, None] + s * hl + c * hw
