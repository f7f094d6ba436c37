"""Training-time augmentation of prepared stereo frames (h, w, 6) uint8, labels kept honest.

A mirrored pair swaps eyes and negates steering; a small horizontal shift is a small yaw and
corrects steering (PilotNet's viewpoint augmentation, for rotations: exact at any depth);
``viewpoint`` (opt-in) re-renders both eyes from a step aside using their disparity
(`perception.steering.viewpoint`) and corrects steering back toward the line;
light, colour, negatives and shadows change appearance only, identically in both eyes.
Runs in the data loader's worker processes, one batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from rover.config import dataclass_from_dict


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; every amount is a +/- range or a probability."""

    flip: float = 0.5  # mirror the pair: swap eyes, negate steering
    shift_px: int = 6  # horizontal shift of both eyes (prepared pixels): a small yaw ...
    shift_steering_per_px: float = 0.0125  # ... answered by this steering per pixel
    brightness: float = 0.25  # added, as a fraction of full scale
    contrast: float = 0.4
    colour: float = 0.3  # per-channel gain, the same for both eyes
    channel_shuffle: float = 0.5  # probability of permuting R, G, B: unseen hues
    grayscale: float = 0.2
    invert: float = 0.15  # probability of a photographic negative: light obstacles, dark ground
    shadow: float = 0.3  # probability of a slanted shadow band across both eyes
    viewpoint: float = 0.0  # probability of a view from a step aside, synthesised from stereo
    viewpoint_shift_m: float = 0.25  # ... of up to this many metres ...
    viewpoint_steering_per_m: float = 0.25  # ... answered by this steering per metre

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AugmentConfig:
        """Build from a dict; unknown keys raise ConfigError."""
        return dataclass_from_dict(cls, raw, "augment")


def augment_batch(
    images: np.ndarray, steering: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Augment prepared images (B, h, w, 6) in place; returns the corrected steering."""
    steering = steering.astype(np.float32).copy()
    for b in range(len(images)):
        img = images[b]
        if rng.random() < cfg.flip:
            mirrored = cv2.flip(img, 1)  # contiguous, unlike a ::-1 view
            img = np.concatenate([mirrored[..., 3:], mirrored[..., :3]], axis=2)
            steering[b] = -steering[b]
        if rng.random() < cfg.viewpoint:
            from perception.steering.viewpoint import ViewpointConfig, shift_view

            view = ViewpointConfig(cfg.viewpoint_shift_m, cfg.viewpoint_steering_per_m)
            offset = float(rng.uniform(-cfg.viewpoint_shift_m, cfg.viewpoint_shift_m))
            img = shift_view(img, offset, view)
            steering[b] -= offset * cfg.viewpoint_steering_per_m  # left of the line: steer right
        if cfg.shift_px:
            dx = int(rng.integers(-cfg.shift_px, cfg.shift_px + 1))
            img = _shift(img, dx)
            # content moving right = the camera yawed left: steer right to recover
            steering[b] -= dx * cfg.shift_steering_per_px
        img = _appearance(img, cfg, rng)
        if rng.random() < cfg.shadow:
            img = _shadow(img, rng)
        images[b] = img
    return np.clip(steering, -1.0, 1.0)


def _shift(img: np.ndarray, dx: int) -> np.ndarray:
    if dx == 0:
        return img
    out = np.empty_like(img)
    if dx > 0:
        out[:, dx:] = img[:, :-dx]
        out[:, :dx] = img[:, :1]
    else:
        out[:, :dx] = img[:, -dx:]
        out[:, dx:] = img[:, -1:]
    return out


def _appearance(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and per-channel gain as one lookup table; shuffle; grayscale."""
    if rng.random() < cfg.channel_shuffle:
        perm = rng.permutation(3)
        img = img[..., np.concatenate([perm, perm + 3])]
    if rng.random() < cfg.invert:
        img = 255 - img
    if rng.random() < cfg.grayscale:
        eyes = [cv2.cvtColor(np.ascontiguousarray(img[..., k : k + 3]), cv2.COLOR_RGB2GRAY)
                for k in (0, 3)]  # fmt: skip
        img = np.repeat(np.stack(eyes, axis=2), 3, axis=2)
    gain = 1.0 + rng.uniform(-cfg.colour, cfg.colour, 3)
    contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    offset = 255.0 * rng.uniform(-cfg.brightness, cfg.brightness)
    levels = np.arange(256, dtype=np.float32)[:, None]
    lut = (levels - 128.0) * contrast + 128.0 + offset
    lut = np.clip(lut * np.tile(gain, 2)[None, :], 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(img), lut[None])


def _shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    x0, x1 = sorted(rng.uniform(-0.2 * w, 1.2 * w, 2))
    slant = rng.uniform(-0.5, 0.5) * w
    poly = np.array([[x0, 0], [x1, 0], [x1 + slant, h], [x0 + slant, h]], np.int32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, poly, 1)
    factor = rng.uniform(0.45, 0.8)
    out = img.copy()
    cv2.copyTo(cv2.convertScaleAbs(img, alpha=factor), mask, out)
    return out
