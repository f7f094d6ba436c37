"""Per-column ray casting against the world's circles and oriented rectangles.

Each image column is a vertical plane through the eye (see ``sim.camera``). Its ray, in camera
coordinates (right, forward), is ``t * (k, 1)`` with ``k = (column - cx) / fx``: unnormalised,
so the ray parameter of a hit is the hit's depth along the optical axis. Only (column, obstacle)
pairs whose angular extents overlap are intersected; then the ``layers`` nearest hits of each
column are kept. Round shapes and rectangles take separate paths from the start, so the few
hundred numpy calls per frame stay few.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.geometry import Obstacle

NEAR_M = 0.02  # hits closer than this (inside the lens) are ignored
PROFILE = {"tree": 0, "cone": 1, "rock": 2}  # cylinder, cone, irregular dome
_LIMIT = math.pi / 2 - 1e-3


@dataclass
class ColumnHits:
    """The kept hits, one entry each: column (eye-major: left columns, then right) and rank."""

    column: np.ndarray  # 0 .. 2W-1
    rank: np.ndarray  # 0 for the nearest hit of its column
    depth_m: np.ndarray
    obstacle: np.ndarray  # index into world.obstacles
    top_m: np.ndarray  # height of the obstacle's silhouette in that column
    u_m: np.ndarray  # texture coordinate along the surface
    normal_x: np.ndarray  # outward surface normal (world frame)
    normal_y: np.ndarray


@dataclass
class _Frame:
    """Per-frame camera quantities shared by the round and box paths."""

    fwd: np.ndarray
    right: np.ndarray
    centre: np.ndarray
    eye_lat: np.ndarray  # (2, 1) lateral offset of each eye from the rig centre
    k: np.ndarray
    fx: float
    cx: float
    span: float  # |k| at the image edge
    max_range_m: float


class ColumnCaster:
    """Obstacle arrays prepared once per world for fast per-frame column casting."""

    def __init__(self, obstacles: tuple[Obstacle, ...], seed: int) -> None:
        rng = np.random.default_rng(seed)
        rnd = np.array([o.is_round for o in obstacles], dtype=bool)
        self.round_id, self.box_id = np.flatnonzero(rnd), np.flatnonzero(~rnd)
        rounds = [obstacles[i] for i in self.round_id]
        boxes = [obstacles[i] for i in self.box_id]
        self.rx = np.array([o.x_m for o in rounds])
        self.ry = np.array([o.y_m for o in rounds])
        self.rr = np.array([o.radius_m for o in rounds])
        self.rh = np.array([o.height_m for o in rounds])
        self.profile = np.array([PROFILE.get(o.shape, 0) for o in rounds], dtype=np.int8)
        # Rocks get an irregular silhouette: three random harmonics around the centre.
        self.harm_amp = rng.uniform(0.0, 0.12, (len(rounds), 3)) / np.array([1.0, 1.5, 2.2])
        self.harm_phase = rng.uniform(0.0, 2 * math.pi, (len(rounds), 3))
        self.bx = np.array([o.x_m for o in boxes])
        self.by = np.array([o.y_m for o in boxes])
        self.bc = np.cos([o.yaw_rad for o in boxes])
        self.bs = np.sin([o.yaw_rad for o in boxes])
        self.hl = np.array([o.length_m / 2 for o in boxes])
        self.hw = np.array([o.width_m / 2 for o in boxes])
        self.bh = np.array([o.height_m for o in boxes])
        self.br = np.array([o.radius_m for o in boxes])

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
        fwd = np.array([math.cos(yaw), math.sin(yaw)])
        right = np.array([math.sin(yaw), -math.cos(yaw)])
        centre = eyes.mean(axis=0)
        span = max(abs(float(k[0])), abs(float(k[-1])))
        frame = _Frame(fwd, right, centre, ((eyes - centre) @ right)[:, None], k, fx, cx, span,
                       max_range_m)  # fmt: skip
        width = k.size
        r_col, r_t, r_pair, r_geo = self._round_pairs(frame, width)
        b_col, b_t, b_pair, b_geo = self._box_pairs(frame, width)
        col = np.concatenate([r_col, b_col])
        t = np.concatenate([r_t, b_t])
        order = np.argsort(col * 4096.0 + t, kind="stable")
        col, t = col[order], t[order]
        first = np.searchsorted(col, np.arange(2 * width))
        rank = np.arange(col.size) - first[col]
        keep = rank < layers
        order, col, t, rank = order[keep], col[keep], t[keep], rank[keep]
        is_round = order < r_col.size
        hits = ColumnHits(col, rank, t, *(np.empty(t.size) for _ in range(5)))
        hits.obstacle = np.empty(t.size, dtype=np.int64)
        self._round_surface(hits, is_round, r_pair[order[is_round]], r_geo, frame)
        self._box_surface(hits, ~is_round, b_pair[order[~is_round] - r_col.size], b_geo, frame)
        return hits

    def _visible(self, x, y, bound_r, frame: _Frame):
        """Camera-frame (lateral, depth) of obstacles that may be in view, and their indices."""
        dx, dy = x - frame.centre[0], y - frame.centre[1]
        z = dx * frame.fwd[0] + dy * frame.fwd[1]
        lat = dx * frame.right[0] + dy * frame.right[1]
        reach = bound_r + 0.2
        keep = (z + reach > 0) & (z - reach < frame.max_range_m)
        keep &= np.abs(lat) - reach <= np.maximum(z, 0) * frame.span + reach
        idx = np.flatnonzero(keep)
        return idx, lat[idx][None, :] - frame.eye_lat, z[idx]

    @staticmethod
    def _columns(lo: np.ndarray, hi: np.ndarray, width: int):
        """Expand per-(eye, obstacle) column ranges into (owner, column) pairs."""
        c0 = np.clip(np.ceil(lo), 0, width).astype(np.int64).ravel()
        c1 = np.clip(np.floor(hi), -1, width - 1).astype(np.int64).ravel()
        counts = np.maximum(c1 - c0 + 1, 0)
        owner = np.repeat(np.arange(c0.size), counts)
        col = c0[owner] + (np.arange(owner.size) - (np.cumsum(counts) - counts)[owner])
        return owner, col

    def _round_pairs(self, frame: _Frame, width: int):
        idx, lat, z = self._visible(self.rx, self.ry, self.rr, frame)
        r = self.rr[idx]
        dist = np.hypot(lat, z)
        far = (dist > r * 1.05) & (z > r)
        theta = np.arctan2(lat, z)
        alpha = np.arcsin(np.minimum(1.0, r / np.maximum(dist, 1e-9)))
        lo = np.where(far, frame.cx + frame.fx * np.tan(np.clip(theta - alpha, -_LIMIT, _LIMIT)), 0)
        hi = np.where(
            far, frame.cx + frame.fx * np.tan(np.clip(theta + alpha, -_LIMIT, _LIMIT)), width - 1
        )
        owner, col = self._columns(lo, hi, width)
        n = idx.size
        eye, which = owner // max(n, 1), owner % max(n, 1)
        px, pz, pr, kk = lat.ravel()[owner], z[which], r[which], frame.k[col]
        a = 1.0 + kk * kk
        b = kk * px + pz
        c = px * px + pz * pz - pr * pr
        disc = b * b - a * c
        t = (b - np.sqrt(np.maximum(disc, 0.0))) / a
        ok = (disc >= 0) & (c > 0) & (t > NEAR_M) & (t <= frame.max_range_m)
        pair = np.flatnonzero(ok)
        return eye[pair] * width + col[pair], t[pair], pair, (idx[which], px, pz, kk)

    def _box_pairs(self, frame: _Frame, width: int):
        idx, lat, z = self._visible(self.bx, self.by, self.br, frame)
        c, s = self.bc[idx], self.bs[idx]
        fwd, right = frame.fwd, frame.right
        # The box's own axes in camera coordinates (lateral, depth).
        ar, af = c * right[0] + s * right[1], c * fwd[0] + s * fwd[1]
        br, bf = -s * right[0] + c * right[1], -s * fwd[0] + c * fwd[1]
        sx, sy = np.array([-1.0, 1.0, 1.0, -1.0]), np.array([-1.0, -1.0, 1.0, 1.0])
        hl, hw = self.hl[idx][:, None], self.hw[idx][:, None]
        cl = lat[..., None] + hl * sx * ar[:, None] + hw * sy * br[:, None]  # (2, n, 4)
        cz = z[:, None] + hl * sx * af[:, None] + hw * sy * bf[:, None]  # (n, 4)
        front = np.broadcast_to((cz > 0.05).all(axis=1), lat.shape)
        ratio = cl / np.where(cz > 0.05, cz, 1.0)
        lo = np.where(front, frame.cx + frame.fx * ratio.min(axis=2), 0)
        hi = np.where(front, frame.cx + frame.fx * ratio.max(axis=2), width - 1)
        owner, col = self._columns(lo, hi, width)
        n = idx.size
        eye, which = owner // max(n, 1), owner % max(n, 1)
        kk = frame.k[col]
        px, pz = lat.ravel()[owner], z[which]
        a_r, a_f, b_r, b_f = ar[which], af[which], br[which], bf[which]
        dlx, dly = kk * a_r + a_f, kk * b_r + b_f
        olx, oly = -(px * a_r + pz * a_f), -(px * b_r + pz * b_f)
        with np.errstate(divide="ignore", invalid="ignore"):
            ix, iy = 1.0 / dlx, 1.0 / dly
            t1, t2 = (-self.hl[idx][which] - olx) * ix, (self.hl[idx][which] - olx) * ix
            t3, t4 = (-self.hw[idx][which] - oly) * iy, (self.hw[idx][which] - oly) * iy
            tmin = np.maximum(np.minimum(t1, t2), np.minimum(t3, t4))
            tmax = np.minimum(np.maximum(t1, t2), np.maximum(t3, t4))
        ok = (tmax >= tmin) & (tmin > NEAR_M) & (tmin <= frame.max_range_m)
        pair = np.flatnonzero(ok)
        geo = (idx[which], olx, oly, dlx, dly)
        return eye[pair] * width + col[pair], tmin[pair], pair, geo

    def _round_surface(self, hits: ColumnHits, sel, pair, geo, frame: _Frame) -> None:
        """Silhouette top, texture coordinate and normal of the kept round hits."""
        local, px, pz, kk = (g[pair] for g in geo)
        t = hits.depth_m[sel]
        r = self.rr[local]
        hr, hf = t * kk - px, t - pz  # hit point relative to the centre, camera frame
        nx = (hr * frame.right[0] + hf * frame.fwd[0]) / r
        ny = (hr * frame.right[1] + hf * frame.fwd[1]) / r
        phi = np.arctan2(ny, nx)
        # Offset of the column plane from the centre, as a fraction of the radius.
        s = np.minimum(np.abs(kk * pz - px) / (np.sqrt(1.0 + kk * kk) * r), 1.0)
        wobble = 1.0 + (
            self.harm_amp[local] * np.cos(np.arange(1, 4) * phi[:, None] + self.harm_phase[local])
        ).sum(axis=1)
        prof = self.profile[local]
        shape = np.where(
            prof == 0, 1.0, np.where(prof == 1, 1.0 - s, np.sqrt(1.0 - s * s) * wobble)
        )
        hits.obstacle[sel] = self.round_id[local]
        hits.top_m[sel] = self.rh[local] * shape
        hits.u_m[sel] = phi * r
        hits.normal_x[sel], hits.normal_y[sel] = nx, ny

    def _box_surface(self, hits: ColumnHits, sel, pair, geo, frame: _Frame) -> None:
        """Face normal and texture coordinate of the kept rectangle hits."""
        local, olx, oly, dlx, dly = (g[pair] for g in geo)
        t = hits.depth_m[sel]
        lx, ly = olx + t * dlx, oly + t * dly  # hit point in the box's own frame
        on_x = np.abs(lx) / self.hl[local] >= np.abs(ly) / self.hw[local]
        lnx = np.where(on_x, np.sign(lx), 0.0)
        lny = np.where(on_x, 0.0, np.sign(ly))
        c, s = self.bc[local], self.bs[local]
        hits.obstacle[sel] = self.box_id[local]
        hits.top_m[sel] = self.bh[local]
        # Offset each face so neighbouring faces do not show the same strip of texture.
        hits.u_m[sel] = np.where(on_x, ly + 1.3 * (lx > 0), lx + 2.9 + 1.7 * (ly > 0))
        hits.normal_x[sel], hits.normal_y[sel] = c * lnx - s * lny, s * lnx + c * lny
