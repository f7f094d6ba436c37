"""`rover train steering REC... --out MODEL`: train the stereo steering CNN on demonstrations.

Reads recordings (session folders or .mcap files), prepares every frame once with the model's
own preprocessing, holds out whole sessions (or contiguous blocks) for validation, rebalances
straight driving, augments, and trains with a progress bar, per-epoch validation and early
stopping. The checkpoint embeds the model config, preprocessing, data summary and software
version; ``--resume`` continues an interrupted run. ``--nproc N`` trains data-parallel in N
processes through torchrun (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

from perception.dataset import (
    AugmentConfig,
    DataConfig,
    DataWarning,
    FrameSet,
    check_degenerate,
    collect,
    concat_frames,
    load_frames,
    relabel,
    save_frames,
    split,
)
from perception.steering.budget import budget_text, data_budget
from perception.steering.model import ARCHS, SteeringModelConfig, summary_text
from perception.steering.trainer import TrainConfig, Trainer
from rover.errors import ConfigError, DataError


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; every option that has a default value shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, [], argparse.SUPPRESS) or default is False:
            return text  # a flag, a list, or nothing to show
        return f"{text} (default: %(default)s)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options; the epilog lists the architectures' size and MACs."""
    parser.formatter_class = _HelpFormatter
    parser.epilog = "architectures (per stereo pair):\n" + summary_text()
    parser.add_argument(
        "recordings", nargs="*", metavar="REC", help="session folder, folder of sessions or .mcap"
    )
    parser.add_argument("--out", help="checkpoint to write (e.g. models/steering.pt)")
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        metavar="N",
        help="train on at most the first N frames of the recordings (all when not given)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        metavar="M",
        help="train on at most the first M minutes (30 Hz frames) of the recordings",
    )
    parser.add_argument(
        "--sim-minutes",
        type=float,
        default=0.0,
        help="add this much in-process simulator expert driving (experiments, no recording)",
    )
    parser.add_argument("--sim-seed", type=int, default=0, help="seed of the simulated worlds")
    parser.add_argument(
        "--sim-randomise",
        type=float,
        default=0.0,
        help="share of simulated worlds repainted with other training materials",
    )
    parser.add_argument(
        "--sim-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes driving the simulated demonstrations (default: one per core, here %(default)s)",
    )
    parser.add_argument(
        "--prepare-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes decoding and preparing the recorded frames (default: one per core, "
        "here %(default)s)",
    )
    parser.add_argument(
        "--sim-cluster",
        metavar="ADDRESS",
        help="drive the simulated demonstrations on a Dask cluster (tcp://HOST:PORT or "
        "local[:N]; docs/cluster.md)",
    )
    parser.add_argument("--cache", help="prepared-frames .npz: written once, then reused")
    parser.add_argument(
        "--extra-cache",
        action="append",
        default=[],
        metavar="NPZ",
        help="more prepared frames to train on (e.g. corrections), repeatable",
    )
    parser.add_argument("--init", metavar="MODEL", help="start from this checkpoint's weights")
    parser.add_argument(
        "--arch",
        choices=sorted(ARCHS),
        default=SteeringModelConfig.arch,
        help="network (sizes below)",
    )
    parser.add_argument(
        "--no-throttle", action="store_true", help="predict steering only (fixed cruise throttle)"
    )
    parser.add_argument(
        "--normalise",
        choices=("image", "fixed"),
        default="image",
        help="per-image mean/std per channel, or fixed scaling",
    )
    parser.add_argument(
        "--model-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any model config value, e.g. image_width_px=640 for another camera (repeatable)",
    )
    t = TrainConfig()
    parser.add_argument("--epochs", type=int, default=t.epochs, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=t.batch_size, help="frames per step")
    parser.add_argument(
        "--lr", type=float, default=t.lr, help="peak learning rate (warm-up, cosine decay)"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=t.patience,
        help="stop after this many epochs without a better validation MAE",
    )
    parser.add_argument(
        "--takeover-weight",
        type=float,
        default=t.takeover_weight,
        metavar="W",
        help="draw each take-over frame (HG-DAgger: where someone took the wheel from the "
        "model) W times as often as a demonstration frame",
    )
    parser.add_argument("--workers", type=int, default=t.workers, help="data-loading processes")
    parser.add_argument("--threads", type=int, default=t.threads, help="torch threads (0: auto)")
    parser.add_argument("--device", default=t.device, help="auto, cpu, cuda or mps")
    parser.add_argument(
        "--seed", type=int, default=t.seed, help="seed of weights, sampling, augmentation"
    )
    d = DataConfig()
    parser.add_argument(
        "--latency-frames",
        type=int,
        default=d.latency_frames,
        help="label each frame with the command this many frames later",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="share held out for validation (whole sessions, or 10 s blocks)",
    )
    parser.add_argument("--no-augment", action="store_true", help="train on the frames as is")
    parser.add_argument(
        "--augment-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any augmentation value, e.g. invert=0 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from MODEL.resume.pt")
    parser.add_argument("--nproc", type=int, default=1, help="data-parallel processes (torchrun)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--summary", action="store_true", help="print the architectures, exit")


