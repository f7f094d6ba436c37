"""The training loop: balanced sampling, worker processes, validation, early stopping, resume.

Runs alone or as one rank of a ``torchrun`` job (DDP: gloo on CPU, NCCL on GPU). Rank 0 shows
the progress bar and writes the files; every rank agrees on when to stop because validation
figures are summed across ranks before anyone looks at them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from perception.dataset import (
    SIGN_DEADBAND,
    AugmentConfig,
    BalancedSampler,
    DataConfig,
    FrameSet,
    SteeringDataset,
    balance_weights,
    cruise_throttle,
    describe,
    sign_accuracy,
)
from perception.infer import pick_device, save_checkpoint
from perception.steering.budget import TAKEOVER
from perception.steering.model import (
    SteeringModelConfig,
    SteeringNet,
    build_model,
    soft_bin_targets,
)
from perception.workers import worker_context
from rover.errors import ConfigError, DataError

RESUME_FORMAT = "rover-steering-resume"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and runtime settings (stored in the checkpoint)."""

    epochs: int = 2  # the recipe measured on 20 min of recordings (docs/steering.md)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 3  # epochs without a better validation MAE before stopping
    min_delta: float = 1e-4
    throttle_weight: float = 0.5  # share of the throttle error in the loss
    # a take-over frame (HG-DAgger) is drawn this many times as often as a demonstration's
    takeover_weight: float = 1.0
    workers: int = 1  # data-loading worker processes
    threads: int = 0  # torch threads for compute; 0: the cores left over by the workers
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1:
            raise ConfigError("train: epochs >= 1, batch_size >= 2 and patience >= 1")
        if self.lr <= 0 or self.workers < 0 or self.threads < 0:
            raise ConfigError("train: lr > 0, workers >= 0, threads >= 0")
        if not 0 < self.takeover_weight <= 100:
            raise ConfigError(f"--takeover-weight {self.takeover_weight:g}: use (0, 100]")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        if set(raw) - names:
            raise ConfigError(f"train config: unknown key(s) {sorted(set(raw) - names)}")
        return cls(**raw)


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly one-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun job described by the environment, if any (gloo on CPU, else NCCL)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class _OnPrepared(nn.Module):
    """Calls ``forward_prepared``, so DDP wraps the part that trains on cached images."""

    def __init__(self, net: SteeringNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_raw(x)


def _warmup_cosine(total_steps: int, warmup: float = 0.05, floor: float = 0.02):
    """LR factor: linear warm-up, cosine decay to `floor`, then flat (never runs out)."""
    warm = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


def _identity(batch):
    return batch


def make_loader(
    dataset: SteeringDataset, batch_size: int, sampler, workers: int, pin: bool
) -> torch.utils.data.DataLoader:
    """Batches assembled (and augmented) in worker processes, a few batches ahead."""
    if workers:
        # workers are forked: an OpenCV thread pool inherited mid-use deadlocks the child
        # (seen after rendering in the same process); single-threaded OpenCV has no pool
        cv2.setNumThreads(1)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_identity,
        persistent_workers=workers > 0,
        # not fork, and the heavy imports done once: see perception.workers
        multiprocessing_context=worker_context() if workers else None,
        prefetch_factor=4 if workers else None,
        pin_memory=pin,
        drop_last=sampler is not None,
    )


