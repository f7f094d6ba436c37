"""Per-column ray casting against the world's circles and oriented rectangles.

Each image column is a vertical plane through the eye (see ``sim.camera``). Its ray direction
``forward + k * right`` is left unnormalised, so the ray parameter of a hit is the hit's depth
along the optical axis. Only (column, obstacle) pairs whose angular extents overlap are
intersected, then the ``layers`` nearest hits per column are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.geometry import Obstacle

NEAR_M = 0.02  # hits closer than this (inside the lens) are ignored
PROFILE = {"tree": 0, "cone": 1, "rock": 2}  # cylinder, cone, irregular dome


@dataclass
class ColumnHits:
    """The ``layers`` nearest hits of every column (eye-major: left columns, then right)."""

    depth_m: np.ndarray  # (2W, layers), inf where no hit
    obstacle: np.ndarray  # (2W, layers) int, index into world.obstacles, -1 where no hit
    top_m: np.ndarray  # height of the obstacle's silhouette in that column
    u_m: np.ndarray  # texture coordinate along the surface
    normal_x: np.ndarray
    normal_y: np.ndarray


class ColumnCaster:
    """Obstacle arrays prepared once per world for fast per-frame column casting."""

    def __init__(self, obstacles: tuple[Obstacle, ...], seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.count = len(obstacles)
        self.x = np.array([o.x_m for o in obstacles], dtype=np.float64)
        self.y = np.array([o.y_m for o in obstacles], dtype=np.float64)
        self.bound_r = np.array([o.radius_m for o in obstacles], dtype=np.float64)
        self.height = np.array([o.height_m for o in obstacles], dtype=np.float64)
        self.is_round = np.array([o.is_round for o in obstacles], dtype=bool)
        self.profile = np.array([PROFILE.get(o.shape, 0) for o in obstacles], dtype=np.int8)
        yaw = np.array([o.yaw_rad for o in obstacles], dtype=np.float64)
        self.cos, self.sin = np.cos(yaw), np.sin(yaw)
        self.hl = np.array([o.length_m / 2 for o in obstacles], dtype=np.float64)
        self.hw = np.array([o.width_m / 2 for o in obstacles], dtype=np.float64)
        # Rocks get an irregular silhouette: three random harmonics around the centre.
        self.harm_amp = rng.uniform(0.0, 0.12, (self.count, 3)) / np.array([1.0, 1.5, 2.2])
        self.harm_phase = rng.uniform(0.0, 2 * math.pi, (self.count, 3))
        local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
        lx, ly = local[:, 0] * self.hl[:, None], local[:, 1] * self.hw[:, None]
        self.corner_x = self.x[:, None] + self.cos[:, None] * lx - self.sin[:, None] * ly
        self.corner_y = self.y[:, None] + self.sin[:, None] * lx + self.cos[:, None] * ly

    def cast(
        self,
        eyes: np.ndarray,
        yaw: float,
        k: np.ndarray,
        fx: float,
        cx: float,
        layers: int,
        max_range_m: float,
    ) -> ColumnHits:
        """Cast every column of both eyes (``eyes``: (2, 2) positions) and keep ``layers``."""
        width = k.size
        fwd = np.array([math.cos(yaw), math.sin(yaw)])
        right = np.array([math.sin(yaw), -math.cos(yaw)])
        cand = self._candidates(eyes.mean(axis=0), fwd, right, k, max_range_m)
        eye_i, obs, col = self._pairs(cand, eyes, fwd, right, fx, cx, width)
        kk = k[col]
        dirx = fwd[0] + kk * right[0]
        diry = fwd[1] + kk * right[1]
        ox, oy = eyes[eye_i, 0], eyes[eye_i, 1]
        t = np.full(obs.size, np.inf)
        rnd = self.is_round[obs]
        t[rnd] = self._round_t(obs[rnd], ox[rnd], oy[rnd], dirx[rnd], diry[rnd])
        box = ~rnd
        t[box] = self._box_t(obs[box], ox[box], oy[box], dirx[box], diry[box])
        ok = np.isfinite(t) & (t <= max_range_m)
        gcol = (eye_i * width + col)[ok]
        return self._nearest(gcol, obs[ok], t[ok], eyes, fwd, right, k, width, layers)

    def _candidates(self, centre, fwd, right, k, max_range_m: float) -> np.ndarray:
        rx, ry = self.x - centre[0], self.y - centre[1]
        z = rx * fwd[0] + ry * fwd[1]
        lat = rx * right[0] + ry * right[1]
        reach = self.bound_r + 0.2
        span = max(abs(float(k[0])), abs(float(k[-1])))
        keep = (z + reach > 0) & (z - reach < max_range_m)
        keep &= np.abs(lat) - reach <= np.maximum(z, 0) * span + reach
        return np.flatnonzero(keep)

    def _pairs(self, cand, eyes, fwd, right, fx: float, cx: float, width: int):
        """(eye, obstacle, column) triples whose column ray may hit the obstacle."""
        n = cand.size
        eye_i = np.repeat(np.arange(2), n)
        obs = np.tile(cand, 2)
        ex, ey = eyes[eye_i, 0], eyes[eye_i, 1]
        lo = np.zeros(2 * n)
        hi = np.full(2 * n, float(width - 1))
        rnd = self.is_round[obs]
        # Circles: the tangent directions bound the columns.
        dx, dy = self.x[obs] - ex, self.y[obs] - ey
        z = dx * fwd[0] + dy * fwd[1]
        lat = dx * right[0] + dy * right[1]
        dist = np.hypot(z, lat)
        r = self.bound_r[obs]
        far = rnd & (dist > r * 1.05) & (z > r)
        theta = np.arctan2(lat[far], z[far])
        alpha = np.arcsin(np.minimum(1.0, r[far] / dist[far]))
        limit = math.pi / 2 - 1e-3
        lo[far] = cx + fx * np.tan(np.clip(theta - alpha, -limit, limit))
        hi[far] = cx + fx * np.tan(np.clip(theta + alpha, -limit, limit))
        # Rectangles: the projected corners bound the columns.
        box = ~rnd
        cdx = self.corner_x[obs[box]] - ex[box, None]
        cdy = self.corner_y[obs[box]] - ey[box, None]
        cz = cdx * fwd[0] + cdy * fwd[1]
        cl = cdx * right[0] + cdy * right[1]
        front = (cz > 0.05).all(axis=1)
        ratio = cl / np.where(cz > 0.05, cz, 1.0)
        bi = np.flatnonzero(box)[front]
        lo[bi] = cx + fx * ratio[front].min(axis=1)
        hi[bi] = cx + fx * ratio[front].max(axis=1)
        c0 = np.clip(np.ceil(lo), 0, width).astype(np.int64)
        c1 = np.clip(np.floor(hi), -1, width - 1).astype(np.int64)
        counts = np.maximum(c1 - c0 + 1, 0)
        total = int(counts.sum())
        owner = np.repeat(np.arange(2 * n), counts)
        starts = np.cumsum(counts) - counts
        col = c0[owner] + (np.arange(total) - starts[owner])
        return eye_i[owner], obs[owner], col

    def _round_t(self, obs, ox, oy, dx, dy) -> np.ndarray:
        px, py = self.x[obs] - ox, self.y[obs] - oy
        a = dx * dx + dy * dy
        b = dx * px + dy * py
        c = px * px + py * py - self.bound_r[obs] ** 2
        disc = b * b - a * c
        ok = (disc >= 0) & (c > 0)
        t = (b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where(ok & (t > NEAR_M), t, np.inf)

    def _box_t(self, obs, ox, oy, dx, dy) -> np.ndarray:
        c, s = self.cos[obs], self.sin[obs]
        px, py = ox - self.x[obs], oy - self.y[obs]
        lox, loy = c * px + s * py, -s * px + c * py
        ldx, ldy = c * dx + s * dy, -s * dx + c * dy
        with np.errstate(divide="ignore", invalid="ignore"):
            ix, iy = 1.0 / ldx, 1.0 / ldy
            t1, t2 = (-self.hl[obs] - lox) * ix, (self.hl[obs] - lox) * ix
            t3, t4 = (-self.hw[obs] - loy) * iy, (self.hw[obs] - loy) * iy
            tmin = np.maximum(np.minimum(t1, t2), np.minimum(t3, t4))
            tmax = np.minimum(np.maximum(t1, t2), np.maximum(t3, t4))
        ok = (tmax >= tmin) & (tmin > NEAR_M)
        return np.where(ok, tmin, np.inf)

    def _nearest(self, gcol, obs, t, eyes, fwd, right, k, width: int, layers: int) -> ColumnHits:
        ncol = 2 * width
        order = np.argsort(gcol * 4096.0 + t, kind="stable")
        gcol, obs, t = gcol[order], obs[order], t[order]
        first = np.searchsorted(gcol, np.arange(ncol))
        rank = np.arange(gcol.size) - first[gcol]
        keep = rank < layers
        gcol, obs, t, rank = gcol[keep], obs[keep], t[keep], rank[keep]
        shape = (ncol, layers)
        hits = ColumnHits(
            depth_m=np.full(shape, np.inf),
            obstacle=np.full(shape, -1, dtype=np.int64),
            top_m=np.zeros(shape),
            u_m=np.zeros(shape),
            normal_x=np.zeros(shape),
            normal_y=np.zeros(shape),
        )
        eye_i = gcol // width
        kk = k[gcol % width]
        hx = eyes[eye_i, 0] + t * (fwd[0] + kk * right[0])
        hy = eyes[eye_i, 1] + t * (fwd[1] + kk * right[1])
        top, u, nx, ny = self._surface(obs, hx, hy, eyes[eye_i], fwd + kk[:, None] * right)
        at = (gcol, rank)
        hits.depth_m[at], hits.obstacle[at], hits.top_m[at] = t, obs, top
        hits.u_m[at], hits.normal_x[at], hits.normal_y[at] = u, nx, ny
        return hits

    def _surface(self, obs, hx, hy, origin, direction):
        """Silhouette top, texture coordinate and outward normal at each hit point."""
        top = self.height[obs].copy()
        u = np.zeros(obs.size)
        nx, ny = np.zeros(obs.size), np.zeros(obs.size)
        rnd = self.is_round[obs]
        o = obs[rnd]
        if o.size:
            rx, ry = hx[rnd] - self.x[o], hy[rnd] - self.y[o]
            phi = np.arctan2(ry, rx)
            r = self.bound_r[o]
            nx[rnd], ny[rnd] = rx / r, ry / r
            u[rnd] = phi * r
            # Lateral offset of the column plane from the centre, as a fraction of the radius.
            d = direction[rnd]
            cross = (self.x[o] - origin[rnd, 0]) * d[:, 1] - (self.y[o] - origin[rnd, 1]) * d[:, 0]
            s = np.clip(np.abs(cross) / (np.hypot(d[:, 0], d[:, 1]) * r), 0.0, 1.0)
            prof = self.profile[o]
            wobble = 1.0 + (
                self.harm_amp[o] * np.cos(np.arange(1, 4) * phi[:, None] + self.harm_phase[o])
            ).sum(axis=1)
            shape = np.where(
                prof == 0, 1.0, np.where(prof == 1, 1.0 - s, np.sqrt(1.0 - s * s) * wobble)
            )
            top[rnd] = self.height[o] * shape
        b = obs[~rnd]
        if b.size:
            c, sn = self.cos[b], self.sin[b]
            px, py = hx[~rnd] - self.x[b], hy[~rnd] - self.y[b]
            lx, ly = c * px + sn * py, -sn * px + c * py
            on_x = np.abs(lx) / self.hl[b] >= np.abs(ly) / self.hw[b]
            lnx = np.where(on_x, np.sign(lx), 0.0)
            lny = np.where(on_x, 0.0, np.sign(ly))
            nx[~rnd], ny[~rnd] = c * lnx - sn * lny, sn * lnx + c * lny
            # Offset each face so neighbouring faces do not show the same strip of texture.
            u[~rnd] = np.where(on_x, ly + 1.3 * (lx > 0), lx + 2.9 + 1.7 * (ly > 0))
        return top, u, nx, ny
