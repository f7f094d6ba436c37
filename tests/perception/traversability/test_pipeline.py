"""The pipeline: stereo and the segmenter fused into a cost map and arcs; its config; the overlay."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from perception import stereo
from perception.traversability.guard import (
    GuardConfig,
)
from perception.traversability.model import SegmenterNet
from perception.traversability.pipeline import (
    TraversabilityConfig,
    TraversabilityPipeline,
)
from rover.errors import ConfigError


def test_pipeline_with_a_model_fills_what_stereo_cannot_see(
    rock, scene, stereo_geometry, tiny_segmenter
):
    net = SegmenterNet(tiny_segmenter).eval()
    pipe = TraversabilityPipeline(TraversabilityConfig(), stereo_geometry, net)
    left, right, _ = scene([rock(2.6, 0.4)]).render()
    for _ in range(3):
        result = pipe.process(left, right, offline=True)
    assert result.known.all()
    assert result.learned_prob.shape == (240, 320) and result.online_prob.shape == (240, 320)
    assert pipe.online.updates == 3
    near_obstacle = result.stereo.labels.labels == stereo.OBSTACLE
    assert (result.obstacle_prob[near_obstacle] == 1.0).all()  # the near range trusts stereo


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="wobble"):
        TraversabilityConfig.from_dict({"online": {"wobble": 1}})
    with pytest.raises(ConfigError, match="camera_height_m"):
        TraversabilityConfig.from_dict({"camera_height_m": 40.0})
    with pytest.raises(ConfigError, match="decel_mps2"):
        GuardConfig.from_dict({"decel_mps2": 0.0})
    cfg = TraversabilityConfig.from_dict({"model": "m.pt", "arcs": {"arcs": 9}})
    assert cfg.arcs.arcs == 9 and dataclasses.replace(cfg, model="").model == ""


def test_overlay_tints_obstacles_and_draws_the_arcs(scene, stereo_geometry, tree):
    from perception.traversability.overlay import draw_overlay

    left, right, _ = scene([tree(3.15, 0.0, radius=0.2)]).render()
    result = TraversabilityPipeline().process(left, right)
    out = draw_overlay(left, result.cost_map(80, 60), result.polar, stereo_geometry)
    assert out.shape == left.shape and out.dtype == np.uint8
    trunk = result.stereo.labels.labels == stereo.OBSTACLE
    redder = out[..., 0].astype(int) - left[..., 0].astype(int)
    assert redder[trunk].mean() > 10  # obstacles tinted red
    assert (out != left).any(axis=2)[200:, :].mean() > 0.3  # free ground tinted, arcs drawn