class Trainer:
    """Trains one model on prepared frames; `fit()` returns the best validation figures."""

    def __init__(
        self,
        frames: FrameSet,
        split: tuple[np.ndarray, np.ndarray],
        model_cfg: SteeringModelConfig,
        data_cfg: DataConfig,
        augment: AugmentConfig,
        cfg: TrainConfig,
        out: str | Path,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ):
        self.frames, self.cfg, self.out = frames, cfg, Path(out)
        self.model_cfg, self.data_cfg, self.augment = model_cfg, data_cfg, augment
        self.train_idx, self.val_idx = split
        if len(self.train_idx) < cfg.batch_size or len(self.val_idx) == 0:
            raise DataError(
                f"{len(self.train_idx)} training and {len(self.val_idx)} validation frames: "
                "too few to train; record more driving"
            )
        self.device = pick_device(cfg.device)
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // self.dist.world_size)
        torch.set_num_threads(threads)
        torch.manual_seed(cfg.seed)
        self.progress = progress and self.dist.main
        self.log = log if self.dist.main else (lambda _: None)
        self.net = build_model(model_cfg).to(self.device)
        self.module: nn.Module = _OnPrepared(self.net)
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        self.loss_weights = torch.tensor([1.0, cfg.throttle_weight][: len(model_cfg.outputs)])
        self.loss_weights = self.loss_weights.to(self.device)
        self._build_loaders()
        self.opt = torch.optim.AdamW(
            self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, _warmup_cosine(cfg.epochs * len(self.train_loader))
        )
        self.epoch, self.best, self.bad_epochs, self.history = 0, math.inf, 0, []

    def close(self) -> None:
        """Leave the torchrun job once every rank is done (call it after a good ``fit``)."""
        if self.dist.world_size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def _build_loaders(self) -> None:
        targets = len(self.model_cfg.outputs)
        weights = balance_weights(self.frames.steering[self.train_idx], self.data_cfg)
        if self.cfg.takeover_weight != 1.0:  # HG-DAgger: the corrections drawn more often
            takeover = self.frames.kind[self.train_idx] == TAKEOVER
            weights = np.where(takeover, weights * self.cfg.takeover_weight, weights)
        self.sampler = BalancedSampler(
            weights, len(self.train_idx), self.dist.rank, self.dist.world_size, self.cfg.seed
        )
        train = SteeringDataset(self.frames, self.train_idx, self.augment, targets)
        if self.cfg.workers and not train.share_images():
            self.log("/dev/shm is too small for the frames: each loader worker gets a copy")
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(
            train, self.cfg.batch_size, self.sampler, self.cfg.workers, pin
        )
        val_idx = self.val_idx[self.dist.rank :: self.dist.world_size]
        val = SteeringDataset(self.frames, val_idx, None, targets)
        self.val_loader = make_loader(val, 4 * self.cfg.batch_size, None, 0, pin)

    @property
    def resume_path(self) -> Path:
        """Where the full training state goes after every epoch."""
        return self.out.with_name(self.out.name + ".resume.pt")

    def init_from(self, model_path: str | Path) -> None:
        """Start from another checkpoint's weights (same architecture), e.g. to fine-tune."""
        from perception.infer import load_checkpoint

        ckpt = load_checkpoint(model_path)
        if ckpt.config != self.model_cfg:
            raise DataError(
                f"--init {model_path}: its model config differs from this run's; use the same "
                "--arch and --model-set values"
            )
        self.net.load_state_dict(ckpt.state_dict)
        self.log(f"starting from the weights of {model_path}")

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until the epochs run out or validation stops improving."""
        if resume:
            self._load_resume()
        while self.epoch < self.cfg.epochs and self.bad_epochs < self.cfg.patience:
            self.sampler.set_epoch(self.epoch)
            train_loss, rate = self._train_epoch()
            val = self.validate()
            self.epoch += 1
            improved = val["val_mae"] < self.best - self.cfg.min_delta
            record = {"epoch": self.epoch, "train_loss": train_loss, "samples_per_s": rate, **val}
            self.history.append({k: round(v, 5) for k, v in record.items()})
            if improved:
                self.best, self.bad_epochs = val["val_mae"], 0
                if self.dist.main:
                    self._save_best(record)
            else:
                self.bad_epochs += 1
            self._log_epoch(record, improved)
            if self.dist.main:
                self._save_resume()
        if self.bad_epochs >= self.cfg.patience:
            self.log(f"early stop: no better validation MAE for {self.cfg.patience} epochs")
        return {"best_val_mae": self.best, "epochs": self.epoch, "history": self.history}

    def _train_epoch(self) -> tuple[float, float]:
        self.module.train()
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
            unit="batch",
            disable=not self.progress,
            leave=False,
        )
        smooth, seen, t0 = None, 0, time.perf_counter()
        for images, targets in bar:
            loss = self.step(images, targets)
            smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
            seen += len(targets)
            bar.set_postfix(loss=f"{smooth:.4f}")
        rate = seen * self.dist.world_size / (time.perf_counter() - t0)
        return float(smooth or 0.0), rate

    def step(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        """One optimisation step on a batch; returns its loss."""
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        loss = self.loss(self.module(images), targets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return float(loss.detach())

    def loss(self, raw: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """MSE on each output (throttle weighted); with steering bins, the KL divergence from
        the soft targets (cross-entropy less their entropy: 0 when perfect)."""
        bins = self.model_cfg.steering_bins
        if not bins:
            return (((raw - targets) ** 2) * self.loss_weights).mean()
        soft = soft_bin_targets(targets[:, 0], bins)
        log_soft = torch.log(soft.clamp_min(1e-12))
        loss = (soft * (log_soft - torch.log_softmax(raw[:, :bins], dim=1))).sum(1).mean()
        if raw.shape[1] > bins:
            loss = loss + self.cfg.throttle_weight * ((raw[:, bins] - targets[:, 1]) ** 2).mean()
        return loss

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """MAE of steering (and throttle), share of right steering signs, on every rank's share."""
        self.module.eval()
        # |e| steer, n, sign right, counted, |e| throttle, counted labels steering left (> 0)
        sums = torch.zeros(6, dtype=torch.float64)
        for images, targets in self.val_loader:
            out = self.net.forward_prepared(images.to(self.device)).float().cpu()
            pred, label = out[:, 0].numpy(), targets[:, 0].numpy()
            right, counted = sign_accuracy(pred, label)
            thr_err = (out[:, 1] - targets[:, 1]).abs().sum() if out.shape[1] > 1 else 0.0
            left = int((label >= SIGN_DEADBAND).sum())
            sums += torch.tensor(
                [np.abs(pred - label).sum(), len(label), right, counted, float(thr_err), left],
                dtype=torch.float64,
            )
        if self.dist.world_size > 1:
            dist.all_reduce(sums)
        n = max(1.0, float(sums[1]))
        counted = max(1.0, float(sums[3]))
        result = {
            "val_mae": float(sums[0]) / n,
            "val_sign_pct": 100.0 * float(sums[2]) / counted,
            "val_sign_frames": float(sums[3]),  # |label| >= SIGN_DEADBAND: a sign to get right
            # what always steering to the more common side would score
            "val_sign_majority_pct": 100.0
            * max(float(sums[5]), counted - float(sums[5]))
            / counted,
        }
        if len(self.model_cfg.outputs) > 1:
            result["val_throttle_mae"] = float(sums[4]) / n
        return result

    def _log_epoch(self, record: dict[str, float], improved: bool) -> None:
        text = (
            f"epoch {record['epoch']}/{self.cfg.epochs}: loss {record['train_loss']:.4f}, "
            f"val MAE {record['val_mae']:.4f}, sign right {record['val_sign_pct']:.1f}% of "
            f"{record['val_sign_frames']:.0f} frames with |steering| >= {SIGN_DEADBAND:g} "
            f"(one side always: {record['val_sign_majority_pct']:.1f}%)"
        )
        if "val_throttle_mae" in record:
            text += f", throttle MAE {record['val_throttle_mae']:.4f}"
        text += f", {record['samples_per_s']:.0f} samples/s" + (" *" if improved else "")
        self.log(text)

    def info(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What the checkpoint says about how it was made."""
        return {
            "preprocessing": {
                "input": "RGB uint8 HxWx3 per eye (left, right), camera frames as published",
                "inside_model": "crop, integer average pooling, round, RGB->YUV (BT.601), "
                + ("per-image mean/std" if self.model_cfg.normalise == "image" else "fixed")
                + " normalisation",
            },
            "data": describe(self.frames, self.train_idx, self.val_idx),
            "data_config": dataclasses.asdict(self.data_cfg),
            "augment": dataclasses.asdict(self.augment),
            "train": dataclasses.asdict(self.cfg) | {"world_size": self.dist.world_size},
            "metrics": metrics,
            "history": list(self.history),
        }

    def _save_best(self, record: dict[str, float]) -> None:
        metrics = {k: round(float(v), 5) for k, v in record.items()}
        save_checkpoint(self.out, self.net, cruise_throttle(self.frames), self.info(metrics))

    def _save_resume(self) -> None:
        state = {
            "format": RESUME_FORMAT,
            "model": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "epoch": self.epoch,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "model_config": self.model_cfg.to_dict(),
        }
        tmp = self.resume_path.with_name(self.resume_path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.resume_path)

    def _load_resume(self) -> None:
        path = self.resume_path
        if not path.is_file():
            raise DataError(f"--resume: {path} does not exist; train once without --resume")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("format") != RESUME_FORMAT:
            raise DataError(f"{path} is not a training state file: delete it, train afresh")
        if state["model_config"] != self.model_cfg.to_dict():
            raise DataError(
                f"{path} was trained with another model config: use the same --arch and "
                "options as the first run, or start afresh without --resume"
            )
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.epoch, self.best = int(state["epoch"]), float(state["best"])
        self.bad_epochs, self.history = int(state["bad_epochs"]), list(state["history"])
        self.log(f"resumed after epoch {self.epoch} (best val MAE {self.best:.4f})")
