"""The simulated stereo rig: the robot's rig (``drivers.stereo_rig``) as the renderer draws it.

Pitch is modelled as a vertical shift of the principal point (the image plane stays vertical).
Every image column is then a vertical plane through the eye, which makes the per-column ray
cast exact and keeps the rectified-stereo relation ``disparity = fx * baseline / depth`` exact;
for the few degrees a forward camera is tilted the picture matches a rotated camera closely.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from drivers.stereo_rig import StereoRig
from rover.errors import ConfigError


@dataclass(frozen=True)
class CameraModel(StereoRig):
    """The robot's rig (``drivers.stereo_rig``) as the simulator renders it."""

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

    def disparity_from_depth(self, depth_m: np.ndarray) -> np.ndarray:
        """Left-eye disparity in pixels for a depth image (inf depth gives 0)."""
        depth = np.asarray(depth_m, dtype=np.float32)
        with np.errstate(divide="ignore"):
            return np.float32(self.fx_px * self.baseline_m) / depth