def configs(args: argparse.Namespace) -> tuple[Any, ...]:
    """Model, data, augmentation and training configs from the parsed arguments."""
    raw = {"arch": args.arch, "predict_throttle": not args.no_throttle}
    raw["normalise"] = args.normalise
    raw |= _key_values(args.model_set)
    model_cfg = SteeringModelConfig.from_dict(raw)
    data_cfg = DataConfig(latency_frames=args.latency_frames, val_fraction=args.val_fraction)
    augment = AugmentConfig(
        flip=0.0, shift_px=0, brightness=0.0, contrast=0.0, colour=0.0,
        channel_shuffle=0.0, grayscale=0.0, invert=0.0, shadow=0.0,
    ) if args.no_augment else AugmentConfig.from_dict(_key_values(args.augment_set))  # fmt: skip
    train_cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        takeover_weight=args.takeover_weight,
        workers=args.workers,
        threads=args.threads,
        device=args.device,
        seed=args.seed,
    )
    return model_cfg, data_cfg, augment, train_cfg


def _key_values(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings to a dict; values parse as TOML (numbers, booleans), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{item!r}: write KEY=VALUE, e.g. crop_top_px=60")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value  # a bare word: a string
    return out


def recording_samples(paths: list[str], limit: int | None = None):
    """(samples, how many) of every session in `paths` via the recording reader, at most
    ``limit``; warns on camera mismatch."""
    from rover.recording.reader import open_sessions  # mcap and friends: only when reading

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise DataError(f"recording {missing[0]} does not exist: check the path")
    sessions = open_sessions(paths)
    setups = {repr((s.metadata.get("camera"), s.metadata.get("calibration"))) for s in sessions}
    if len(setups) > 1:
        warnings.warn(
            f"the recordings come from {len(setups)} different camera setups (size or "
            "calibration): a model trained on a mix may drive worse on each; train per setup",
            DataWarning,
            stacklevel=2,
        )
    total = sum(len(session) for session in sessions)
    # JPEG bytes: the prepare workers decode them, in parallel
    samples = (sample for session in sessions for sample in session.samples(decode=False))
    if limit is not None and limit < total:
        return itertools.islice(samples, limit), limit
    return samples, total


def frame_limit(args: argparse.Namespace) -> int | None:
    """``--max-frames`` / ``--max-minutes`` as a frame count (the smaller), or None."""
    limits = []
    if args.max_frames is not None:
        limits.append(args.max_frames)
    if args.max_minutes is not None:
        limits.append(round(args.max_minutes * 60 * 30))
    if any(n < 1 for n in limits):
        raise ConfigError("--max-frames and --max-minutes must be positive")
    return min(limits) if limits else None


def gather_frames(args: argparse.Namespace, model_cfg: SteeringModelConfig) -> FrameSet:
    """Prepared frames from the cache, or from recordings and/or the in-process simulator."""
    extra = [load_frames(p, model_cfg) for p in args.extra_cache]
    if args.cache and Path(args.cache).is_file():
        frames = load_frames(args.cache, model_cfg)
        return concat_frames([frames, *extra]) if extra else frames
    if not args.recordings and args.sim_minutes <= 0 and not extra:
        raise ConfigError("no data: pass recordings (REC...) or --sim-minutes M")
    parts = []
    if args.recordings:
        samples, total = recording_samples(args.recordings, frame_limit(args))
        parts.append(
            collect(samples, model_cfg, not args.quiet, total=total, workers=args.prepare_workers)
        )
    if args.sim_minutes > 0:
        from perception.steering.demos import EpisodeSpec, collect_demos

        spec = EpisodeSpec(seed=args.sim_seed, randomise=args.sim_randomise)
        parts.append(
            collect_demos(
                args.sim_minutes,
                model_cfg,
                spec,
                args.sim_workers,
                not args.quiet,
                getattr(args, "sim_cluster", None),
            )
        )
    frames = parts[0] if len(parts) == 1 else concat_frames(parts)
    if args.cache and os.environ.get("RANK", "0") == "0":  # one writer in a DDP job
        save_frames(frames, args.cache)
    return concat_frames([frames, *extra]) if extra else frames


def train_model(args: argparse.Namespace) -> dict[str, Any]:
    """Gather data, check it, train; returns the training summary."""
    model_cfg, data_cfg, augment, train_cfg = configs(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        frames = relabel(gather_frames(args, model_cfg), data_cfg)
        check_degenerate(frames)
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    train_idx, val_idx = split(frames, data_cfg)
    budget = data_budget(frames)
    trainer = Trainer(
        frames,
        (train_idx, val_idx),
        model_cfg,
        data_cfg,
        augment,
        train_cfg,
        args.out,
        progress=not args.quiet,
    )
    trainer.log(
        f"{len(frames)} frames from {len(frames.sessions)} session(s): {len(train_idx)} train, "
        f"{len(val_idx)} validation; {model_cfg.arch} on {trainer.device}, "
        f"world size {trainer.dist.world_size}"
    )
    trainer.log(f"learning from {budget_text(budget)}")
    if args.init:
        trainer.init_from(args.init)
    result = trainer.fit(resume=args.resume)
    trainer.close()
    if trainer.dist.main and Path(args.out).is_file():
        trainer.log(f"wrote {args.out} (best val MAE {result['best_val_mae']:.4f})")
    return result


def _torchrun(args: argparse.Namespace) -> int:
    """Relaunch this command as `nproc` ranks under torchrun (standalone rendezvous)."""
    argv = [*args.recordings, "--out", args.out, "--nproc", "1"]
    names = ("sim_minutes", "sim_seed", "sim_randomise", "cache", "init", "arch", "normalise")
    names += ("max_frames", "max_minutes")
    for name in (*names, "epochs"):
        if getattr(args, name) is not None:
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    for name in ("batch_size", "lr", "patience", "takeover_weight", "workers", "threads"):
        argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    argv += ["--device", str(args.device), "--seed", str(args.seed)]
    argv += ["--latency-frames", str(args.latency_frames), "--val-fraction", str(args.val_fraction)]
    argv += [f"--model-set={item}" for item in args.model_set]
    argv += [f"--augment-set={item}" for item in args.augment_set]
    argv += [f"--extra-cache={item}" for item in args.extra_cache]
    for flag in ("no_throttle", "no_augment", "resume", "quiet"):
        if getattr(args, flag):
            argv.append(f"--{flag.replace('_', '-')}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={args.nproc}", "-m", "perception.train_steering", *argv]
    return subprocess.run(cmd, env=os.environ.copy()).returncode


def run(args: argparse.Namespace) -> int:
    """Entry point of `rover train steering`; returns the exit code."""
    if args.summary:
        print(summary_text(configs(args)[0]))
        return 0
    if not args.out:
        raise ConfigError("--out MODEL is required: where to write the trained checkpoint")
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _torchrun(args)
    train_model(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m perception.train_steering``: the command alone (also what torchrun runs)."""
    from rover.errors import run_command

    parser = argparse.ArgumentParser(prog="rover train steering", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command("rover train steering", lambda: run(args))


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun rank skips interpreter shutdown: a gloo worker thread may still be
        # releasing the last all-reduce, whose tensors need the GIL, and a thread that asks
        # for it during shutdown aborts the process (SIGABRT) after a good run (1 in ~60 here;
        # pytorch/pytorch#179291). Everything is written and the group destroyed by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
