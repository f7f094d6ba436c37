"""Arcs: how far each steering can drive, from a cost map."""

from __future__ import annotations

import numpy as np
import pytest

from perception.traversability.pipeline import (
    UNKNOWN_COST,
    TraversabilityPipeline,
)
from perception.traversability.polar import ArcCaster, ArcConfig


def wall_map(row_from: int) -> np.ndarray:
    """An obstacle map that is blocked from ``row_from`` up, across the whole image."""
    prob = np.zeros((240, 320), np.float32)
    prob[:row_from] = 1.0
    return prob


def test_arcs_end_where_the_obstacle_stands(stereo_geometry):
    caster = ArcCaster(stereo_geometry, ArcConfig())
    plane = stereo_geometry.nominal_plane()
    # a wall across the view whose base is seen at the row of ground 4 m ahead
    base_row = int(stereo_geometry.cy_px + stereo_geometry.fy_px * stereo_geometry.height_m / 4.0)
    polar = caster.cast(wall_map(base_row + 1), plane)
    straight = polar.free_at(0.0)
    assert 4.0 - 0.1 - 0.2 < straight <= 4.0 - 0.1  # never longer than the truth
    assert polar.free_m.max() < 4.3  # the wall spans every arc
    clear = caster.cast(np.zeros((240, 320), np.float32), plane)
    assert clear.free_at(0.0) == caster.cfg.max_range_m
    # arcs that leave the view sideways end there: unseen ground is not free ground
    assert clear.free_at(1.0) < 1.0 and clear.free_at(-1.0) < 1.0
    assert np.all(clear.free_m[np.abs(clear.steering) > 0.5] < 2.5)


def test_a_tree_ahead_blocks_the_straight_arcs_not_the_turns(scene, tree):
    sim = scene([tree(3.15, 0.0, radius=0.2)])
    left, right, _ = sim.render()
    result = TraversabilityPipeline().process(left, right)
    polar = result.polar
    assert polar.free_at(0.0) == pytest.approx(2.75 - 0.1, abs=0.35)
    slight = float(polar.steering[8])  # the first arc either side of straight clears it
    assert polar.free_at(slight) > 6.0 and polar.free_at(-slight) > 6.0
    assert polar.free_at(slight / 2) == pytest.approx(polar.free_at(0.0))  # lesser neighbour
    cost = result.cost_map(80, 60)
    assert cost.shape == (60, 80) and cost.dtype == np.uint8
    assert (cost == UNKNOWN_COST).any() and (cost == 254).any() and (cost == 0).any()
    assert set(result.timings_ms) >= {"disparity", "labels", "segmenter", "fuse", "online"}
