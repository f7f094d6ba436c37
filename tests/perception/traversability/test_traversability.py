"""Segmenter, training, online adaptation, arcs and the guard, on rendered frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from perception import stereo
from perception.traversability import data, train
from perception.traversability.guard import (
    GuardConfig,
    TraversabilityGuard,
    allowed_speed_mps,
    stopping_distance_m,
)
from perception.traversability.model import SegmenterNet, load_model, save_model
from perception.traversability.online import OnlineConfig, OnlineHead
from perception.traversability.pipeline import (
    UNKNOWN_COST,
    TraversabilityConfig,
    TraversabilityPipeline,
)
from perception.traversability.polar import ArcCaster, ArcConfig, PolarSummary
from rover.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def labelled_set(tiny_segmenter) -> data.LabelledSet:
    """Stereo-labelled frames from short forest and open drives (no simulator truth)."""
    pairs = data.sim_pairs(("forest", "open"), seeds=(3,), steps=64, every=4)
    return data.label_pairs(pairs, stereo.StereoLabeler(), tiny_segmenter, progress=False)


def test_labelled_set_counts_stereo_labels_per_cell(labelled_set):
    assert len(labelled_set) == 32
    assert labelled_set.images.shape[1:] == (48, 64, 3)
    counts = labelled_set.counts
    assert counts.shape[1:] == (3, 24, 32)
    assert counts.sum(1).max() <= 100  # a 10x10 pixel cell holds at most 100 labels
    assert counts[:, 1].sum() > 0 and counts[:, 0].sum() > counts[:, 1].sum()


def test_training_learns_from_stereo_labels(labelled_set, tiny_segmenter):
    train_set, val_set = labelled_set.split(0.25)
    torch.manual_seed(0)
    before = train.evaluate(SegmenterNet(tiny_segmenter), val_set, tiny_segmenter)
    cfg = train.TrainConfig(epochs=8, batch_size=8, lr=1e-2, threads=1)
    net, metrics = train.train(train_set, val_set, tiny_segmenter, cfg, progress=False)
    assert metrics["val_accuracy"] > 0.9
    assert metrics["val_accuracy"] > before["val_accuracy"] + 0.2
    assert metrics["train_frames"] == 24
    # obstacles are the rare class: the class weights must keep them from being ignored
    assert train.evaluate(net, train_set, tiny_segmenter)["val_obstacle_iou"] > 0.3


def test_saved_model_loads_with_the_same_predictions(tmp_path, stereo_geometry, tiny_segmenter):
    net = SegmenterNet(tiny_segmenter).eval()
    path = save_model(tmp_path / "trav.pt", net, stereo_geometry, {"val_accuracy": 0.5})
    loaded, info = load_model(path)
    x = torch.randn(1, 4, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert info["metrics"]["val_accuracy"] == 0.5 and len(info["sha256"]) == 12


def test_bad_model_files_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="rover train traversability"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(DataError, match="retrain"):
        load_model(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(DataError, match="not a rover-traversability"):
        load_model(foreign)


def synthetic_counts(feats: torch.Tensor) -> np.ndarray:
    """Labels that follow feature 0's sign: what a new terrain's stereo labels would teach."""
    sign = feats[0, 0].numpy() > 0
    counts = np.zeros((3, *sign.shape), np.uint8)
    counts[1][sign] = 16
    counts[0][~sign] = 16
    return counts


def test_online_head_learns_a_new_terrain_within_a_few_seconds_of_frames(tiny_segmenter):
    torch.manual_seed(0)
    head = SegmenterNet(tiny_segmenter).head
    online = OnlineHead(head, tiny_segmenter.features, OnlineConfig(seed=1))

    def accuracy() -> float:
        feats = torch.randn(1, tiny_segmenter.features, 24, 32)
        pred = online.predict(feats).argmax(1)[0]
        return float((pred == (feats[0, 0].numpy() > 0)).mean())

    start = accuracy()
    for _ in range(60):  # two seconds at 30 frames per second
        feats = torch.randn(1, tiny_segmenter.features, 24, 32)
        taken = online.update(feats, synthetic_counts(feats))
        assert taken <= online.cfg.new_per_frame
    assert accuracy() > max(0.9, start + 0.2)
    assert online.buffer.count <= online.cfg.replay_size
    online.reset()
    assert online.updates == 0 and abs(accuracy() - start) < 0.1


def test_online_adaptation_can_be_switched_off(tiny_segmenter):
    head = SegmenterNet(tiny_segmenter).head
    online = OnlineHead(head, tiny_segmenter.features, OnlineConfig(enabled=False))
    feats = torch.randn(1, tiny_segmenter.features, 24, 32)
    before = online.predict(feats)
    for _ in range(5):
        assert online.update(feats, synthetic_counts(feats)) == 0
    np.testing.assert_array_equal(online.predict(feats), before)


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


def test_stopping_distance_and_allowed_speed_agree():
    cfg = GuardConfig()
    for speed in (0.0, 0.5, 1.0, 2.0, 3.0):
        free = stopping_distance_m(speed, cfg)
        assert allowed_speed_mps(free, cfg) == pytest.approx(speed, abs=1e-6)
    assert allowed_speed_mps(cfg.margin_m, cfg) == 0.0


def polar_with(free_by_steering: dict[float, float], default: float = 25.0) -> PolarSummary:
    steering = np.linspace(-1, 1, 15).astype(np.float32)
    free = np.full(15, default, np.float32)
    for s, f in free_by_steering.items():
        free[np.argmin(np.abs(steering - s))] = f
    return PolarSummary(steering, free)


def test_guard_slows_then_stops_before_an_obstacle_whatever_the_source():
    guard = TraversabilityGuard(GuardConfig(steer_bias=False))
    far = guard.apply(polar_with({}), 0.0, 0.7, autopilot=False)
    assert far.throttle == 0.7 and not far.limited
    closer = guard.apply(polar_with({0.0: 1.2}), 0.0, 0.7, autopilot=False)
    assert 0.0 < closer.throttle < 0.7 and closer.limited
    blocked = guard.apply(polar_with({0.0: 0.2}), 0.0, 0.7, autopilot=True)
    assert blocked.throttle == 0.0
    reverse = guard.apply(polar_with({0.0: 0.2}), 0.0, -0.4, autopilot=False)
    assert reverse.throttle == -0.4  # backing away is never blocked
    off = TraversabilityGuard(GuardConfig(enabled=False))
    assert off.apply(polar_with({0.0: 0.2}), 0.0, 0.7, autopilot=False).throttle == 0.7
    assert guard.apply(None, 0.0, 0.7, autopilot=False).throttle == 0.7


def test_guard_biases_autopilot_steering_toward_the_freer_nearby_arc():
    guard = TraversabilityGuard()
    polar = polar_with({0.0: 1.0, 0.1428: 1.0, -0.1428: 1.0}, default=1.0)
    polar.free_m[np.argmin(np.abs(polar.steering - 0.4286))] = 20.0
    polar.free_m[np.argmin(np.abs(polar.steering - 0.2857))] = 20.0
    auto = guard.apply(polar, 0.0, 0.6, autopilot=True)
    assert auto.biased and auto.steering > 0.1
    human = guard.apply(polar, 0.0, 0.6, autopilot=False)
    assert not human.biased and human.steering == 0.0


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="wobble"):
        TraversabilityConfig.from_dict({"online": {"wobble": 1}})
    with pytest.raises(ConfigError, match="camera_height_m"):
        TraversabilityConfig.from_dict({"camera_height_m": 40.0})
    with pytest.raises(ConfigError, match="decel_mps2"):
        GuardConfig.from_dict({"decel_mps2": 0.0})
    cfg = TraversabilityConfig.from_dict({"model": "m.pt", "arcs": {"arcs": 9}})
    assert cfg.arcs.arcs == 9 and dataclasses.replace(cfg, model="").model == ""


def test_guarded_controller_brakes_at_once_and_crawls_on_stale_maps():
    from rover import messages as m
    from rover.control import ControlConfig, GuardedController

    ctl = GuardedController(ControlConfig(autopilot_without_teleop=True), GuardConfig())
    t = 1_000_000_000
    for _ in range(30):  # ramp up to cruise with a clear view
        t += 33_000_000
        ctl.on_traversability(polar_with({}), t)
        ctl.on_estimate(m.SteeringEstimate(stamp_ns=t, steering=0.0, throttle=0.66), t)
        assert ctl.output(t).throttle <= 0.66
    assert ctl.output(t).throttle == pytest.approx(0.66)
    ctl.on_traversability(polar_with({}, default=0.2), t)  # something right at the bumper
    assert ctl.output(t).throttle == 0.0  # no slew ramp on the way down
    ctl.on_traversability(polar_with({}), t)
    t += 400_000_000  # the map goes stale: crawl until it returns
    ctl.on_estimate(m.SteeringEstimate(stamp_ns=t, steering=0.0, throttle=0.66), t)
    crawl = ctl.output(t).throttle
    assert 0.0 < crawl <= GuardConfig().stale_crawl_mps / GuardConfig().max_speed_mps + 1e-6


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


def test_the_bundled_model_is_the_default_and_loads_when_shipped():
    from pathlib import Path

    from perception.traversability.pipeline import resolve_model

    assert TraversabilityConfig().model == "bundled"
    assert resolve_model("") == "" and resolve_model("my.pt") == "my.pt"
    path = resolve_model("bundled")
    if path:  # a checkout may not carry the weights: then the node runs stereo only
        assert Path(path).is_file()
        net, info = load_model(path)
        assert info["replay"] is not None and info["metrics"]["val_accuracy"] > 0.9
