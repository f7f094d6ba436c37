"""The robot's default stereo rig: two forward cameras on the centre line, as a description.

Neither the simulator nor perception owns it: the simulator renders this rig
(``sim.camera.CameraModel`` adds only how far it draws), perception's geometry defaults to it
(``perception.stereo.StereoGeometry``) where no calibration says otherwise. A leaf: it imports
nothing else of the project.

Pitch is modelled as a vertical shift of the principal point (the image plane stays vertical),
which keeps the rectified-stereo relation ``disparity = fx * baseline / depth`` exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StereoRig:
    """Geometry of the two forward cameras, mounted on the vehicle's centre line."""

    width_px: int = 320
    height_px: int = 240
    hfov_deg: float = 90.0
    baseline_m: float = 0.12
    height_m: float = 0.25
    pitch_deg: float = 5.0  # positive tilts the view down
    mount_forward_m: float = 0.15  # rig centre ahead of the vehicle's centre

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

    def eye_offsets_m(self) -> tuple[float, float]:
        """Lateral offsets of the left and right eye, positive to the vehicle's left."""
        return self.baseline_m / 2.0, -self.baseline_m / 2.0


DEFAULT_RIG = StereoRig()
