"""Offline training of the segmenter from stereo self-labels: ``rover train traversability``.

    rover train traversability recordings/run1 recordings/run2 --out trav.pt
    rover train traversability --sim forest open corridor --out trav.pt   # no recordings yet

Labels come from `perception.stereo` only. Validation holds out the last frames and scores the
network against the stereo labels it has never trained on (accuracy, obstacle IoU).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from perception import stereo
from perception.traversability import data
from perception.traversability.model import (
    OBSTACLE_CLASS,
    SegmenterConfig,
    SegmenterNet,
    online_inputs,
    save_model,
)
from rover.errors import ConfigError

log = logging.getLogger("perception.traversability")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings."""

    epochs: int = 12
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch size and learning rate must be positive")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction = {self.val_fraction}: use [0, 1)")


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor):
    """Cross-entropy against per-cell class fractions, weighted by labelled pixels."""
    logp = F.log_softmax(logits, dim=1)
    per_cell = -(target * logp).sum(1)
    return (per_cell * weight).sum() / weight.sum().clamp(min=1e-6)


def _class_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse-sqrt frequency weights: obstacles are rarer than ground but matter more."""
    totals = counts.sum(axis=(0, 2, 3), dtype=np.float64) + 1.0
    w = (totals.sum() / totals) ** 0.5
    return torch.tensor(w / w.mean(), dtype=torch.float32).view(1, -1, 1, 1)


@torch.no_grad()
def evaluate(net: SegmenterNet, val: data.LabelledSet, cfg: SegmenterConfig) -> dict:
    """Accuracy and obstacle IoU of the argmax against the stereo labels (majority per cell)."""
    net.eval()
    hits = labelled = inter = union = 0
    for start in range(0, len(val), 32):
        idx = np.arange(start, min(start + 32, len(val)))
        x, target, weight = data.batch(val, idx, cfg, None)
        pred = net(x).argmax(1)
        known = weight > 0
        truth = target.argmax(1)
        hits += int(((pred == truth) & known).sum())
        labelled += int(known.sum())
        p_obs, t_obs = (pred == OBSTACLE_CLASS) & known, (truth == OBSTACLE_CLASS) & known
        inter += int((p_obs & t_obs).sum())
        union += int((p_obs | t_obs).sum())
    return {
        "val_accuracy": round(hits / max(labelled, 1), 4),
        "val_obstacle_iou": round(inter / max(union, 1), 4),
        "val_frames": len(val),
    }


def train(
    train_set: data.LabelledSet,
    val_set: data.LabelledSet | None,
    seg_cfg: SegmenterConfig | None = None,
    cfg: TrainConfig | None = None,
    progress: bool = True,
) -> tuple[SegmenterNet, dict]:
    """Train a segmenter on stereo self-labels; returns the net (eval mode) and metrics."""
    seg_cfg, cfg = seg_cfg or SegmenterConfig(), cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    torch.set_num_threads(cfg.threads)
    net = SegmenterNet(seg_cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_set) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch
    )
    class_w = _class_weights(train_set.counts)
    metrics: dict = {}
    start = time.monotonic()
    for epoch in range(cfg.epochs):
        net.train()
        order = rng.permutation(len(train_set))
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not progress,
        )
        losses = []
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if idx.size == 0:
                idx = order[: cfg.batch_size]
            x, target, weight = data.batch(train_set, idx, seg_cfg, rng)
            target = target * class_w
            target = target / target.sum(1, keepdim=True).clamp(min=1e-6)
            loss = soft_cross_entropy(net(x), target, weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.close()
        metrics = {"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 4)}
        if val_set is not None and len(val_set):
            metrics.update(evaluate(net, val_set, seg_cfg))
        log.info("epoch %d: %s", epoch + 1, metrics)
        if progress:
            tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    metrics["train_frames"] = len(train_set)
    metrics["train_s"] = round(time.monotonic() - start, 1)
    net.eval()
    return net, metrics


@torch.no_grad()
def collect_replay(
    net: SegmenterNet,
    data_set: data.LabelledSet,
    seg_cfg: SegmenterConfig,
    per_class: int = 1024,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of confidently labelled training cells, balanced per class: the online head
    replays them so it keeps what the offline training knew about classes a new terrain's
    frames do not show (an overcast sky gives stereo no labels at all)."""
    rng = np.random.default_rng(seed)
    xs: list[torch.Tensor] = []
    ys: list[np.ndarray] = []
    frames = rng.permutation(len(data_set))[:200]
    for start in range(0, len(frames), 16):
        idx = frames[start : start + 16]
        x, target, weight = data.batch(data_set, idx, seg_cfg, None)
        feats = online_inputs(x, net.features(x))
        sure = (weight > 0.6) & (target.amax(1) > 0.9)
        xs.append(feats.permute(0, 2, 3, 1)[sure])
        ys.append(target.argmax(1)[sure].numpy())
    feats_all, classes = torch.cat(xs), np.concatenate(ys)
    keep = []
    for c in np.unique(classes):
        pool = np.flatnonzero(classes == c)
        keep.append(rng.choice(pool, min(per_class, len(pool)), replace=False))
    picked = torch.from_numpy(np.concatenate(keep))
    return feats_all[picked].clone(), torch.from_numpy(classes)[picked].long()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rover train traversability``."""
    parser.add_argument("recordings", nargs="*", help="recording folders or .mcap files")
    parser.add_argument("--out", required=True, help="model file to write (e.g. trav.pt)")
    parser.add_argument(
        "--sim",
        nargs="+",
        metavar="SCENARIO",
        help="train on simulator drives of these scenarios instead of recordings",
    )
    parser.add_argument(
        "--sim-seeds", type=int, nargs="+", default=[11, 12], help="world seeds of the drives"
    )
    parser.add_argument("--sim-steps", type=int, default=600, help="steps per simulator drive")
    parser.add_argument(
        "--epochs", type=int, default=TrainConfig.epochs, help="passes over the data"
    )
    parser.add_argument(
        "--batch-size", type=int, default=TrainConfig.batch_size, help="frames per step"
    )
    parser.add_argument("--lr", type=float, default=TrainConfig.lr, help="learning rate")
    parser.add_argument("--threads", type=int, default=TrainConfig.threads, help="torch threads")
    parser.add_argument(
        "--max-frames", type=int, default=None, help="stop labelling after N (default: all)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Label, train, validate, save; prints the validation metrics."""
    if bool(args.recordings) == bool(args.sim):
        raise ConfigError("give recordings to train on, or --sim SCENARIO..., not both")
    if args.sim:
        geom, source = stereo.StereoGeometry.from_camera_model(), "simulator CameraModel"
        pairs = data.sim_pairs(args.sim, args.sim_seeds, args.sim_steps)
    else:
        pairs, geom, source = data.recording_pairs(args.recordings)
    print(f"stereo geometry from {source}")
    seg_cfg = SegmenterConfig()
    labeler = stereo.StereoLabeler(geom)
    labelled = data.label_pairs(pairs, labeler, seg_cfg, args.max_frames, not args.quiet)
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, threads=args.threads
    )
    train_set, val_set = labelled.split(cfg.val_fraction)
    net, metrics = train(train_set, val_set, seg_cfg, cfg, progress=not args.quiet)
    metrics["geometry_source"] = source
    save_model(args.out, net, geom, metrics, collect_replay(net, labelled, seg_cfg))
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    return 0
