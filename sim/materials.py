"""Named materials (colour ramps and procedural patterns) and the noise they are made from.

A texture is a field of 16 shade levels (uint8 0..15); its colours come from the material's
ramp. Keeping textures as levels lets the renderer light and fog them with one table lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

LEVELS = 16  # shade levels per material ramp

Rgb = tuple[int, int, int]


@dataclass(frozen=True)
class Material:
    """A colour ramp (dark to light stops) and the pattern that picks shades from it."""

    name: str
    use: str  # "obstacle", "ground" or "sky"
    stops: tuple[Rgb, ...]
    pattern: str = "noise"


def _m(name: str, use: str, pattern: str, *stops: Rgb) -> Material:
    return Material(name, use, tuple(stops), pattern)


_MATERIALS = [
    # Obstacles used by the training families.
    _m("bark_brown", "obstacle", "bark", (38, 28, 20), (92, 70, 50), (140, 118, 92)),
    _m("bark_grey", "obstacle", "bark", (45, 44, 40), (105, 100, 92), (160, 156, 146)),
    _m("bark_dark", "obstacle", "bark", (22, 20, 16), (62, 52, 40), (98, 88, 70)),
    _m("rock_grey", "obstacle", "speckle", (60, 60, 62), (122, 120, 118), (178, 176, 170)),
    _m("rock_mossy", "obstacle", "speckle", (50, 58, 36), (104, 112, 84), (150, 150, 130)),
    _m("cardboard", "obstacle", "grain", (120, 86, 48), (170, 130, 80), (204, 168, 116)),
    _m("crate_wood", "obstacle", "planks", (86, 60, 34), (150, 112, 70), (196, 160, 110)),
    _m("concrete", "obstacle", "concrete", (110, 110, 106), (160, 158, 152), (196, 194, 188)),
    _m("hedge", "obstacle", "leaves", (16, 40, 14), (44, 92, 34), (96, 140, 64)),
    _m("fence_wood", "obstacle", "planks", (70, 52, 36), (128, 100, 72), (170, 142, 108)),
    _m("cone_orange", "obstacle", "cone", (200, 70, 10), (250, 110, 30), (245, 245, 240)),
    # Obstacles reserved for held-out scenarios (never in a training family).
    _m("bark_birch", "obstacle", "birch", (30, 30, 28), (200, 198, 188), (236, 234, 226)),
    _m("rock_red", "obstacle", "speckle", (92, 40, 28), (160, 84, 56), (206, 140, 104)),
    _m("brick", "obstacle", "brick", (80, 34, 26), (150, 62, 44), (196, 180, 160)),
    _m("crate_blue", "obstacle", "planks", (16, 40, 90), (40, 90, 170), (120, 160, 220)),
    _m("cone_yellow", "obstacle", "cone", (190, 160, 10), (240, 210, 30), (30, 30, 30)),
    # Ground.
    _m("grass", "ground", "noise", (34, 62, 22), (70, 110, 40), (120, 150, 70)),
    _m("dry_grass", "ground", "noise", (92, 84, 44), (146, 134, 78), (188, 176, 118)),
    _m("dirt", "ground", "noise", (70, 52, 36), (118, 92, 66), (160, 134, 104)),
    _m("leaf_litter", "ground", "noise", (54, 36, 20), (110, 74, 40), (160, 116, 66)),
    _m("gravel", "ground", "noise", (92, 90, 86), (140, 136, 128), (186, 182, 172)),
    _m("snow", "ground", "noise", (170, 178, 190), (218, 222, 230), (250, 250, 252)),
    _m("sand", "ground", "noise", (164, 134, 90), (206, 176, 128), (232, 212, 170)),
    # Foliage: tree crowns above the trunk and the forest canopy overhead.
    _m("foliage", "canopy", "leaves", (10, 26, 8), (34, 70, 24), (86, 122, 52)),
    # Skies: stops are horizon, zenith, cloud.
    _m("clear", "sky", "sky", (190, 206, 222), (70, 124, 200), (244, 244, 246)),
    _m("hazy", "sky", "sky", (206, 210, 212), (128, 160, 198), (230, 230, 232)),
    _m("overcast", "sky", "sky", (178, 180, 184), (132, 136, 144), (206, 206, 210)),
    _m("dusk", "sky", "sky", (236, 170, 120), (60, 70, 130), (200, 130, 120)),
]

MATERIALS: dict[str, Material] = {m.name: m for m in _MATERIALS}


def names_for(use: str) -> list[str]:
    """Material names usable for ``use`` ("obstacle", "ground" or "sky")."""
    return [m.name for m in _MATERIALS if m.use == use]


def ramp(material: Material, count: int = LEVELS) -> np.ndarray:
    """``count`` RGB colours (float32, 0..255) interpolated through the material's stops."""
    stops = np.asarray(material.stops, dtype=np.float32)
    where = np.linspace(0.0, len(stops) - 1.0, count)
    low = np.minimum(where.astype(int), len(stops) - 2)
    frac = (where - low)[:, None]
    return stops[low] * (1.0 - frac) + stops[low + 1] * frac


