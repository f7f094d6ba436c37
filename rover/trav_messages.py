"""The traversability node's message and topic (to join rover/messages.py and rover/topics.py).

The map is in the left camera's image space, downsampled: each cell's obstacle cost 0 (free)
..254 (obstacle), 255 where nothing is known. The polar summary gives, for K candidate
steering arcs, the free distance from the front bumper along each: the control loop reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from rover import messages as m
from rover.topics import Topic


@dataclass(frozen=True, kw_only=True)
class TraversabilityMap(m.Message):
    """One camera frame's traversability: cost map, free distance per arc, plane, timing."""

    TYPE_ID: ClassVar[int] = 7
    cost: np.ndarray = field(repr=False)  # (h, w) uint8, left camera image space
    arcs: np.ndarray = field(repr=False)  # (2, K) float32: steering of each arc; free metres
    plane_height_m: float = 0.0  # camera height over the fitted ground plane
    plane_fitted: bool = False  # False: the calibrated plane stood in this frame
    online_updates: int = 0  # online head updates so far (0: off or no model)
    latency_ms: float = 0.0  # processing time of this frame
    model: str = ""  # the segmenter's file hash, empty when stereo only

    def polar(self):
        """The arcs as the guard reads them (a `perception.traversability.polar.PolarSummary`)."""
        from perception.traversability.polar import PolarSummary

        arcs = np.asarray(self.arcs, np.float32).reshape(2, -1)
        return PolarSummary(arcs[0].copy(), arcs[1].copy())


PERCEPTION_TRAVERSABILITY = Topic(
    "perception/traversability", TraversabilityMap, 30.0, recorded=True
)
