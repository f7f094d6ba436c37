"""Loading steering checkpoints safely, and running them on frames."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from perception.infer import (
    PairPreparer,
    SteeringPredictor,
    cpu_has_bf16,
    load_checkpoint,
    pick_device,
    pick_precision,
    save_checkpoint,
)
from perception.steering.model import SteeringModelConfig, build_model, prepare
from rover.errors import ConfigError, DataError


@pytest.fixture
def checkpoint(tmp_path, tiny_config):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "m.pt", build_model(tiny_config()), 0.55, {"note": "x"})


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_checkpoint_round_trips_config_weights_and_provenance(checkpoint, tiny_config):
    ckpt = load_checkpoint(checkpoint)
    assert ckpt.config == tiny_config()
    assert ckpt.cruise_throttle == pytest.approx(0.55)
    assert ckpt.info["software"]["torch"] == str(torch.__version__)
    assert ckpt.info["note"] == "x"
    model = ckpt.build()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 ckpt.state_dict.values(), strict=True))  # fmt: skip


def test_missing_file_says_so(tmp_path):
    with pytest.raises(DataError, match="does not exist") as exc:
        load_checkpoint(tmp_path / "nope.pt")
    _one_line(exc)


def test_garbage_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(DataError, match="not a readable torch checkpoint") as exc:
        load_checkpoint(path)
    _one_line(exc)


def test_file_with_code_is_refused_not_run(tmp_path, capfd):
    path = tmp_path / "evil.pt"
    torch.save({"format": "rover-steering-cnn", "x": _Payload()}, path)
    with pytest.raises(DataError, match="refusing to load") as exc:
        load_checkpoint(path)
    _one_line(exc)
    assert "pwned" not in capfd.readouterr().out


def test_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(DataError, match="not a rover steering model") as exc:
        load_checkpoint(path)
    _one_line(exc)


def test_weights_of_another_shape_are_refused(tmp_path, checkpoint):
    raw = torch.load(checkpoint, weights_only=True)
    raw["model_config"]["arch"] = "pilotnet"
    path = tmp_path / "mixed.pt"
    torch.save(raw, path)
    with pytest.raises(DataError, match="do not fit") as exc:
        load_checkpoint(path).build()
    _one_line(exc)


def test_predictor_gives_clamped_floats_and_cruise_throttle_without_a_throttle_head(
    tmp_path, bar_frames, tiny_config
):
    path = save_checkpoint(tmp_path / "s.pt", build_model(tiny_config(throttle=False)), 0.6, {})
    predictor = SteeringPredictor(path, device="cpu")
    left, right = bar_frames(0.3, np.random.default_rng(0))
    pred = predictor.predict(left, right)
    assert isinstance(pred.steering, float) and -1.0 <= pred.steering <= 1.0
    assert pred.throttle == pytest.approx(0.6)


def test_predictor_refuses_frames_of_another_camera(checkpoint):
    predictor = SteeringPredictor(checkpoint, device="cpu")
    frame = np.zeros((240, 320, 3), np.uint8)
    with pytest.raises(DataError, match="expects 128x128 RGB frames, the camera gives 320x240"):
        predictor.predict(frame, frame)


def test_smoothing_eases_steering_by_the_frame_stamps(checkpoint, bar_frames):
    rng = np.random.default_rng(0)
    frames = [bar_frames(x, rng) for x in (0.1, 0.9)]
    raw = SteeringPredictor(checkpoint, device="cpu")
    targets = [raw.predict(*f).steering for f in frames]
    smooth = SteeringPredictor(checkpoint, device="cpu", smoothing_s=0.1)
    first = smooth.predict(*frames[0], stamp_ns=1_000_000_000).steering
    second = smooth.predict(*frames[1], stamp_ns=1_033_333_333).steering
    assert first == pytest.approx(targets[0])
    alpha = 1 - np.exp(-1 / 3)
    assert second == pytest.approx(targets[0] + alpha * (targets[1] - targets[0]), abs=1e-5)


@pytest.mark.parametrize(
    ("size", "crop", "downsample"),
    [((240, 320), (72, 40), 2), ((240, 324), (0, 0), 3), ((480, 640), (0, 0), 4)],
)
def test_inference_prepares_frames_to_the_bit_as_training_did(size, crop, downsample):
    cfg = SteeringModelConfig(
        image_height_px=size[0],
        image_width_px=size[1],
        crop_top_px=crop[0],
        crop_bottom_px=crop[1],
        downsample=downsample,
    )
    preparer = PairPreparer(cfg)
    rng = np.random.default_rng(downsample)
    frames = [rng.integers(0, 256, (2, *size, 3), dtype=np.uint8) for _ in range(3)]
    frames += [np.full((2, *size, 3), v, np.uint8) for v in (0, 1, 2, 254, 255)]
    for left, right in frames:
        want = prepare(torch.from_numpy(left)[None], torch.from_numpy(right)[None], cfg)
        assert torch.equal(preparer(left, right), want)
    if downsample == 2:  # OpenCV's exact round-half-up path: what the steering node runs
        assert preparer.fast


def test_predictor_answers_exactly_like_the_model_on_the_raw_frames(tmp_path):
    torch.manual_seed(1)
    cfg = SteeringModelConfig(dropout=0.0)
    path = save_checkpoint(tmp_path / "full.pt", build_model(cfg), 0.5, {})
    predictor = SteeringPredictor(path, device="cpu")
    rng = np.random.default_rng(1)
    for _ in range(3):
        left, right = rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
        with torch.inference_mode():
            want = predictor.model(torch.from_numpy(left)[None], torch.from_numpy(right)[None])
        assert np.array_equal(predictor.raw(left, right), want[0].numpy())


def test_device_pick_falls_back_to_cpu_here():
    expected = "cuda" if torch.cuda.is_available() else None
    device = pick_device("auto")
    assert device.type == (expected or device.type)
    assert pick_device("cpu").type == "cpu"


def test_bf16_runs_the_layers_in_bf16_and_answers_like_fp32(checkpoint, bar_frames):
    full = SteeringPredictor(checkpoint, device="cpu", precision="fp32")
    reduced = SteeringPredictor(checkpoint, device="cpu", precision="bf16")
    assert reduced.precision == "bf16" and full.precision == "fp32"
    assert reduced.model.features[0].weight.dtype == torch.bfloat16
    assert reduced.model.colour.dtype == torch.float32  # preprocessing stays exact
    rng = np.random.default_rng(3)
    for x in np.linspace(0.1, 0.9, 5):
        frame = bar_frames(x, rng)
        a, b = full.predict(*frame), reduced.predict(*frame)
        assert type(b.steering) is float and type(b.throttle) is float
        assert b.steering == pytest.approx(a.steering, abs=0.02)
        assert b.throttle == pytest.approx(a.throttle, abs=0.02)


def test_precision_auto_is_fp32_on_a_cpu_bf16_is_opt_in_and_fp16_is_refused_there():
    cpu = torch.device("cpu")
    assert pick_precision("auto", cpu) == torch.float32
    assert pick_precision("bf16", cpu) == torch.bfloat16
    assert isinstance(cpu_has_bf16(), bool)
    with pytest.raises(ConfigError, match="fp16 runs on CUDA or MPS only") as exc:
        pick_precision("fp16", cpu)
    _one_line(exc)
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        pick_precision("fp8", cpu)


def test_pickle_module_is_what_refusal_relies_on():
    # torch raises pickle.UnpicklingError for objects it will not load: keep the contract
    assert issubclass(pickle.UnpicklingError, Exception)


def test_binned_predictor_keeps_its_way_around_only_while_frames_are_fresh(
    tmp_path, bar_frames, tiny_config
):
    import dataclasses

    cfg = dataclasses.replace(tiny_config(), steering_bins=21)
    path = save_checkpoint(tmp_path / "binned.pt", build_model(cfg), 0.6, {})
    predictor = SteeringPredictor(path, device="cpu")
    last = predictor.model.head[-1]
    torch.nn.init.zeros_(last.weight)  # the answer no longer depends on the image

    def favour(left: float, right: float) -> None:
        with torch.no_grad():
            last.bias.fill_(-10.0)
            last.bias[3], last.bias[17], last.bias[21] = left, right, 0.5

    frame = bar_frames(0.5, np.random.default_rng(0))
    favour(4.0, 2.0)
    assert predictor.predict(*frame, stamp_ns=10**9).steering == pytest.approx(-0.7, abs=0.01)
    favour(2.0, 2.3)  # now right is slightly more likely
    assert predictor.predict(*frame, stamp_ns=10**9 + 33_333_333).steering < -0.6
    # after a pause the old choice no longer holds
    assert predictor.predict(*frame, stamp_ns=3 * 10**9).steering > 0.6


@pytest.fixture
def one_torch_thread():
    """As the steering node runs (and the tracer's first runs are slow on a busy pool)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("bins", "disparities"), [(0, 0), (21, 2)])
def test_frozen_predictor_gives_the_eager_answers_to_the_bit(
    tmp_path, bins, disparities, one_torch_thread, tiny_config, bar_frames
):
    import dataclasses

    cfg = dataclasses.replace(tiny_config(bins=bins), disparities=disparities)
    with torch.random.fork_rng():  # the suite's later unseeded models stay what they were
        torch.manual_seed(bins + disparities)
        path = save_checkpoint(tmp_path / "m.pt", build_model(cfg), 0.5, {})
    eager = SteeringPredictor(path, device="cpu")
    frozen = SteeringPredictor(path, device="cpu")
    assert frozen.freeze() and frozen.frozen and not eager.frozen
    rng = np.random.default_rng(bins)
    for i, x in enumerate(np.linspace(0.1, 0.9, 4)):  # 33 ms apart: binned ones keep their way
        frame = bar_frames(x, rng)
        stamp = 1_000_000_000 + i * 33_000_000
        assert frozen.predict(*frame, stamp) == eager.predict(*frame, stamp)
        assert np.array_equal(frozen.raw(*frame, previous=-0.4), eager.raw(*frame, previous=-0.4))
