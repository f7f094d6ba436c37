"""`rover bench train`: samples/s of the whole training loop against bare forward+backward.

- loop: the real training loop of `rover train steering` (balanced sampler, augmentation and
  batching in worker processes, host-to-device copy, forward, backward, optimiser step);
- floor, measured in the same run: the same model and optimiser stepping on one batch that is
  already in memory (no data loading at all): what the loop would reach with free data.

Frames are synthetic (prepared-size noise): loading and augmentation cost the same on any
content. The ratio ``samples_per_s / floor_samples_per_s`` is the loop's efficiency.
"""

from __future__ import annotations

import argparse
import json
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
    return {
        "arch": args.arch,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "threads": torch.get_num_threads(),
        "samples_per_s": round(loop, 1),
        "floor_samples_per_s": round(floor, 1),
        "efficiency_pct": round(100 * loop / floor, 1),
    }


def main() -> None:
    """``python -m rover.bench.train``: the bench alone, JSON on the last line."""
    parser = argparse.ArgumentParser(prog="rover bench train", description=__doc__)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