def value_noise(
    rng: np.random.Generator, height: int, width: int, cells_y: int, cells_x: int
) -> np.ndarray:
    """Smooth noise in [0, 1], tileable in both axes, with the given number of cells."""
    grid = rng.random((cells_y, cells_x), dtype=np.float32)
    pad = 2
    padded = np.pad(grid, pad, mode="wrap")
    scale_y, scale_x = height / cells_y, width / cells_x
    size = (round(padded.shape[1] * scale_x), round(padded.shape[0] * scale_y))
    big = cv2.resize(padded, size, interpolation=cv2.INTER_CUBIC)
    top, left = round(pad * scale_y), round(pad * scale_x)
    return np.clip(big[top : top + height, left : left + width], 0.0, 1.0)


def fractal_noise(
    rng: np.random.Generator, height: int, width: int, cells: tuple[int, int], octaves: int = 4
) -> np.ndarray:
    """Sum of value-noise octaves (each twice as fine, half as strong), normalised to [0, 1]."""
    total = np.zeros((height, width), np.float32)
    amplitude, norm = 1.0, 0.0
    cy, cx = cells
    for _ in range(octaves):
        total += amplitude * value_noise(rng, height, width, min(cy, height), min(cx, width))
        norm += amplitude
        amplitude *= 0.5
        cy, cx = cy * 2, cx * 2
    return _normalise(total / norm)


def _normalise(field: np.ndarray) -> np.ndarray:
    low, high = np.percentile(field, [1.0, 99.0])
    return np.clip((field - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)


def _bark(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    streaks = fractal_noise(rng, h, w, (max(2, h // 64), w // 4), 3)
    cracks = value_noise(rng, h, w, max(2, h // 8), w // 2) < 0.22
    return np.where(cracks, streaks * 0.3, streaks)


def _birch(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    base = 0.55 + 0.45 * fractal_noise(rng, h, w, (h // 32, w // 8), 2)
    marks = value_noise(rng, h, w, h // 6, w // 3) < 0.2
    return np.where(marks, 0.05, base)


def _speckle(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    return _normalise(
        0.7 * fractal_noise(rng, h, w, (h // 16, w // 8), 4) + 0.3 * rng.random((h, w))
    )


def _grain(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    return fractal_noise(rng, h, w, (h // 4, max(2, w // 32)), 3) * 0.6 + 0.3


def _planks(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    field = _grain(rng, h, w, texel_m)
    plank = max(2, round(0.15 / texel_m))
    field[np.arange(h) % plank == 0, :] *= 0.25
    return field


def _concrete(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    field = 0.35 + 0.5 * fractal_noise(rng, h, w, (h // 16, w // 8), 4)
    field[np.arange(h) % max(2, round(0.6 / texel_m)) == 0, :] *= 0.5
    return field


def _leaves(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    leaves = _normalise(fractal_noise(rng, h, w, (h // 8, w // 8), 3) + 0.5 * rng.random((h, w)))
    return np.where(value_noise(rng, h, w, h // 4, w // 4) < 0.18, 0.0, leaves)


def _brick(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    rows, cols = np.mgrid[0:h, 0:w]
    course = max(3, round(0.075 / texel_m))
    brick_w = max(4, w // 4)
    shift = (rows // course) % 2 * (brick_w // 2)
    mortar = (rows % course == 0) | ((cols + shift) % brick_w == 0)
    body = 0.3 + 0.4 * fractal_noise(rng, h, w, (h // 8, w // 8), 3)
    return np.where(mortar, 1.0, body)


def _cone(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    height_m = np.arange(h)[:, None] * texel_m
    band = ((height_m > 0.16) & (height_m < 0.22)) | ((height_m > 0.3) & (height_m < 0.36))
    body = 0.35 + 0.25 * fractal_noise(rng, h, w, (h // 16, w // 8), 2)
    return np.broadcast_to(np.where(band, 1.0, body), (h, w)).astype(np.float32)


def _noise(rng: np.random.Generator, h: int, w: int, texel_m: float) -> np.ndarray:
    return fractal_noise(rng, h, w, (max(2, h // 32), max(2, w // 32)), 5)


PATTERNS: dict[str, Callable[[np.random.Generator, int, int, float], np.ndarray]] = {
    "bark": _bark,
    "birch": _birch,
    "speckle": _speckle,
    "grain": _grain,
    "planks": _planks,
    "concrete": _concrete,
    "leaves": _leaves,
    "brick": _brick,
    "cone": _cone,
    "noise": _noise,
}


def obstacle_texture(
    material: Material, rng: np.random.Generator, height: int, width: int, texel_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Shade levels (uint8 0..15, rows = height above ground) and a crown mask for trees."""
    field = PATTERNS[material.pattern](rng, height, width, texel_m)
    # Darken the first few centimetres: contact shadow where the obstacle meets the ground.
    height_m = (np.arange(height, dtype=np.float32)[:, None] + 0.5) * texel_m
    field = field * (0.55 + 0.45 * np.clip(height_m / 0.25, 0.0, 1.0))
    crown = np.zeros((height, width), dtype=bool)
    if material.pattern in ("bark", "birch"):
        # Above a ragged crown line the trunk disappears into foliage.
        start_m = rng.uniform(2.2, 3.5)
        ragged = value_noise(rng, height, width, max(2, height // 16), max(2, width // 8))
        crown = height_m + 1.2 * ragged > start_m + 0.6
        leaves = _leaves(rng, height, width, texel_m)
        field = np.where(crown, leaves, field)
    return to_levels(field), crown


def to_levels(field: np.ndarray) -> np.ndarray:
    """Quantise a [0, 1] field to uint8 shade levels 0..LEVELS-1."""
    return np.clip(field * LEVELS, 0, LEVELS - 1).astype(np.uint8)
