"""Textures, palette and lighting tables built once per (world, camera).

Every texture holds palette indices. A pixel's colour is ``LUT[key, palette_index]`` where the
key packs a shade level (sun, albedo) and a fog level (distance), so lighting and fog cost one
table lookup per pixel. Palette layout: 48 sky entries (12 gradient x 4 cloud levels), the
foliage ramp, 4 ground ramps, 8 obstacle ramps.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from rover.errors import ConfigError
from sim.camera import CameraModel
from sim.materials import LEVELS, MATERIALS, fractal_noise, obstacle_texture, ramp, to_levels
from sim.scenario import MAX_OBSTACLE_MATERIALS
from sim.world import World

SHADES = np.array([0.3, 0.42, 0.55, 0.68, 0.82, 1.0, 1.15, 1.3], dtype=np.float32)
FOG_LEVELS = 32
SKY_KEY = int(np.flatnonzero(SHADES == 1.0)[0]) * FOG_LEVELS  # unlit, unfogged
SKY_BASE, FOLIAGE_BASE, GROUND_BASE, OBSTACLE_BASE = 0, 48, 64, 128
SKY_GRADIENT = 12
TEX_U, TEX_V, OBSTACLE_TEXEL_M = 64, 512, 0.02  # obstacle textures: 1.28 m x 10.24 m
GROUND_SIZE, GROUND_TEXEL_M, GROUND_MIPS = 512, 0.01, 5  # 5.12 m tile, levels 0..4
MACRO_X, MACRO_Y = 1024, 512  # macro cells are 16 level-0 texels: 0.16 m
SKY_WIDTH = 1024  # panorama columns over 360 degrees
GROUND_LUT_OFFSET = 256 * 256  # second half of the LUT: ground, indexed by (key, patch|detail)


class Appearance:
    """Palette, lighting LUT and textures of one world as seen by one camera."""

    def __init__(self, world: World, camera: CameraModel) -> None:
        rng = np.random.default_rng(world.look_seed)
        self.world, self.camera = world, camera
        self.palette = np.zeros((256, 3), np.float32)
        used = world.materials_in_use()
        if len(used) > MAX_OBSTACLE_MATERIALS:  # Scenario validation already refuses this
            raise ConfigError(f"{len(used)} obstacle materials; use at most 8 per scenario")
        self.material_slot = {name: i for i, name in enumerate(used)}
        for name, slot in self.material_slot.items():
            base = OBSTACLE_BASE + slot * LEVELS
            self.palette[base : base + LEVELS] = ramp(MATERIALS[name])
        self.palette[FOLIAGE_BASE : FOLIAGE_BASE + LEVELS] = ramp(MATERIALS["foliage"])
        self.obstacle_atlas = self._obstacle_atlas(rng)
        self._ground_palette()
        self.ground_fine, self.ground_offsets = self._ground_fine(rng)
        self.macro = self._macro(rng)
        self.ground_lut = self._ground_lut()
        self.sky_rows = int(math.ceil(camera.cy_px))
        self.sky = self._sky(rng)
        self.lut = self._lut()

    def material_base(self, name: str) -> int:
        """Atlas offset of an obstacle material's texture."""
        return self.material_slot[name] * TEX_U * TEX_V

    def _obstacle_atlas(self, rng: np.random.Generator) -> np.ndarray:
        # u-major (each texture column contiguous): pixels down an image column read along it.
        atlas = np.zeros((len(self.material_slot), TEX_U, TEX_V), np.uint8)
        for name, slot in self.material_slot.items():
            levels, crown = obstacle_texture(MATERIALS[name], rng, TEX_V, TEX_U, OBSTACLE_TEXEL_M)
            base = np.where(crown, FOLIAGE_BASE, OBSTACLE_BASE + slot * LEVELS)
            atlas[slot] = (base + levels).T
        return atlas.reshape(-1)

    def _ground_palette(self) -> None:
        names = list(self.world.ground_materials) + [self.world.trail_material]
        names += [names[-1]] * (4 - len(names))
        for i, name in enumerate(names):
            self.palette[GROUND_BASE + i * LEVELS : GROUND_BASE + (i + 1) * LEVELS] = ramp(
                MATERIALS[name]
            )

    def _ground_fine(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Detail shade levels with mip levels (the noise is averaged, then quantised)."""
        field = fractal_noise(rng, GROUND_SIZE, GROUND_SIZE, (8, 8), 6)
        blades = fractal_noise(rng, GROUND_SIZE, GROUND_SIZE, (128, 128), 2)
        field = 0.65 * field + 0.35 * blades
        levels, offsets, offset = [], [], 0
        for level in range(GROUND_MIPS):
            size = GROUND_SIZE >> level
            small = cv2.resize(field, (size, size), interpolation=cv2.INTER_AREA)
            # Averaging flattens contrast; stretch it back so far ground is not a flat wash.
            small = 0.5 + (small - 0.5) * (1.0 + 0.25 * level)
            levels.append(to_levels(np.clip(small, 0.0, 1.0)).reshape(-1))
            offsets.append(offset)
            offset += size * size
        return np.concatenate(levels), np.array(offsets, dtype=np.int32)

    def _macro(self, rng: np.random.Generator) -> np.ndarray:
        """Patch field: 0..11 blend the patch materials, 12..15 the trail (edge to centre)."""
        cell = GROUND_TEXEL_M * 16
        patches = max(2, round(MACRO_X * cell / self.world.patch_size_m))
        field = fractal_noise(rng, MACRO_Y, MACRO_X, (max(2, patches // 2), patches), 3)
        macro = np.clip(field * 12, 0, 11).astype(np.uint8)
        trail = self.world.trail
        if trail is not None:
            x0, y0 = self.ground_origin()
            xs = x0 + (np.arange(MACRO_X) + 0.5) * cell
            ys = y0 + (np.arange(MACRO_Y) + 0.5) * cell
            off = np.abs(ys[:, None] - np.asarray(trail.centre_y(xs))[None, :])
            edge = np.clip((trail.half_width_m + 0.2 - off) / 0.5, 0.0, 1.0)
            on = edge > 0
            macro[on] = 12 + np.minimum(3, (edge[on] * 4).astype(np.uint8))
        return (macro << 4).reshape(-1)  # pre-shifted: the pixel code is macro | fine

    def ground_origin(self) -> tuple[float, float]:
        """World position of texel (0, 0) of the ground maps."""
        cell = GROUND_TEXEL_M * 16
        return self.world.bounds[0] - 10.0, -MACRO_Y * cell / 2

    def _ground_lut(self) -> np.ndarray:
        """Map (macro level, fine level) to a palette index, dithering material borders."""
        macro, fine = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
        n_patch = len(self.world.ground_materials)
        jitter = (fine / 15.0 - 0.5) * 0.75  # detail noise frays the 16 cm patch cells
        blend = np.clip(macro / 11.0 + jitter, 0.0, 0.999)
        patch = np.minimum((blend * n_patch).astype(int), n_patch - 1)
        trail_w = (macro - 11) / 4.0 + (fine / 15.0 - 0.5) * 0.9
        ramp_id = np.where((macro >= 12) & (trail_w > 0.5), 3, patch)
        return (GROUND_BASE + ramp_id * LEVELS + fine).astype(np.uint8).reshape(-1)

    def _sky(self, rng: np.random.Generator) -> np.ndarray:
        """Panorama of the sky rows: gradient by elevation with drifting clouds."""
        cam = self.camera
        rows = max(self.sky_rows, 1)
        elev = np.arctan((cam.cy_px - np.arange(rows)) / cam.fy_px)
        grad = np.clip(elev / math.radians(55.0), 0.0, 1.0)[:, None]
        clouds = fractal_noise(rng, rows, SKY_WIDTH, (max(2, rows // 24), 24), 4)
        cover = {"clear": 0.3, "hazy": 0.45, "overcast": 0.9, "dusk": 0.4}[self.world.lighting.sky]
        amount = np.clip((clouds - (1.0 - cover)) / max(cover, 1e-3), 0.0, 1.0)
        amount *= np.clip(grad * 4.0, 0.0, 1.0)  # clouds thin out into the horizon haze
        dither = rng.random((rows, SKY_WIDTH)) - 0.5
        top = SKY_GRADIENT - 1
        g = np.clip((grad * top + dither).round(), 0, top).astype(np.uint8)
        c = np.clip((amount * 3.0 + dither).round(), 0, 3).astype(np.uint8)
        stops = MATERIALS[self.world.lighting.sky].stops
        horizon, zenith, cloud = (np.asarray(s, np.float32) for s in stops)
        gv = np.arange(SKY_GRADIENT, dtype=np.float32)[:, None, None] / top
        cv = np.arange(4, dtype=np.float32)[None, :, None] / 3.0 * 0.85
        colours = (horizon * (1 - gv) + zenith * gv) * (1 - cv) + cloud * cv
        self.palette[SKY_BASE : SKY_BASE + 4 * SKY_GRADIENT] = colours.reshape(-1, 3)
        sky = SKY_BASE + g * 4 + c
        canopy = self.world.lighting.canopy
        if canopy > 0:
            # Forest canopy overhead: leaves thicken towards the zenith, with sky gaps.
            leaves = fractal_noise(rng, rows, SKY_WIDTH, (max(2, rows // 8), 96), 3)
            reach = np.clip((elev[:, None] - math.radians(8.0)) / math.radians(30.0), 0.0, 1.0)
            cover = leaves * reach > 1.0 - canopy
            shade = np.clip(leaves * 10, 0, LEVELS - 1).astype(np.uint8)
            sky = np.where(cover, FOLIAGE_BASE + shade, sky)
        return sky.astype(np.uint8).reshape(-1)

    def _lut(self) -> np.ndarray:
        """RGBA (packed uint32) for every (shade, fog, palette) combination."""
        fog = np.asarray(self.world.lighting.fog_rgb, np.float32)
        f = (np.arange(FOG_LEVELS, dtype=np.float32) / (FOG_LEVELS - 1))[None, :, None, None]
        shade = SHADES[:, None, None, None]
        rgb = self.palette[None, None] * shade * (1 - f) + fog * f
        rgb[SKY_KEY // FOG_LEVELS, 0] = self.palette
        # Ground pixels carry a (patch, detail) code; resolve it to a palette index here.
        rgb = np.concatenate([rgb, rgb[:, :, self.ground_lut]], axis=0)
        rgba = np.zeros(rgb.shape[:3] + (4,), np.uint8)
        rgba[..., :3] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
        rgba[..., 3] = 255
        return rgba.reshape(-1, 4).view(np.uint32).reshape(-1)

    def shade_level(self, shade: np.ndarray) -> np.ndarray:
        """Index of the nearest shade level."""
        mids = (SHADES[1:] + SHADES[:-1]) / 2
        return np.searchsorted(mids, shade)

    def fog_level(self, distance_m: np.ndarray) -> np.ndarray:
        """Quantised fog amount for a distance: 1 - exp(-d / fog distance)."""
        f = 1.0 - np.exp(-np.asarray(distance_m) / self.world.lighting.fog_distance_m)
        return np.clip((f * (FOG_LEVELS - 1) + 0.5).astype(np.int64), 0, FOG_LEVELS - 1)

    def light(self, normal_x: np.ndarray, normal_y: np.ndarray) -> np.ndarray:
        """Shade of a vertical surface facing (normal_x, normal_y): ambient plus sun."""
        light = self.world.lighting
        sx = math.cos(light.sun_azimuth_rad) * math.cos(light.sun_elevation_rad)
        sy = math.sin(light.sun_azimuth_rad) * math.cos(light.sun_elevation_rad)
        lambert = np.maximum(0.0, normal_x * sx + normal_y * sy)
        return (light.ambient + light.sun_strength * lambert) / self._reference()

    def ground_shade(self) -> float:
        """Shade of the flat ground."""
        light = self.world.lighting
        lit = light.ambient + light.sun_strength * math.sin(light.sun_elevation_rad)
        return lit / self._reference()

    def _reference(self) -> float:
        # Normalise so sunlit ground sits just under full brightness whatever the sky.
        light = self.world.lighting
        return (light.ambient + light.sun_strength * 0.85) / 0.95
