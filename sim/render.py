"""First-person stereo renderer: a vectorised numpy ray caster with per-pixel ground truth.

Per column (``sim.raycast``): the nearest hits on obstacles. Per row: the ground distance from
the camera height and pitch, the sky above the horizon. Obstacles have heights, so a short rock
in front of a tree hides only the bottom of the trunk. Each pixel then needs a handful of
whole-image numpy operations and table lookups; no Python loop touches pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sim.camera import CameraModel
from sim.raycast import ColumnCaster, ColumnHits
from sim.textures import (
    FOG_LEVELS,
    GROUND_LUT_OFFSET,
    GROUND_SIZE,
    GROUND_TEXEL_M,
    MACRO_X,
    MACRO_Y,
    OBSTACLE_TEXEL_M,
    SKY_KEY,
    SKY_WIDTH,
    TEX_U,
    TEX_V,
    Appearance,
)
from sim.world import World

LAYERS = 3  # hits kept per column: enough for a rock in front of a cone in front of a tree
BASE_MASK = (1 << 18) - 1  # seg "pack": texture base in the low 18 bits, light key above


class GroundTruth:
    """Per-pixel truth for both eyes (index 0 left, 1 right), aligned with the images.

    Arrays are built on first access from what the renderer already has (obstacles only
    occur in a band of rows), so a caller that only wants images pays nothing for them.
    """

    def __init__(self, band: slice, band_mask: np.ndarray, band_depth, bg_depth, band_shape):
        self._band, self._band_mask, self._band_depth = band, band_mask, band_depth
        self._bg_depth, self._band_shape = bg_depth, band_shape
        self._shape = (band_mask.shape[0], bg_depth.shape[1], band_mask.shape[2])
        self._mask: np.ndarray | None = None
        self._depth: np.ndarray | None = None
        self._ids: np.ndarray | None = None

    @property
    def obstacle_mask(self) -> np.ndarray:
        """(2, H, W) bool: True on obstacles, False on ground and sky."""
        if self._mask is None:
            self._mask = np.zeros(self._shape, bool)
            self._mask[:, self._band] = self._band_mask
        return self._mask

    @property
    def depth_m(self) -> np.ndarray:
        """(2, H, W) float32 depth along the optical axis in metres; inf where the sky is."""
        if self._depth is None:
            self._depth = np.empty(self._shape, np.float32)
            self._depth[...] = self._bg_depth
            band = self._depth[:, self._band]
            np.copyto(band, self._band_depth, where=self._band_mask)
        return self._depth

    @property
    def shape_id(self) -> np.ndarray:
        """(2, H, W) int16 index into ``world.obstacles``; -1 on ground and sky."""
        if self._ids is None:
            self._ids = np.full(self._shape, -1, np.int16)
            self._ids[:, self._band] = self._band_shape()
        return self._ids

    @property
    def ground_mask(self) -> np.ndarray:
        """True where the ground is seen."""
        return ~self.obstacle_mask & np.isfinite(self.depth_m)

    def disparity_px(self, camera: CameraModel, eye: int = 0) -> np.ndarray:
        """Disparity fx * baseline / depth for one eye (0 where the sky is)."""
        return camera.disparity_from_depth(self.depth_m[eye])


class StereoRenderer:
    """Renders a world from a stereo rig pose; tables are built once per (world, camera)."""

    def __init__(self, world: World, camera: CameraModel | None = None) -> None:
        self.world = world
        self.camera = camera = camera or CameraModel()
        self.look = Appearance(world, camera)
        self.caster = ColumnCaster(world.obstacles, world.look_seed)
        w, h = camera.width_px, camera.height_px
        self.k = (np.arange(w) - camera.cx_px) / camera.fx_px
        self._column_distance = np.sqrt(1.0 + self.k**2)
        self._rows = np.arange(h, dtype=np.int16).reshape(1, h, 1)
        codes = 2 * w * (2 * LAYERS + 1)  # per-pixel span codes; int16 keeps the lookups cheap
        code_type = np.int16 if codes < np.iinfo(np.int16).max else np.int32
        self._colbase = (np.arange(2 * w, dtype=code_type) * (2 * LAYERS + 1)).reshape(2, 1, w)
        self._horizon = min(max(self.look.sky_rows, 0), h)
        rows = np.arange(h, dtype=np.float64)
        self._rowfac = (
            ((camera.cy_px - rows) / (camera.fy_px * OBSTACLE_TEXEL_M))
            .astype(np.float32)
            .reshape(1, h, 1)
        )
        self._v0 = np.float32(camera.height_m / OBSTACLE_TEXEL_M)
        mat_base = [self.look.material_base(o.material) for o in world.obstacles]
        self._mat_base = np.array(mat_base + [0], dtype=np.int64)
        self._albedo = np.array([o.albedo for o in world.obstacles] + [1.0])
        self._ground_rows(rows)

    def _ground_rows(self, rows: np.ndarray) -> None:
        """Per-row tables for the ground below the horizon and the sky above it."""
        cam, look, hr = self.camera, self.look, self._horizon
        below = rows[hr:] - cam.cy_px
        z = np.minimum(cam.height_m * cam.fy_px / np.maximum(below, 1e-3), 5000.0)
        footprint = z / (cam.fx_px * GROUND_TEXEL_M)
        level = np.clip(np.floor(np.log2(np.maximum(footprint, 1.0))), 0, 4).astype(np.int64)
        scale = 1.0 / (GROUND_TEXEL_M * 2.0**level)
        col = (slice(None), None)
        self._g_scale = scale
        self._g_zs = (z * scale).astype(np.float32)[None, :, None]
        self._g_mask = ((GROUND_SIZE >> level) - 1).astype(np.int32)[col]
        self._g_shift = (GROUND_SIZE.bit_length() - 1 - level).astype(np.int32)[col]
        self._g_offset = look.ground_offsets[level].astype(np.int32)[col]
        self._g_macro_shift = (4 - level).astype(np.int32)[col]
        ground_key = int(look.shade_level(np.array([look.ground_shade()]))[0]) * FOG_LEVELS
        keys = np.full(cam.height_px, SKY_KEY, dtype=np.int32)
        keys[hr:] = ground_key + look.fog_level(np.hypot(z, cam.height_m))
        keys <<= 8
        keys[hr:] += GROUND_LUT_OFFSET  # ground pixels index the LUT by patch/detail code
        self._bg_key = keys.reshape(1, -1, 1)
        depth = np.full(cam.height_px, np.inf, dtype=np.float32)
        depth[hr:] = z
        self._bg_depth = depth.reshape(1, -1, 1)
        self._sky_rows = (np.arange(hr, dtype=np.int32) * SKY_WIDTH)[:, None]

    def rig_pose(self, x_m: float, y_m: float, yaw_rad: float) -> tuple[float, float, float]:
        """The rig centre for a vehicle pose (the rig sits ``mount_forward_m`` ahead)."""
        ahead = self.camera.mount_forward_m
        return x_m + ahead * math.cos(yaw_rad), y_m + ahead * math.sin(yaw_rad), yaw_rad

    def render(
        self, x_m: float, y_m: float, yaw_rad: float
    ) -> tuple[np.ndarray, np.ndarray, GroundTruth]:
        """Left and right RGB images (H, W, 3 uint8) and ground truth, from the rig centre."""
        cam = self.camera
        left_dx, left_dy = -math.sin(yaw_rad), math.cos(yaw_rad)
        half = cam.baseline_m / 2
        eyes = np.array(
            [
                [x_m + half * left_dx, y_m + half * left_dy],
                [x_m - half * left_dx, y_m - half * left_dy],
            ]
        )
        hits = self.caster.cast(
            eyes, yaw_rad, self.k, cam.fx_px, cam.cx_px, LAYERS, cam.max_range_m
        )
        bounds, seg_table, seg_shape = self._segments(hits)
        # Obstacles only occur between the first and last span boundary of any column.
        top, bottom = int(bounds.min()), int(bounds.max())
        band = slice(top, max(top, bottom))
        rows = self._rows[:, band]
        n = np.zeros((2, rows.shape[1], cam.width_px), np.uint8)
        hit = np.empty(n.shape, bool)
        for b in bounds:
            np.greater_equal(rows, b, out=hit)
            n += hit.view(np.uint8)
        code = self._colbase + n
        is_obstacle = (n & 1).view(bool)
        seg = seg_table.take(code, mode="clip")  # 8 bytes: depth (float32), pack (int32)
        t_pix = seg.view(np.float32)[..., 0::2]
        pack = seg.view(np.int32)[..., 1::2]
        # Texture row from the pixel's height on the obstacle; textures are stored u-major.
        v = (t_pix * self._rowfac[:, band] + self._v0).astype(np.int32)
        v += pack & BASE_MASK
        palette_index = self.look.obstacle_atlas.take(v, mode="clip")
        pack >>= 10
        pack &= 0xFF00  # the light key, shifted to select the LUT row
        pack |= palette_index
        lut_index = self._background(eyes, yaw_rad)
        np.copyto(lut_index[:, band], pack, where=is_obstacle)
        rgba = self.look.lut.take(lut_index, mode="clip")
        rgb = cv2.cvtColor(rgba.view(np.uint8).reshape(-1, cam.width_px, 4), cv2.COLOR_RGBA2RGB)
        truth = GroundTruth(
            band, is_obstacle, t_pix, self._bg_depth, lambda: seg_shape.take(code, mode="clip")
        )
        return rgb[: cam.height_px], rgb[cam.height_px :], truth

    def render_vehicle(
        self, x_m: float, y_m: float, yaw_rad: float
    ) -> tuple[np.ndarray, np.ndarray, GroundTruth]:
        """Render from a vehicle pose (its footprint centre)."""
        return self.render(*self.rig_pose(x_m, y_m, yaw_rad))

    def _segments(self, hits: ColumnHits):
        """Visible row spans per column and the per-(column, span) tables pixels look up."""
        cam, look = self.camera, self.look
        ncol = 2 * cam.width_px
        t = hits.depth_m
        at = (hits.column, hits.rank)
        top_row = np.full((ncol, LAYERS), cam.cy_px)
        bot_row = np.full((ncol, LAYERS), cam.cy_px)
        top_row[at] = cam.cy_px + cam.fy_px * (cam.height_m - hits.top_m) / t
        bot_row[at] = cam.cy_px + cam.fy_px * cam.height_m / t
        # A farther hit shows only above the tops of all nearer ones.
        clip = np.minimum.accumulate(
            np.concatenate([np.full((ncol, 1), np.inf), top_row[:, :-1]], axis=1), axis=1
        )
        vis_top = np.minimum(top_row, clip)
        vis_bot = np.minimum(bot_row, clip)
        ordered = np.stack([vis_top[:, ::-1], vis_bot[:, ::-1]], axis=2).reshape(ncol, -1)
        bounds = np.clip(np.ceil(ordered), 0, cam.height_px).astype(np.int16)
        bounds = np.ascontiguousarray(bounds.T).reshape(2 * LAYERS, 2, 1, cam.width_px)
        obs = hits.obstacle
        dist = t * self._column_distance[hits.column % cam.width_px]
        shade = look.light(hits.normal_x, hits.normal_y) * self._albedo[obs]
        key = look.shade_level(shade) * FOG_LEVELS + look.fog_level(dist)
        u_texel = np.floor(hits.u_m / OBSTACLE_TEXEL_M).astype(np.int64) & (TEX_U - 1)
        pack = (key << 18) | (self._mat_base[obs] + u_texel * TEX_V)
        # Pixel count n = 2j + 1 lies inside the span of layer LAYERS - 1 - j.
        width = 2 * LAYERS + 1
        slot = hits.column * width + 2 * (LAYERS - 1 - hits.rank) + 1
        table = np.zeros((ncol * width, 2), np.int32)
        table[slot, 0] = t.astype(np.float32).view(np.int32)
        table[slot, 1] = pack
        seg_shape = np.full(ncol * width, -1, np.int16)
        seg_shape[slot] = obs
        return bounds, table.view(np.int64).reshape(-1), seg_shape

    def _background(self, eyes: np.ndarray, yaw_rad: float) -> np.ndarray:
        """LUT indices of ground and sky for every pixel (obstacles are laid over them)."""
        cam, look, hr = self.camera, self.look, self._horizon
        out = np.empty((2, cam.height_px, cam.width_px), np.int32)
        if hr > 0:
            angle = yaw_rad - np.arctan(self.k)
            az = (np.floor(angle / (2 * math.pi) * SKY_WIDTH).astype(np.int32)) & (SKY_WIDTH - 1)
            sky = look.sky.take(self._sky_rows + az, mode="clip")
            np.add(sky, self._bg_key[:, :hr], out=out[:, :hr])
        if hr < cam.height_px:
            np.add(self._ground(eyes, yaw_rad), self._bg_key[:, hr:], out=out[:, hr:])
        return out

    def _ground(self, eyes: np.ndarray, yaw_rad: float) -> np.ndarray:
        """Palette indices of the ground rows: detail texture (mip-mapped) on a patch map."""
        look = self.look
        x0, y0 = look.ground_origin()
        c, s = math.cos(yaw_rad), math.sin(yaw_rad)
        dir_x = (c + self.k * s).astype(np.float32)
        dir_y = (s - self.k * c).astype(np.float32)
        ex = ((eyes[:, 0] - x0)[:, None] * self._g_scale).astype(np.float32)[:, :, None]
        ey = ((eyes[:, 1] - y0)[:, None] * self._g_scale).astype(np.float32)[:, :, None]
        ix = (self._g_zs * dir_x + ex).astype(np.int32)
        iy = (self._g_zs * dir_y + ey).astype(np.int32)
        fine = ((iy & self._g_mask) << self._g_shift) + (ix & self._g_mask) + self._g_offset
        ix >>= self._g_macro_shift
        iy >>= self._g_macro_shift
        ix &= MACRO_X - 1
        iy &= MACRO_Y - 1
        iy <<= MACRO_X.bit_length() - 1
        iy |= ix
        code = look.macro.take(iy, mode="clip")
        code |= look.ground_fine.take(fine, mode="clip")
        return code
