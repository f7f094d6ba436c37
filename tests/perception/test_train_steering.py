"""Training for real on a tiny dataset: it learns, checkpoints, resumes, and runs under DDP."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest

from perception.dataset import AugmentConfig, DataConfig, collect, save_frames, split
from perception.infer import SteeringPredictor, load_checkpoint
from perception.steering.trainer import TrainConfig, Trainer
from perception.train_steering import main as train_main
from perception.train_steering import recording_samples
from rover.errors import ConfigError

# flips and shifts are label-correct for real driving; the bar signal has no yaw geometry
LIGHT_AUGMENT = AugmentConfig(shift_px=0, shadow=0.0)


@pytest.fixture(scope="module")
def tiny_model_args(tiny_config) -> list[str]:
    """The CLI's `--model-set` flags for the tiny model's frame size and crop."""
    return [
        f"--model-set={k}={v}"
        for k, v in tiny_config().to_dict().items()
        if k in ("image_height_px", "image_width_px", "crop_top_px", "crop_bottom_px")
    ]


@pytest.fixture(scope="module")
def frames(bar_session, tiny_config):
    sessions = [bar_session(120, f"s{i}", seed=i) for i in range(5)]
    return collect([s for session in sessions for s in session], tiny_config())


@pytest.fixture(scope="module")
def make_trainer(tiny_config):
    """`make_trainer(frames, out, epochs=4, model_cfg=None, **train)`: a quiet Trainer on the
    tiny model, a fifth of the frames held out."""

    def _trainer(frames, out, epochs=4, model_cfg=None, **train):
        cfg = TrainConfig(
            epochs=epochs, batch_size=32, lr=3e-3, workers=0, threads=1, patience=5, **train
        )
        data_cfg = DataConfig(val_fraction=0.2)
        return Trainer(
            frames, split(frames, data_cfg), model_cfg or tiny_config(), data_cfg, LIGHT_AUGMENT,
            cfg, out,
            progress=False, log=lambda _: None,
        )  # fmt: skip

    return _trainer


@pytest.mark.slow
def test_training_learns_to_steer_away_from_the_obstacle(
    frames, tmp_path, bar_frames, bar_steering, make_trainer
):
    trainer = make_trainer(frames, tmp_path / "m.pt", epochs=6)
    before = trainer.validate()
    result = trainer.fit()
    history = result["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    constant_mae = np.abs(frames.steering - frames.steering.mean()).mean()
    assert result["best_val_mae"] < 0.6 * constant_mae
    assert result["best_val_mae"] < before["val_mae"]
    # the saved model is not a constant: it turns the way the bar says
    predictor = SteeringPredictor(tmp_path / "m.pt", device="cpu")
    rng = np.random.default_rng(9)
    for x in (0.15, 0.85):
        assert np.sign(predictor.predict(*bar_frames(x, rng)).steering) == np.sign(bar_steering(x))


@pytest.mark.parametrize("bins", [0, 21])
def test_a_few_steps_already_reduce_the_loss(frames, tmp_path, bins, tiny_config, make_trainer):
    model_cfg = dataclasses.replace(tiny_config(), steering_bins=bins)
    trainer = make_trainer(frames, tmp_path / "m.pt", model_cfg=model_cfg)
    images, targets = next(iter(trainer.train_loader))
    first = trainer.step(images, targets)
    for _ in range(40):
        last = trainer.step(images, targets)
    assert last < 0.7 * first


def test_checkpoint_embeds_config_preprocessing_data_and_version(frames, tmp_path, make_trainer):
    make_trainer(frames, tmp_path / "m.pt", epochs=1).fit()
    info = load_checkpoint(tmp_path / "m.pt").info
    assert info["format"] == "rover-steering-cnn"
    assert "YUV" in info["preprocessing"]["inside_model"]
    assert info["data"]["sessions"] == [f"s{i}" for i in range(5)]
    assert info["train"]["batch_size"] == 32
    assert info["software"]["rover"]
    assert 0 <= info["metrics"]["val_sign_pct"] <= 100


def test_training_resumes_where_it_stopped(frames, tmp_path, make_trainer):
    out = tmp_path / "m.pt"
    make_trainer(frames, out, epochs=1).fit()
    assert out.with_name("m.pt.resume.pt").is_file()
    resumed = make_trainer(frames, out, epochs=2)
    result = resumed.fit(resume=True)
    assert [h["epoch"] for h in result["history"]] == [1, 2]


def test_cli_without_data_or_with_missing_recordings_is_one_line(tmp_path, capsys):
    assert train_main(["--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no data" in err
    assert train_main([str(tmp_path / "nope"), "--out", str(tmp_path / "m.pt")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err


def test_cli_help_lists_architecture_sizes(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = capsys.readouterr().out
    assert "pilotnet" in out and "MACs" in out


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains_one_model(frames, tmp_path, tiny_model_args):
    cache = save_frames(frames, tmp_path / "cache.npz")
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += ["-m", "perception.train_steering", "--cache", str(cache), "--out", str(out)]
    cmd += ["--arch", "dave", "--epochs", "2", "--batch-size", "16", "--workers", "0"]
    cmd += ["--threads", "1", "--quiet", *tiny_model_args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=_root())
    assert result.returncode == 0, result.stderr[-2000:]
    info = load_checkpoint(out).info
    assert info["train"]["world_size"] == 2
    assert "world size 2" in result.stdout and "epoch 2/2" in result.stdout
    assert result.stdout.count("epoch 1/2") == 1  # rank 0 alone reports


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2])


def _bar_recordings(tmp_path, bar_session, count: int = 2, frames: int = 60) -> list[str]:
    """`count` real recorded sessions (the Recorder, MCAP) of bar frames."""
    from rover import messages as m
    from rover import topics
    from rover.recording import recorder

    sessions = []
    for k in range(count):
        path = tmp_path / f"2025-01-01_10-00-0{k}"
        rec = recorder.Recorder(path, recorder.RecorderConfig(fsync=False), {}, "test")
        for s in bar_session(frames, path.name, seed=k):
            stamp = 1_000_000_000 + s.stamp_ns
            rec.submit(topics.CAMERA_STEREO, m.StereoImage(
                seq=s.index, stamp_ns=stamp, left=s.left, right=s.right,
                left_stamp_ns=stamp, right_stamp_ns=stamp))  # fmt: skip
            rec.submit(topics.CONTROL_COMMAND, m.ControlCommand(
                seq=s.index, stamp_ns=stamp, frame_seq=s.index, steering=s.steering,
                throttle=s.throttle))  # fmt: skip
        rec.close()
        sessions.append(str(path))
    return sessions


def test_cli_trains_on_real_recordings(tmp_path, bar_session, tiny_model_args):
    sessions = _bar_recordings(tmp_path, bar_session)
    out = tmp_path / "m.pt"
    argv = [*sessions, "--out", str(out), "--arch", "dave", "--epochs", "1", "--workers", "0"]
    assert train_main([*argv, "--threads", "1", "--quiet", *tiny_model_args]) == 0
    data = load_checkpoint(out).info["data"]
    assert data["sessions"] == [p.rsplit("/", 1)[-1] for p in sessions]
    assert data["frames"] == 120
    # labels are the recorded commands (JPEG leaves the steering untouched)
    assert data["steering_std"] == pytest.approx(
        float(np.std([s.steering for k in range(2) for s in bar_session(60, "x", seed=k)])),
        rel=1e-3,
    )


def test_training_learns_the_drivers_own_commands_and_reports_its_data_budget(
    tmp_path, capsys, bar_session, tiny_config, tiny_model_args
):
    """Perturbed frames are labelled with the driver's command (what was sent less the
    perturbation); frames the CNN drove itself and stale ones are skipped; take-overs counted."""
    from rover import messages as m
    from rover import topics
    from rover.recording import recorder

    path = tmp_path / "2025-01-01_10-00-00"
    rec = recorder.Recorder(path, recorder.RecorderConfig(fsync=False), {}, "test")
    samples = list(bar_session(120, path.name, seed=3))
    for s in samples:
        stamp = 1_000_000_000 + s.stamp_ns
        offset = 0.3 if 20 <= s.index < 50 else 0.0  # a perturbed span
        source = "cnn:m" if 60 <= s.index < 80 else "none:stale" if s.index >= 110 else ""
        source = source or ("teleop" if 80 <= s.index < 110 else "expert")
        rec.submit(topics.CAMERA_STEREO, m.StereoImage(
            seq=s.index, stamp_ns=stamp, left=s.left, right=s.right,
            left_stamp_ns=stamp, right_stamp_ns=stamp))  # fmt: skip
        rec.submit(topics.CONTROL_COMMAND, m.ControlCommand(
            seq=s.index, stamp_ns=stamp, frame_seq=s.index, steering=s.steering + offset,
            throttle=s.throttle, perturbation=offset, source=source))  # fmt: skip
    rec.close()
    frames = collect(recording_samples([str(path)])[0], tiny_config())
    kept = [s for s in samples if not (60 <= s.index < 80 or s.index >= 110)]
    np.testing.assert_allclose(frames.steering, [s.steering for s in kept], atol=1e-6)
    out = tmp_path / "m.pt"
    argv = [str(path), "--out", str(out), "--arch", "dave", "--epochs", "1", "--workers", "0"]
    argv += ["--batch-size", "8", "--threads", "1", "--quiet", *tiny_model_args]
    assert train_main(argv) == 0
    budget = load_checkpoint(out).info["data"]["budget"]
    minute = 1 / 30 / 60
    assert budget["demonstration_min"] == pytest.approx(60 * minute, abs=0.006)
    assert budget["perturbed_min"] == pytest.approx(30 * minute, abs=0.006)
    assert budget["takeover_min"] == pytest.approx(30 * minute, abs=0.006)
    assert budget["skipped_learner_frames"] == 20 and budget["skipped_stale_frames"] == 10
    printed = capsys.readouterr().out
    units = r"0\.1 min of data: \d\.\d min of demonstrations \(\d\.\d min of them perturbed\), "
    assert re.search(units + r"\d\.\d min of take-overs", printed), printed  # each with its unit
    assert "frames with |steering| >= 0.05" in printed


def test_help_shows_every_default_and_limits_cut_the_recordings(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = capsys.readouterr().out
    for option, default in (
        ("--epochs", "2"),
        ("--batch-size", "64"),
        ("--lr", "0.002"),
        ("--seed", "0"),
        ("--val-fraction", "0.15"),
        ("--arch", "pilotnet"),
    ):
        entry = text.split(f"\n  {option}", 1)[1].split("\n  --", 1)[0]
        assert f"(default: {default})" in " ".join(entry.split()), option
    assert "--max-frames" in text and "--max-minutes" in text


@pytest.mark.slow
def test_training_twice_on_the_same_recordings_gives_the_same_weights_bit_for_bit(
    tmp_path, bar_session, tiny_model_args
):
    """`make model` reproduces its file: the recipe's defaults (one loader worker with its own
    augmentation draws, a fixed data order) and the same seed give the same bytes."""
    import torch

    sessions = _bar_recordings(tmp_path, bar_session, count=3)
    models = []
    for run in ("a", "b"):
        out = tmp_path / run / "m.pt"
        argv = [*sessions, "--out", str(out), "--arch", "dave", "--epochs", "2"]
        argv += ["--batch-size", "16", "--quiet", "--prepare-workers", "2", *tiny_model_args]
        assert train_main(argv) == 0
        models.append(load_checkpoint(out).state_dict)
    a, b = models
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_takeover_frames_are_drawn_takeover_weight_times_as_often(frames, tmp_path, make_trainer):
    from perception.steering.budget import DEMONSTRATION, TAKEOVER

    kind = np.where(np.arange(len(frames)) % 3 == 0, TAKEOVER, DEMONSTRATION).astype(np.int8)
    marked = dataclasses.replace(frames, kind=kind)
    plain = make_trainer(marked, tmp_path / "a.pt", epochs=1).sampler.weights.numpy()
    weighted = make_trainer(marked, tmp_path / "b.pt", epochs=1, takeover_weight=3.0)
    w = weighted.sampler.weights.numpy()
    taken = marked.kind[weighted.train_idx] == TAKEOVER
    assert taken.any() and (~taken).any()
    np.testing.assert_allclose(w[taken], 3.0 * plain[taken])
    np.testing.assert_allclose(w[~taken], plain[~taken])
    with pytest.raises(ConfigError, match="--takeover-weight"):
        TrainConfig(takeover_weight=0.0)
