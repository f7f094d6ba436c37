"""Draw the traversability map and the arcs over the left camera image (for the sim window).

    rgb = draw_overlay(left, msg.cost, PolarSummary.from_arcs(msg.arcs), geom)

Obstacle cells are tinted red, free ground green (by cost), unknown cells are left as they are;
each arc is drawn up to its free distance, coloured from red (short) to green (long).
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.stereo import StereoGeometry
from perception.traversability.polar import ArcConfig, PolarSummary, arc_polyline

UNKNOWN_COST = 255


def draw_overlay(
    left: np.ndarray,
    cost: np.ndarray,
    polar: PolarSummary | None,
    geom: StereoGeometry,
    arcs: ArcConfig | None = None,
    alpha: float = 0.35,
) -> np.ndarray:
    """A new RGB uint8 image: ``left`` with the cost map tinted in and the arcs drawn."""
    h, w = left.shape[:2]
    up = cv2.resize(cost, (w, h), interpolation=cv2.INTER_NEAREST)
    known = up != UNKNOWN_COST
    p = up.astype(np.float32) / 254.0
    tint = np.stack([255 * p, 255 * (1 - p), np.zeros_like(p)], axis=-1)
    out = left.astype(np.float32)
    out[known] = (1 - alpha) * out[known] + alpha * tint[known]
    out = out.astype(np.uint8)
    if polar is not None:
        _draw_arcs(out, polar, geom, arcs or ArcConfig())
    return out


def _draw_arcs(img: np.ndarray, polar: PolarSummary, geom: StereoGeometry, cfg: ArcConfig):
    for steering, free in zip(polar.steering.tolist(), polar.free_m.tolist(), strict=True):
        length = free + cfg.camera_to_front_m
        if length <= 0.3:
            continue
        pts = arc_polyline(steering, cfg, length)
        pts = pts[pts[:, 0] > 0.3]  # the camera cannot see the ground closer than ~0.3 m
        if len(pts) < 2:
            continue
        z, x = pts[:, 0], -pts[:, 1]
        u = geom.cx_px + geom.fx_px * x / z
        v = geom.cy_px + geom.fy_px * geom.height_m / z
        good = np.isfinite(u) & np.isfinite(v)
        poly = np.stack([u[good], v[good]], 1).round().astype(np.int32)
        share = min(1.0, free / 5.0)
        colour = (int(255 * (1 - share)), int(255 * share), 0)
        cv2.polylines(img, [poly], False, colour, 1, cv2.LINE_AA)
