"""Steering datasets: splits that never leak, rebalancing, label-honest augmentation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from perception.dataset import (
    AugmentConfig,
    BalancedSampler,
    DataConfig,
    DataWarning,
    FrameSet,
    SteeringDataset,
    augment_batch,
    balance_weights,
    check_degenerate,
    collect,
    load_frames,
    relabel,
    save_frames,
    split,
)
from perception.steering.demos import DemoSample
from rover.errors import DataError

NO_AUGMENT = AugmentConfig(
    flip=0.0,
    shift_px=0,
    brightness=0.0,
    contrast=0.0,
    colour=0.0,
    channel_shuffle=0.0,
    grayscale=0.0,
    invert=0.0,
    shadow=0.0,
)


def frameset(n_per_session: list[int], steering=None) -> FrameSet:
    """Labels only (tiny images): enough for splits and weights."""
    n = sum(n_per_session)
    session = np.repeat(np.arange(len(n_per_session)), n_per_session).astype(np.int32)
    steer = np.zeros(n, np.float32) if steering is None else np.asarray(steering, np.float32)
    return FrameSet(
        images=np.zeros((n, 2, 2, 6), np.uint8),
        steering=steer,
        throttle=np.full(n, 0.5, np.float32),
        session=session,
        sessions=[f"s{i}" for i in range(len(n_per_session))],
        image_hw=(128, 128),
    )


def test_collect_prepares_frames_with_the_models_own_preprocessing(bar_session, tiny_config):
    cfg = tiny_config()
    samples = bar_session(40, "a") + bar_session(30, "b", seed=1)
    frames = collect(samples, cfg)
    assert frames.images.shape == (70, 64, 64, 6)
    assert frames.sessions == ["a", "b"]
    assert frames.steering[0] == pytest.approx(samples[0].steering)
    # the left eye's bar is where the frame had it, at half the resolution
    bright = frames.images[0, :, :, 0].mean(axis=0) > 150
    cols = np.flatnonzero(samples[0].left[0, :, 0] > 150) // 2
    assert set(np.flatnonzero(bright)) == set(cols)


def test_frames_from_another_camera_are_skipped_with_a_warning(bar_session, tiny_config):
    cfg = tiny_config()
    good = bar_session(20, "a")
    odd = [DemoSample(np.zeros((240, 320, 3), np.uint8), s.right, 0.0, 0.5, 0, 0, "b", 0)
           for s in good[:5]]  # fmt: skip
    with pytest.warns(DataWarning, match="different camera setup"):
        frames = collect(good + odd, cfg)
    assert len(frames) == 20


def test_latency_compensation_labels_each_frame_with_a_later_command():
    frames = frameset([10, 10], steering=np.arange(20) / 20)
    shifted = relabel(frames, DataConfig(latency_frames=2))
    assert len(shifted) == 16  # the last 2 frames of each session have no later command
    np.testing.assert_allclose(shifted.steering[:8], np.arange(2, 10) / 20, rtol=1e-6)
    np.testing.assert_allclose(shifted.steering[8:], np.arange(12, 20) / 20, rtol=1e-6)


def test_reversing_frames_are_dropped_and_counted():
    frames = frameset([10])
    frames.throttle[3:5] = -0.45
    kept = relabel(frames, DataConfig())
    assert len(kept) == 8 and kept.dropped_reverse == 2


def test_block_split_keeps_validation_away_from_training_frames():
    cfg = DataConfig(val_fraction=0.15, block_frames=300, guard_frames=30)
    frames = frameset([3000, 2000])
    train, val = split(frames, cfg)
    assert set(train).isdisjoint(val)
    assert 0.08 < len(val) / len(frames) < 0.25
    for sid in range(2):
        t = train[frames.session[train] == sid]
        v = val[frames.session[val] == sid]
        gaps = np.abs(t[:, None] - v[None, :]).min()
        assert gaps > cfg.guard_frames  # no validation frame neighbours a training frame


def test_enough_sessions_split_by_whole_sessions():
    frames = frameset([500] * 10)
    train, val = split(frames, DataConfig(val_fraction=0.2))
    val_sessions = set(frames.session[val])
    assert val_sessions and val_sessions.isdisjoint(frames.session[train])
    assert len(val) == 1000


def test_rebalancing_draws_turns_about_as_often_as_straight_driving():
    rng = np.random.default_rng(0)
    steer = np.concatenate([rng.normal(0, 0.02, 9000), rng.uniform(0.3, 0.9, 1000)])
    weights = balance_weights(steer, DataConfig(balance_max_weight=20))
    drawn = steer[rng.choice(len(steer), 20_000, p=weights / weights.sum())]
    assert 0.35 < np.mean(np.abs(drawn) > 0.25) < 0.8  # was 10% before rebalancing


def test_balanced_sampler_shards_are_disjoint_draws_of_one_sequence():
    weights = np.ones(100)
    ranks = [BalancedSampler(weights, 64, rank=r, world_size=2, seed=3) for r in range(2)]
    single = list(BalancedSampler(weights, 64, seed=3))
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 32
    assert sorted(shards[0] + shards[1]) == sorted(single)
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != shards[0]


def test_flip_swaps_eyes_mirrors_and_negates_steering():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1, 8, 16, 6), dtype=np.uint8)
    original = images.copy()
    cfg = AugmentConfig(**{**NO_AUGMENT.__dict__, "flip": 1.0})
    steering = augment_batch(images, np.array([0.4], np.float32), cfg, rng)
    assert steering[0] == pytest.approx(-0.4)
    np.testing.assert_array_equal(images[0, :, :, :3], original[0, :, ::-1, 3:])
    np.testing.assert_array_equal(images[0, :, :, 3:], original[0, :, ::-1, :3])


def test_viewpoint_shift_corrects_steering_toward_the_original_heading():
    rng = np.random.default_rng(0)
    cfg = AugmentConfig(**{**NO_AUGMENT.__dict__, "shift_px": 6})
    images = np.zeros((200, 4, 32, 6), np.uint8)
    images[:, :, 16] = 255  # a marker column
    steering = augment_batch(images, np.zeros(200, np.float32), cfg, rng)
    moved = images[:, 0, :, 0].argmax(axis=1) - 16  # + : the scene moved right
    assert np.abs(moved).max() <= 6 and np.abs(moved).max() > 0
    # scene moved right = camera yawed left = steer right (negative), proportionally
    np.testing.assert_allclose(steering, -moved * cfg.shift_steering_per_px, atol=1e-6)


def test_appearance_augmentation_changes_pixels_not_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, (16, 8, 16, 6), dtype=np.uint8)
    before = images.copy()
    cfg = AugmentConfig(flip=0.0, shift_px=0, shadow=1.0)
    steering = augment_batch(images, np.full(16, 0.3, np.float32), cfg, rng)
    np.testing.assert_allclose(steering, 0.3)
    assert np.mean(images != before) > 0.3


def test_dataset_yields_channels_last_uint8_batches_with_targets(bar_session, tiny_config):
    frames = collect(bar_session(12, "a"), tiny_config())
    ds = SteeringDataset(frames, np.arange(12), augment=AugmentConfig(), targets=2)
    x, y = ds.__getitems__([0, 5, 7])
    assert x.shape == (3, 6, 64, 64) and x.dtype.is_floating_point is False
    assert x.is_contiguous(memory_format=__import__("torch").channels_last)
    assert y.shape == (3, 2)


def test_shared_images_reach_a_loader_worker_as_a_handle_and_give_the_same_batches(
    bar_session, tiny_config
):
    import pickle
    from multiprocessing.reduction import ForkingPickler

    import torch

    from perception.steering.trainer import make_loader

    frames = collect(bar_session(12, "a"), tiny_config())
    plain = SteeringDataset(frames, np.arange(12), targets=2)
    shared = SteeringDataset(frames, np.arange(12), targets=2)
    assert shared.share_images()
    # what goes to a worker: the frames without their images, and a shared-memory handle
    sent = ForkingPickler.dumps(shared)
    assert len(sent) < frames.images.nbytes / 4 < len(pickle.dumps(plain))
    order = torch.utils.data.SequentialSampler(plain)
    batches = [list(make_loader(ds, 4, order, 1, False)) for ds in (plain, shared)]
    for (xa, ya), (xb, yb) in zip(*batches, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_degenerate_data_warn_in_plain_words():
    frames = frameset([500])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = check_degenerate(frames)
    assert any("only 500 frames" in p for p in problems)
    assert any("nearly constant" in p for p in problems)
    assert {w.category for w in caught} == {DataWarning}


def test_frame_cache_round_trips_and_refuses_another_model(tmp_path, bar_session, tiny_config):
    frames = collect(bar_session(10, "a"), tiny_config())
    path = save_frames(frames, tmp_path / "cache.npz")
    back = load_frames(path, tiny_config())
    np.testing.assert_array_equal(back.images, frames.images)
    assert back.sessions == ["a"]
    with pytest.raises(DataError, match="delete the cache"):
        load_frames(path, tiny_config().__class__())  # the 320x240 default


def test_a_view_synthesised_from_stereo_is_closer_to_the_true_one_than_a_plain_shift():
    """A step aside, rendered by the simulator, against the view re-rendered from the pair's
    disparity and against the best flat shift of the whole image (PilotNet's)."""
    import torch

    from perception.steering.model import SteeringModelConfig, prepare
    from perception.steering.viewpoint import ViewpointConfig, corrected_steering, shift_view
    from sim.simulation import Simulation

    sim = Simulation("forest", 2)
    cfg = SteeringModelConfig()

    def view(dy: float) -> np.ndarray:
        s = sim.state
        left, right, _ = sim.renderer.render_vehicle(s.x_m + 3.0, s.y_m + dy, 0.0)
        pair = prepare(torch.from_numpy(left[None]), torch.from_numpy(right[None]), cfg)
        return pair.permute(0, 2, 3, 1).numpy()[0]

    here, aside = view(0.0), view(0.2)  # 0.2 m to the left
    synthetic = shift_view(here, 0.2, ViewpointConfig())
    crop = slice(8, -8)  # the edges a shift has to invent
    err = lambda a: np.abs(a.astype(np.int16) - aside)[:, crop].mean()  # noqa: E731
    flat = min(err(np.roll(here, k, axis=1)) for k in range(-8, 9))
    assert err(synthetic) < 0.8 * flat < 0.8 * err(here), (err(synthetic), flat, err(here))
    assert corrected_steering(0.1, 0.2, ViewpointConfig()) < 0.1  # left of the line: go right
