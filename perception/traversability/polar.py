"""The map the control loop reads: free distance along K candidate steering arcs.

Each arc is the path a steering value drives (a circle of curvature tan(steer)/wheelbase),
swept by the vehicle's width. Points along it are projected through the fitted ground plane into
the fused obstacle map; the first point whose pixel is an obstacle ends the arc. A point behind
an obstacle projects onto the obstacle itself, so occluded ground counts as blocked. An arc
that leaves the camera's view sideways ends there (what is not seen is not free: sharp turns
read as short, and the guard slows for them); ground below the bottom of the image, just ahead
of the bumper, cannot be seen and is taken as free. Pure numpy: no torch, no bus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.stereo import GroundPlane, StereoGeometry
from rover.config import dataclass_from_dict
from rover.errors import ConfigError


@dataclass(frozen=True)
class ArcConfig:
    """Candidate arcs and the vehicle they sweep (defaults: the simulator's vehicle)."""

    arcs: int = 15
    max_range_m: float = 25.0
    samples: int = 128
    wheelbase_m: float = 0.33
    max_steer_rad: float = 0.45
    half_width_m: float = 0.15
    side_margin_m: float = 0.08
    camera_to_front_m: float = 0.10  # bumper ahead of the camera
    obstacle_threshold: float = 0.5
    unseen_is_free: bool = False  # True: arcs run on past the edge of the view (less cautious)

    @classmethod
    def from_dict(cls, raw: dict) -> ArcConfig:
        """Build from a table; unknown keys raise ConfigError."""
        cfg = dataclass_from_dict(cls, raw, "traversability.arcs")
        if cfg.arcs < 2 or cfg.samples < 4 or cfg.max_range_m <= 1:
            raise ConfigError("[traversability.arcs] need arcs >= 2, samples >= 4, range > 1 m")
        return cfg

    def steering(self) -> np.ndarray:
        """The arcs' normalised steering values, -1 (full right) to +1 (full left)."""
        return np.linspace(-1.0, 1.0, self.arcs)


@dataclass(frozen=True)
class PolarSummary:
    """Free distance (m, from the front bumper) along each candidate arc."""

    steering: np.ndarray  # (K,) float32 normalised steering of each arc, -1..1
    free_m: np.ndarray  # (K,) float32

    @classmethod
    def from_arcs(cls, arcs: np.ndarray) -> PolarSummary:
        """From the (2, K) rows [steering, free_m] a `TraversabilityMap` message carries."""
        rows = np.asarray(arcs, np.float32).reshape(2, -1)
        return cls(rows[0].copy(), rows[1].copy())

    def free_at(self, steering: float) -> float:
        """Free distance of the arc the vehicle drives at ``steering``: that arc's when it is
        one of the K, else the lesser of the two around it (never assume a gap between arcs)."""
        s = float(np.clip(steering, self.steering[0], self.steering[-1]))
        i = int(np.searchsorted(self.steering, s))
        if i < len(self.steering) and abs(float(self.steering[i]) - s) < 1e-6:
            return float(self.free_m[i])
        lo, hi = max(0, i - 1), min(len(self.steering) - 1, i)
        return float(min(self.free_m[lo], self.free_m[hi]))


class ArcCaster:
    """Projects the arcs into the image and reads the obstacle map along them."""

    def __init__(self, geom: StereoGeometry, cfg: ArcConfig | None = None):
        self.geom, self.cfg = geom, cfg or ArcConfig()
        c = self.cfg
        # denser near the vehicle, where a few centimetres decide a stop
        s = np.geomspace(0.05, c.max_range_m + c.camera_to_front_m, c.samples)
        self.s_m = s.astype(np.float32)
        kappa = np.tan(c.steering() * c.max_steer_rad) / c.wheelbase_m  # +: turns left
        half = c.half_width_m + c.side_margin_m
        lateral = np.array([-half, 0.0, half])
        theta = kappa[:, None] * s[None, :]
        safe_k = np.where(np.abs(kappa) < 1e-6, 1.0, kappa)[:, None]
        straight = np.abs(kappa)[:, None] < 1e-6
        x = np.where(straight, s[None, :], np.sin(theta) / safe_k)
        y = np.where(straight, 0.0, (1.0 - np.cos(theta)) / safe_k)
        # lateral offsets along the arc's normal (left of the heading)
        self.x_m = x[:, :, None] - lateral[None, None, :] * np.sin(theta)[:, :, None]
        self.y_m = y[:, :, None] + lateral[None, None, :] * np.cos(theta)[:, :, None]
        self._plane_key: tuple | None = None

    def pixels(self, plane: GroundPlane) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image (u, v) of every arc point on ``plane``, and whether it is in view."""
        g = self.geom
        n = plane.normal
        xc, zc = -self.y_m, self.x_m  # camera frame: x right, z forward
        yc = (plane.height_m - n[0] * xc - n[2] * zc) / max(n[1], 1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = g.cx_px + g.fx_px * xc / zc
            v = g.cy_px + g.fy_px * yc / zc
        inside = (zc > 0.05) & (u >= 0) & (u <= g.width_px - 1) & (v >= 0) & (v <= g.height_px - 1)
        return u, v, inside

    def _under_bumper(self, v: np.ndarray) -> np.ndarray:
        """Points ahead but below the image's bottom row: too close to be seen, taken as free."""
        return (self.x_m > 0) & (v > self.geom.height_px - 1)

    def cast(self, obstacle_prob: np.ndarray, plane: GroundPlane) -> PolarSummary:
        """Free distance along each arc in a (H, W) obstacle probability map (any size)."""
        c = self.cfg
        u, v, inside = self.pixels(plane)
        h, w = obstacle_prob.shape
        sx, sy = w / self.geom.width_px, h / self.geom.height_px
        cols = np.clip(((u + 0.5) * sx).astype(np.int32), 0, w - 1)
        rows = np.clip(((v + 0.5) * sy).astype(np.int32), 0, h - 1)
        blocked = inside & (obstacle_prob[rows, cols] >= c.obstacle_threshold)
        if not c.unseen_is_free:
            blocked |= ~inside & ~self._under_bumper(v)  # out of view: not known to be free
        blocked = blocked.any(axis=2)  # (K, S): any of the three lateral points
        first = np.where(blocked.any(axis=1), blocked.argmax(axis=1), len(self.s_m))
        # the last free sample, not the first blocked one: never promise ground not checked
        reach = np.concatenate([[0.0], self.s_m])[first]
        free = np.clip(reach - c.camera_to_front_m, 0.0, c.max_range_m)
        return PolarSummary(c.steering().astype(np.float32), free.astype(np.float32))


def arc_polyline(steering: float, cfg: ArcConfig, length_m: float, n: int = 24) -> np.ndarray:
    """(n, 2) x forward, y left points of one arc (for drawing overlays)."""
    kappa = math.tan(steering * cfg.max_steer_rad) / cfg.wheelbase_m
    s = np.linspace(0.0, length_m, n)
    if abs(kappa) < 1e-6:
        return np.stack([s, np.zeros_like(s)], 1)
    return np.stack([np.sin(kappa * s) / kappa, (1 - np.cos(kappa * s)) / kappa], 1)
