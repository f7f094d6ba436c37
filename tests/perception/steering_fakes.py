"""Small, fast stand-ins for the steering tests: tiny frames with a learnable signal.

A "bar" frame is noise with one bright vertical bar (an obstacle); the right eye sees it a few
pixels to the left (disparity). The demonstrated steering turns away from the bar, so a model
that learns anything at all must read the bar's position.
"""

from __future__ import annotations

import numpy as np

from perception.steering.demos import DemoSample
from perception.steering.model import SteeringModelConfig

TINY_HW = (128, 128)


def tiny_config(arch: str = "dave", throttle: bool = True, bins: int = 0) -> SteeringModelConfig:
    """128x128 camera frames, pooled to 64x64 per eye: the smallest size the nets take.
    Plain regression by default: its answers depend on the frame only, not on the last one."""
    return SteeringModelConfig(
        arch=arch,
        image_height_px=TINY_HW[0],
        image_width_px=TINY_HW[1],
        crop_top_px=0,
        crop_bottom_px=0,
        downsample=2,
        predict_throttle=throttle,
        dropout=0.0,
        steering_bins=bins,
    )


def bar_frames(x_frac: float, rng: np.random.Generator, hw=TINY_HW):
    """Left and right frames with a bar centred at `x_frac` of the width."""
    h, w = hw
    left = rng.integers(20, 70, (h, w, 3), dtype=np.uint8)
    right = rng.integers(20, 70, (h, w, 3), dtype=np.uint8)
    centre, half = int(x_frac * w), max(3, w // 16)
    left[:, max(0, centre - half) : centre + half] = (230, 200, 60)
    shifted = centre - 4
    right[:, max(0, shifted - half) : max(0, shifted + half)] = (230, 200, 60)
    return left, right


def bar_steering(x_frac: float) -> float:
    """Steer away from the bar: bar on the left (small x) -> turn right (negative)."""
    return float(np.clip(-1.6 * (0.5 - x_frac), -1.0, 1.0))


def bar_session(n: int, name: str, seed: int = 0, hw=TINY_HW) -> list[DemoSample]:
    """`n` frames of one session; the bar wanders smoothly, as in driving."""
    rng = np.random.default_rng(seed)
    x = np.clip(0.5 + np.cumsum(rng.normal(0, 0.04, n)), 0.05, 0.95)
    out = []
    for i, xf in enumerate(x):
        left, right = bar_frames(float(xf), rng, hw)
        throttle = 0.4 + 0.2 * abs(xf - 0.5)
        out.append(DemoSample(left, right, bar_steering(xf), throttle, i * 33_333_333, i, name, i))
    return out
