"""The steering CNN: preprocessing inside the model, sizes, and bad configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.steering.model import (
    SteeringModelConfig,
    build_model,
    count_macs,
    count_parameters,
    prepare,
    soft_bin_targets,
    summary_rows,
)
from rover.errors import ConfigError


@pytest.mark.parametrize(
    "cfg",
    [
        SteeringModelConfig(),
        SteeringModelConfig(image_width_px=324, crop_top_px=0, crop_bottom_px=0, downsample=3),
    ],
)
def test_prepare_crops_pools_and_rounds_like_the_obvious_numpy(cfg):
    rng = np.random.default_rng(0)
    h, w, k = cfg.image_height_px, cfg.image_width_px, cfg.downsample
    left = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    got = prepare(torch.from_numpy(left), torch.from_numpy(right), cfg).numpy()
    both = np.concatenate([left, right], axis=3)[:, cfg.crop_top_px : h - cfg.crop_bottom_px]
    rows = both.shape[1] // k
    pooled = both.reshape(2, rows, k, w // k, k, 6).astype(np.int64).sum(axis=(2, 4))
    want = ((pooled + k * k // 2) // (k * k)).astype(np.uint8).transpose(0, 3, 1, 2)
    assert got.shape == (2, 6, rows, w // k)
    np.testing.assert_array_equal(got, want)


def test_model_takes_raw_camera_frames_and_gives_one_value_per_output():
    for throttle, outputs in ((True, 2), (False, 1)):
        model = build_model(SteeringModelConfig(arch="dave", predict_throttle=throttle)).eval()
        frames = torch.zeros(3, 240, 320, 3, dtype=torch.uint8)
        with torch.no_grad():
            out = model(frames, frames)
        assert out.shape == (3, outputs)
        assert torch.isfinite(out).all()


def test_per_image_normalisation_ignores_a_global_exposure_change():
    # a camera with a different exposure gives the same answer: no unit mismatch possible
    model = build_model(SteeringModelConfig(arch="dave")).eval()
    rng = np.random.default_rng(1)
    left = rng.integers(40, 120, (1, 240, 320, 3), dtype=np.uint8)
    right = rng.integers(40, 120, (1, 240, 320, 3), dtype=np.uint8)
    cfg = model.cfg
    brighter = [torch.from_numpy(2 * a) for a in (left, right)]
    with torch.no_grad():
        a = model.forward_raw(prepare(torch.from_numpy(left), torch.from_numpy(right), cfg))
        b = model.forward_raw(prepare(*brighter, cfg))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-3)


def test_sizes_are_dave_like_and_pilotnet_like():
    rows = {r["arch"]: r for r in summary_rows()}
    assert 60_000 < rows["dave"]["params"] < 120_000
    assert 180_000 < rows["pilotnet"]["params"] < 300_000
    assert rows["dave"]["macs"] < rows["pilotnet"]["macs"] < 50e6
    model = build_model(SteeringModelConfig(arch="dave"))
    assert count_parameters(model) == rows["dave"]["params"]
    assert count_macs(model) == rows["dave"]["macs"]


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"arch": "resnet"}, "arch"),
        ({"normalise": "zscore"}, "normalise"),
        ({"crop_top_px": 230}, "crop"),
        ({"downsample": 3}, "divisible"),
        ({"wheels": 4}, "wheels"),
        ({"image_height_px": 100, "crop_top_px": 0, "crop_bottom_px": 0}, "too small"),
    ],
)
def test_bad_model_config_names_the_key(raw, needle):
    with pytest.raises(ConfigError, match=needle):
        SteeringModelConfig.from_dict(raw)


def test_binned_steering_reads_the_mode_not_the_mean_of_two_ways_around():
    # half the demonstrations pass left, half right: the mean would drive straight into it
    cfg = SteeringModelConfig(arch="dave", steering_bins=21)
    model = build_model(cfg).eval()
    logits = torch.full((1, 21), -10.0)
    logits[0, 3] = logits[0, 17] = 2.0  # -0.7 and +0.7, equally likely
    logits[0, 17] += 0.1
    out = model.decode(torch.cat([logits, torch.tensor([[0.5]])], dim=1))
    assert out[0, 0].item() == pytest.approx(0.7, abs=0.01)
    assert out[0, 1].item() == pytest.approx(0.5)


def test_binned_steering_keeps_to_the_way_it_chose():
    # two ways around, right slightly favoured: having chosen left, one frame does not flip it
    model = build_model(SteeringModelConfig(arch="dave", steering_bins=21)).eval()
    logits = torch.full((1, 22), -10.0)
    logits[0, 3], logits[0, 17], logits[0, 21] = 2.0, 2.3, 0.5
    assert model.decode(logits)[0, 0].item() == pytest.approx(0.7, abs=0.01)
    kept = model.decode(logits, previous=torch.tensor([-0.6]))[0, 0].item()
    assert kept == pytest.approx(-0.7, abs=0.01)
    # a clear preference still wins over the previous choice
    logits[0, 17] = 6.0
    assert model.decode(logits, previous=torch.tensor([-0.6]))[0, 0].item() > 0.6


def test_soft_bin_targets_peak_at_the_label():
    targets = soft_bin_targets(torch.tensor([-1.0, 0.0, 0.33]), 21)
    assert torch.allclose(targets.sum(1), torch.ones(3))
    assert targets.argmax(1).tolist() == [0, 10, 13]
