"""Viewpoint synthesis from stereo: the view from a camera a little to the side.

PilotNet's viewpoint augmentation shifts the whole image, which is exact for a yaw and, for a
sideways step, right only for a flat ground at one depth. With two eyes every pixel has its own
depth: a camera moved ``t`` metres to the left sees a point of disparity ``d`` (prepared pixels)
move ``d * t / baseline`` pixels to the right: near ground far, the horizon not at all. Each eye
is re-rendered from its own disparity (OpenCV SGBM on the prepared pair; holes take their row's
median, the ground's) by a backward warp, and the steering label is corrected to head back to
the demonstrated line over ``return_m``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rover.config import dataclass_from_dict


@dataclass(frozen=True)
class ViewpointConfig:
    """Geometry of the prepared frames and how far the synthetic cameras move."""

    shift_m: float = 0.25  # lateral offsets drawn in +/- this
    steering_per_m: float = 0.25  # label correction per metre of offset (back to the line)
    baseline_m: float = 0.12  # the rig's (simulator camera)
    focal_px: float = 80.0  # in prepared pixels: 160 at 320 px, 90 deg, pooled 2x
    max_disparity_px: int = 32

    @classmethod
    def from_dict(cls, raw: dict) -> ViewpointConfig:
        """Build from a dict; unknown keys raise ConfigError."""
        return dataclass_from_dict(cls, raw, "viewpoint")


_MATCHERS: dict[int, cv2.StereoSGBM] = {}


def _matcher(num: int) -> cv2.StereoSGBM:
    if num not in _MATCHERS:
        _MATCHERS[num] = cv2.StereoSGBM_create(
            minDisparity=0, numDisparities=num, blockSize=5, P1=8 * 25, P2=32 * 25,
            uniquenessRatio=10, disp12MaxDiff=1, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
        )  # fmt: skip
    return _MATCHERS[num]


def eye_disparities(img: np.ndarray, cfg: ViewpointConfig) -> tuple[np.ndarray, np.ndarray]:
    """Float32 disparity (prepared px) of the left and of the right eye, holes filled."""
    left = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    right = cv2.cvtColor(np.ascontiguousarray(img[..., 3:]), cv2.COLOR_RGB2GRAY)
    num = cfg.max_disparity_px
    pad = num

    def match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raw = _matcher(num).compute(
            cv2.copyMakeBorder(a, 0, 0, pad, 0, cv2.BORDER_REPLICATE),
            cv2.copyMakeBorder(b, 0, 0, pad, 0, cv2.BORDER_REPLICATE),
        )[:, pad:]
        disp = raw.astype(np.float32) / 16.0
        disp[raw < 0] = np.nan
        return _fill(disp)

    # the right eye's disparity: match the mirrored pair (right as the reference)
    right_disp = match(cv2.flip(right, 1), cv2.flip(left, 1))[:, ::-1]
    return match(left, right), np.ascontiguousarray(right_disp)


def _fill(disp: np.ndarray) -> np.ndarray:
    """Holes take their row's median (the ground's disparity there), else 0 (far)."""
    with np.errstate(all="ignore"), _quiet():
        rows = np.nanmedian(disp, axis=1)
    rows = np.nan_to_num(rows, nan=0.0)
    return np.where(np.isnan(disp), rows[:, None], disp).astype(np.float32)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def shift_view(img: np.ndarray, offset_m: float, cfg: ViewpointConfig) -> np.ndarray:
    """Both eyes as seen from ``offset_m`` to the left (negative: right) of the rig."""
    h, w = img.shape[:2]
    cols = np.arange(w, dtype=np.float32)[None, :].repeat(h, axis=0)
    rows = np.arange(h, dtype=np.float32)[:, None].repeat(w, axis=1)
    out = np.empty_like(img)
    for k, disp in zip((0, 3), eye_disparities(img, cfg), strict=True):
        # content moves right by d * t / B: the output pixel u shows the source's u - that
        map_x = cols - disp * np.float32(offset_m / cfg.baseline_m)
        eye = np.ascontiguousarray(img[..., k : k + 3])
        out[..., k : k + 3] = cv2.remap(
            eye, map_x, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    return out


def corrected_steering(steering: float, offset_m: float, cfg: ViewpointConfig) -> float:
    """Left of the line (offset > 0) steers right (negative) to return to it."""
    return float(np.clip(steering - offset_m * cfg.steering_per_m, -1.0, 1.0))
