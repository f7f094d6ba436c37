"""The simulated stereo rig: a rectified pair of pinhole cameras and its intrinsics.

Pitch is modelled as a vertical shift of the principal point (the image plane stays vertical).
Every image column is then a vertical plane through the eye, which makes the per-column ray
cast exact and keeps the rectified-stereo relation ``disparity = fx * baseline / depth`` exact;
for the few degrees a forward camera is tilted the picture matches a rotated camera closely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from rover.errors import ConfigError


@dataclass(frozen=True)
class CameraModel:
    """Geometry of the two forward cameras, mounted on the vehicle's centre line."""

    width_px: int = 320
    height_px: int = 240
    hfov_deg: float = 90.0
    baseline_m: float = 0.12
    height_m: float = 0.25
    pitch_deg: float = 5.0  # positive tilts the view down
    mount_forward_m: float = 0.15  # rig centre ahead of the vehicle's centre
    max_range_m: float = 80.0  # obstacles beyond this are not drawn (they are lost in fog)

    def __post_init__(self) -> None:
        checks = {
            "width_px": 16 <= self.width_px <= 4096,
            "height_px": 16 <= self.height_px <= 4096,
            "hfov_deg": 10.0 <= self.hfov_deg <= 150.0,
            "baseline_m": 0.0 < self.baseline_m <= 2.0,
            "height_m": 0.02 <= self.height_m <= 5.0,
            "pitch_deg": -30.0 <= self.pitch_deg <= 30.0,
            "max_range_m": 5.0 <= self.max_range_m <= 500.0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"camera {key} = {getattr(self, key)!r} is out of range; "
                    "use a value like the default"
                )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CameraModel:
        """Build from a config table; unknown keys or bad values raise ConfigError."""
        names = {f.name for f in fields(cls)}
        for key in values:
            if key not in names:
                raise ConfigError(
                    f"unknown camera key {key!r}; valid keys: {', '.join(sorted(names))}"
                )
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"bad camera config: {exc}; check the value types") from None

    @property
    def fx_px(self) -> float:
        """Horizontal focal length in pixels."""
        return (self.width_px / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    @property
    def fy_px(self) -> float:
        """Vertical focal length in pixels (square pixels)."""
        return self.fx_px

    @property
    def cx_px(self) -> float:
        """Principal point column (pixel centres at integer coordinates)."""
        return (self.width_px - 1) / 2.0

    @property
    def cy_px(self) -> float:
        """Principal point row: the horizon row, shifted up by the pitch."""
        return (self.height_px - 1) / 2.0 - self.fy_px * math.tan(math.radians(self.pitch_deg))

    @property
    def vfov_deg(self) -> float:
        """Vertical field of view in degrees."""
        return math.degrees(2.0 * math.atan((self.height_px / 2.0) / self.fy_px))

    def intrinsics(self) -> np.ndarray:
        """The 3x3 camera matrix K, identical for both (rectified) eyes."""
        return np.array(
            [[self.fx_px, 0.0, self.cx_px], [0.0, self.fy_px, self.cy_px], [0.0, 0.0, 1.0]]
        )

    def disparity_from_depth(self, depth_m: np.ndarray) -> np.ndarray:
        """Left-eye disparity in pixels for a depth image (inf depth gives 0)."""
        depth = np.asarray(depth_m, dtype=np.float32)
        with np.errstate(divide="ignore"):
            return np.float32(self.fx_px * self.baseline_m) / depth

    def eye_offsets_m(self) -> tuple[float, float]:
        """Lateral offsets of the left and right eye, positive to the vehicle's left."""
        return self.baseline_m / 2.0, -self.baseline_m / 2.0
