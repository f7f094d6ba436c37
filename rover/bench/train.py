"""`rover bench train`: samples/s of the whole training loop against bare forward+backward.

- loop: the real training loop of `rover train steering` (balanced sampler, augmentation and
  batching in worker processes, host-to-device copy, forward, backward, optimiser step);
- floor, measured in the same run: the same model and optimiser stepping on one batch that is
  already in memory (no data loading at all): what the loop would reach with free data.

Frames are synthetic (prepared-size noise): loading and augmentation cost the same on any
content. The ratio ``samples_per_s / floor_samples_per_s`` is the loop's efficiency.

With ``--recording R`` it also times the real recipe: ``rover train steering R`` with its
defaults, preparation included (issue 19's "training from 20 minutes of recordings <= 15
minutes"); its floor is the trained samples at the floor's rate. The load average before and
after goes in the result: a figure taken on a busy machine says so.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rover.bench.common import print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument("--arch", default="pilotnet", help="dave or pilotnet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40, help="batches per measurement")
    parser.add_argument("--workers", type=int, default=1, help="data-loading processes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: auto)")
    parser.add_argument("--repeats", type=int, default=3, help="repeat and keep the median")
    parser.add_argument(
        "--recording",
        action="append",
        default=[],
        metavar="REC",
        help="also time `rover train steering REC` with its defaults (repeatable: e.g. a "
        "20-minute recording from `make model`)",
    )


def _trainer(args: argparse.Namespace, out: Path):
    from perception.dataset import AugmentConfig, DataConfig, FrameSet
    from perception.steering.model import SteeringModelConfig
    from perception.steering.trainer import TrainConfig, Trainer

    model_cfg = SteeringModelConfig(arch=args.arch)
    h, w = model_cfg.input_hw
    n = args.batch_size * (args.batches + 8)
    rng = np.random.default_rng(0)
    frames = FrameSet(
        images=rng.integers(0, 256, (n, h, w, 6), dtype=np.uint8),
        steering=rng.uniform(-1, 1, n).astype(np.float32),
        throttle=rng.uniform(0, 1, n).astype(np.float32),
        session=np.zeros(n, np.int32),
        sessions=["synthetic"],
        image_hw=(model_cfg.image_height_px, model_cfg.image_width_px),
    )
    split = (np.arange(n - args.batch_size), np.arange(n - args.batch_size, n))
    cfg = TrainConfig(
        batch_size=args.batch_size, workers=args.workers, threads=args.threads, epochs=1
    )
    return Trainer(
        frames, split, model_cfg, DataConfig(), AugmentConfig(), cfg, out, progress=False
    )


def measure_floor(trainer, batches: int) -> float:
    """Samples/s of forward+backward+step on one batch already in memory."""
    images, targets = next(iter(trainer.train_loader))
    for _ in range(3):
        trainer.step(images, targets)
    start = time.perf_counter()
    for _ in range(batches):
        trainer.step(images, targets)
    return batches * len(targets) / (time.perf_counter() - start)


def measure_loop(trainer, batches: int) -> float:
    """Samples/s of the training loop, data loader included (after its first batches)."""
    it = iter(trainer.train_loader)
    for _ in range(3):  # workers start and fill their prefetch queue
        trainer.step(*next(it))
    seen, start = 0, time.perf_counter()
    for _ in range(batches):
        images, targets = next(it)
        trainer.step(images, targets)
        seen += len(targets)
    return seen / (time.perf_counter() - start)


def time_recipe(recordings: list[str], floor: float) -> dict:
    """Wall time of `rover train steering` with its defaults on ``recordings``."""
    from perception.infer import load_checkpoint
    from perception.train_steering import main as train_main

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recipe.pt"
        start = time.perf_counter()
        if train_main([*recordings, "--out", str(out), "--quiet"]) != 0:
            raise SystemExit("rover bench train: the training run failed (see above)")
        wall = time.perf_counter() - start
        ckpt = load_checkpoint(out)
    frames = int(ckpt.info["data"]["frames"])
    trained = int(ckpt.info["data"]["train_frames"]) * len(ckpt.info["history"])
    return {
        "recipe_frames": frames,
        "recipe_data_min": round(frames / 30 / 60, 2),
        "recipe_epochs": len(ckpt.info["history"]),
        "recipe_total_s": round(wall, 1),
        "recipe_floor_s": round(trained / floor, 1),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }


def run(args: argparse.Namespace) -> dict:
    """Run the bench, print a table, return the flat result dict."""
    import torch

    from perception.steering.model import count_parameters

    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(args, Path(tmp) / "bench.pt")
        floors, loops = [], []
        for _ in range(args.repeats):
            floors.append(measure_floor(trainer, args.batches))
            loops.append(measure_loop(trainer, args.batches))
    floor, loop = float(np.median(floors)), float(np.median(loops))
    print(
        f"steering training, {args.arch} ({count_parameters(trainer.net):,} parameters), "
        f"batch {args.batch_size}, {args.workers} worker(s), {torch.get_num_threads()} "
        f"thread(s), {args.batches} batches x {args.repeats}"
    )
    print_table(
        ["what", "samples/s", "of floor"],
        [
            ["floor: forward+backward+step, batch in memory", f"{floor:.0f}", "100%"],
            ["training loop (loader, augmentation, step)", f"{loop:.0f}", f"{loop / floor:.0%}"],
        ],
    )
    result = {
        "arch": args.arch,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "threads": torch.get_num_threads(),
        "samples_per_s": round(loop, 1),
        "floor_samples_per_s": round(floor, 1),
        "efficiency_pct": round(100 * loop / floor, 1),
    }
    if args.recording:
        recipe = time_recipe(args.recording, floor)
        print_table(
            ["recipe: rover train steering REC (defaults)", "s", "target"],
            [
                [f"{recipe['recipe_data_min']:.1f} min of data, {recipe['recipe_epochs']} "
                 "epoch(s), preparation included", f"{recipe['recipe_total_s']:.0f}", "<= 900"],
                ["floor: the trained samples at the floor's rate", f"{recipe['recipe_floor_s']:.0f}",
                 ""],
                [f"load average before / after: {recipe['load_avg_before']:.1f} / "
                 f"{recipe['load_avg_after']:.1f}", "", ""],
            ],
        )  # fmt: skip
        result.update(recipe)
    return result


def main() -> None:
    """``python -m rover.bench.train``: the bench alone, JSON on the last line."""
    parser = argparse.ArgumentParser(prog="rover bench train", description=__doc__)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
