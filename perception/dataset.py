"""Steering datasets from demonstrations: prepare, split, rebalance, augment.

Samples come from recordings (``rover.recording.reader``) or from the simulator in-process
(``perception.steering.demos``); both give objects with ``left``, ``right`` (RGB uint8),
``steering``, ``throttle``, ``stamp_ns``, ``frame_seq``, ``session`` and ``index``.

- Each frame is cropped and pooled once by the model's own ``prepare`` and kept as uint8
  (h, w, 6): 20 minutes of 30 Hz stereo is ~2.2 GB instead of ~17 GB of raw frames.
- Validation holds whole sessions, or contiguous blocks with guard gaps, so no validation
  frame neighbours a training frame (neighbours are near-copies and flatter the score).
- Straight driving dominates demonstrations; sampling weights flatten the steering histogram.
- Augmentations keep labels honest: a mirrored pair swaps eyes and negates steering; a small
  yaw shift corrects steering; light, colour and shadows change appearance only.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from perception.steering.augment import AugmentConfig, augment_batch
from perception.steering.budget import DEMONSTRATION, RELABELLED, TAKEOVER, data_budget
from perception.steering.loader import BalancedSampler, SteeringDataset
from perception.steering.model import SteeringModelConfig
from perception.steering.prepare import ChunkRunner
from rover.config import dataclass_from_dict
from rover.errors import ConfigError, DataError

__all__ = [  # the loader's pieces and the augmentation, where callers have always found them
    "AugmentConfig",
    "BalancedSampler",
    "SteeringDataset",
    "augment_batch",
]
MIN_FRAMES = 3000  # below ~2 minutes of 30 Hz driving the model cannot generalise
SIGN_DEADBAND = 0.05  # |steering| below this has no meaningful sign


class DataWarning(UserWarning):
    """The data look degenerate: training will run but the model will likely be poor."""


class SampleLike(Protocol):
    """One demonstration frame (the recording reader's ``Sample`` has these fields)."""

    left: np.ndarray
    right: np.ndarray
    steering: float
    throttle: float
    stamp_ns: int
    frame_seq: int
    session: str
    index: int


@dataclass(frozen=True)
class DataConfig:
    """How demonstrations become training examples."""

    latency_frames: int = 0  # label = the command this many frames later (actuation latency)
    drop_reverse: bool = True  # backing out of dead ends is not learnable from a forward camera
    val_fraction: float = 0.15
    block_frames: int = 300  # contiguous validation blocks of 10 s at 30 Hz ...
    guard_frames: int = 30  # ... with 1 s of unused frames on each side
    balance_bins: int = 15  # steering histogram bins for rebalancing
    balance_max_weight: float = 8.0  # cap: a rare bin is drawn at most this much more often

    def __post_init__(self) -> None:
        if self.latency_frames < 0 or self.guard_frames < 0 or self.block_frames < 10:
            raise ConfigError("data: latency_frames, guard_frames >= 0 and block_frames >= 10")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"data val_fraction = {self.val_fraction}: use (0, 0.5)")
        if self.balance_bins < 1 or self.balance_max_weight < 1.0:
            raise ConfigError("data: balance_bins >= 1 and balance_max_weight >= 1")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataConfig:
        """Build from a dict; unknown keys raise ConfigError."""
        return dataclass_from_dict(cls, raw, "data config")


@dataclass
class FrameSet:
    """Prepared demonstrations: images (N, h, w, 6) uint8 and their labels, in time order."""

    images: np.ndarray
    steering: np.ndarray  # float32 (N,)
    throttle: np.ndarray  # float32 (N,)
    session: np.ndarray  # int32 (N,): index into `sessions`
    sessions: list[str]
    image_hw: tuple[int, int]  # camera frame size the images came from
    dropped_reverse: int = 0
    perturbation: np.ndarray | None = None  # float32 (N,): steering added to the label (DART)
    kind: np.ndarray | None = None  # int8 (N,): DEMONSTRATION, TAKEOVER or RELABELLED
    skipped_learner: int = 0  # frames the model itself drove (its own command is no label)
    skipped_stale: int = 0  # frames whose command was stale (nobody was driving)

    def __post_init__(self) -> None:
        n = len(self.steering)
        if self.perturbation is None:
            self.perturbation = np.zeros(n, np.float32)
        if self.kind is None:
            self.kind = np.zeros(n, np.int8)

    def __len__(self) -> int:
        return len(self.steering)

    def rows(self, keep: np.ndarray, **changes: Any) -> FrameSet:
        """The frames selected by ``keep`` (mask or indices), every per-frame array alike."""
        return dataclasses.replace(
            self,
            images=self.images[keep],
            steering=changes.get("steering", self.steering)[keep],
            throttle=changes.get("throttle", self.throttle)[keep],
            session=self.session[keep],
            perturbation=self.perturbation[keep],
            kind=self.kind[keep],
            **{k: v for k, v in changes.items() if k not in ("steering", "throttle")},
        )


def collect(
    samples: Iterable[SampleLike],
    model_cfg: SteeringModelConfig,
    progress: bool = False,
    batch: int = 64,
    total: int | None = None,
    workers: int = 1,
) -> FrameSet:
    """Prepare every sample with the model's own ``prepare``, in order; labels as recorded.

    Frames the model drove itself (source ``cnn:...``) and frames without a live command
    (``...:stale``, ``none``) are skipped and counted: neither carries a demonstrator's label.
    ``total`` (the frames expected) gives the progress bar its end and ETA. Samples may carry
    JPEG bytes instead of images (the reader's ``decode=False``); ``workers`` > 1 decodes and
    prepares chunks in that many processes, the same frames in the same order."""
    labels: dict[str, list] = {k: [] for k in ("steering", "throttle", "session", "offset", "kind")}
    names: dict[str, int] = {}
    skipped = {"learner": 0, "stale": 0}
    learner_drove: dict[str, bool] = {}  # per session: the model has driven in it
    frames_l: list = []
    frames_r: list = []
    expected = (model_cfg.image_height_px, model_cfg.image_width_px, 3)
    with ChunkRunner(model_cfg, expected, workers) as runner:
        bar = tqdm(
            samples, desc="preparing frames", unit="frame", disable=not progress, total=total
        )
        for s in bar:
            source = getattr(s, "source", "")
            if source.endswith(":stale") or source.startswith(("none", "cnn:")):
                if source.startswith("cnn:"):
                    learner_drove[s.session] = True
                skipped["learner" if source.startswith("cnn:") else "stale"] += 1
                continue
            # the reader marks take-overs (rover.recording.takeover); in-process corrections
            # and older readers: the frames someone drove after the model did
            after = learner_drove.get(s.session, False) or bool(getattr(s, "takeover", False))
            labels["kind"].append(_kind(source, after))
            if source == "model":  # once the model drove a session, anyone else took over
                learner_drove[s.session] = True
            frames_l.append(s.left)
            frames_r.append(s.right)
            labels["steering"].append(float(s.steering))
            labels["throttle"].append(float(s.throttle))
            labels["session"].append(names.setdefault(s.session, len(names)))
            labels["offset"].append(float(getattr(s, "perturbation", 0.0)))
            if len(frames_l) == batch:
                runner.submit(frames_l, frames_r)
                frames_l, frames_r = [], []
        if frames_l:
            runner.submit(frames_l, frames_r)
        chunks, keep, skipped_shape = runner.results()
    for shape, count in skipped_shape.items():
        warnings.warn(
            f"skipped {count} frames of size {shape[1]}x{shape[0]}: the model expects "
            f"{expected[1]}x{expected[0]} (recordings from a different camera setup?)",
            DataWarning,
            stacklevel=2,
        )
    if not chunks or not keep.any():
        raise DataError(
            "no usable frames in the recordings (none driven by a person or the expert with a "
            "live command): record some driving first"
        )
    return FrameSet(
        images=np.concatenate(chunks),
        steering=np.asarray(labels["steering"], np.float32)[keep],
        throttle=np.asarray(labels["throttle"], np.float32)[keep],
        session=np.asarray(labels["session"], np.int32)[keep],
        sessions=list(names),
        image_hw=expected[:2],
        perturbation=np.asarray(labels["offset"], np.float32)[keep],
        kind=np.asarray(labels["kind"], np.int8)[keep],
        skipped_learner=skipped["learner"],
        skipped_stale=skipped["stale"],
    )


def _kind(source: str, after_learner: bool) -> int:
    """A kept frame's kind: the model drove it (in-process, labelled by the expert); someone
    took the wheel from the model (``after_learner``: a marked take-over, or any frame someone
    else drove in a session the model drove); or a demonstration."""
    if source == "model":
        return RELABELLED
    return TAKEOVER if after_learner else DEMONSTRATION


def concat_frames(parts: list[FrameSet]) -> FrameSet:
    """One FrameSet from several, in order; session indices renumbered."""
    sessions, offset, ids = [], 0, []
    for p in parts:
        ids.append(p.session + offset)
        sessions += p.sessions
        offset += len(p.sessions)
    return FrameSet(
        images=np.concatenate([p.images for p in parts]),
        steering=np.concatenate([p.steering for p in parts]),
        throttle=np.concatenate([p.throttle for p in parts]),
        session=np.concatenate(ids),
        sessions=sessions,
        image_hw=parts[0].image_hw,
        dropped_reverse=sum(p.dropped_reverse for p in parts),
        perturbation=np.concatenate([p.perturbation for p in parts]),
        kind=np.concatenate([p.kind for p in parts]),
        skipped_learner=sum(p.skipped_learner for p in parts),
        skipped_stale=sum(p.skipped_stale for p in parts),
    )


def head(frames: FrameSet, n: int) -> FrameSet:
    """The first ``n`` frames (and only the sessions they use)."""
    if n >= len(frames):
        return frames
    used = int(frames.session[:n].max()) + 1 if n else 0
    return frames.rows(slice(0, n), sessions=frames.sessions[:used])


def relabel(frames: FrameSet, cfg: DataConfig) -> FrameSet:
    """Label each frame with the command `latency_frames` later in its session; drop reverse."""
    keep = np.ones(len(frames), bool)
    steering, throttle = frames.steering.copy(), frames.throttle.copy()
    k = cfg.latency_frames
    for sid in range(len(frames.sessions)):
        idx = np.flatnonzero(frames.session == sid)
        if k:
            steering[idx[:-k]] = frames.steering[idx[k:]]
            throttle[idx[:-k]] = frames.throttle[idx[k:]]
            keep[idx[-k:]] = False
    reverse = throttle < 0 if cfg.drop_reverse else np.zeros(len(frames), bool)
    keep &= ~reverse
    return frames.rows(
        keep, steering=steering, throttle=throttle, dropped_reverse=int(reverse.sum())
    )


def split(frames: FrameSet, cfg: DataConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: whole sessions when there are enough, else blocks."""
    cfg = cfg or DataConfig()
    sizes = np.bincount(frames.session, minlength=len(frames.sessions))
    target = cfg.val_fraction * len(frames)
    if len(frames.sessions) >= 3 and sizes.max() <= 2 * target:
        # every k-th session (by name) until the share is reached: deterministic, spread out
        order = sorted(range(len(sizes)), key=lambda i: frames.sessions[i])
        step = max(1, round(1 / cfg.val_fraction))
        val_sessions, total = [], 0
        for i in order[step // 2 :: step] + order:
            if total >= target:
                break
            if i not in val_sessions and sizes[i]:
                val_sessions.append(i)
                total += sizes[i]
        is_val = np.isin(frames.session, val_sessions)
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)
    return _block_split(frames, cfg)


def _block_split(frames: FrameSet, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    period = max(2, round(1 / cfg.val_fraction))
    role = np.zeros(len(frames), np.int8)  # 0 train, 1 val, 2 guard (unused)
    for sid in range(len(frames.sessions)):
        idx = np.flatnonzero(frames.session == sid)
        # a short session still gets a couple of validation blocks
        size = max(10, min(cfg.block_frames, len(idx) // (2 * period)))
        guard_frames = min(cfg.guard_frames, size // 2)
        block = np.arange(len(idx)) // size
        val = block % period == period // 2
        role[idx[val]] = 1
        edges = np.flatnonzero(np.diff(val.astype(np.int8)))  # last index before a change
        for e in edges:
            lo, hi = max(0, e + 1 - guard_frames), min(len(idx), e + 1 + guard_frames)
            guard = np.arange(lo, hi)
            role[idx[guard[~val[guard]]]] = 2
    return np.flatnonzero(role == 0), np.flatnonzero(role == 1)


def balance_weights(steering: np.ndarray, cfg: DataConfig | None = None) -> np.ndarray:
    """Sampling weights that flatten the steering histogram (capped), mean 1."""
    cfg = cfg or DataConfig()
    bins = np.linspace(-1.0, 1.0, cfg.balance_bins + 1)
    which = np.clip(np.digitize(steering, bins) - 1, 0, cfg.balance_bins - 1)
    counts = np.bincount(which, minlength=cfg.balance_bins).astype(np.float64)
    weight = np.where(counts > 0, counts.max() / np.maximum(counts, 1), 0.0)
    weight = np.minimum(weight, cfg.balance_max_weight)[which]
    return (weight / weight.mean()).astype(np.float64)


def check_degenerate(frames: FrameSet) -> list[str]:
    """Plain-language reasons the data look degenerate (also issued as DataWarning)."""
    problems = []
    minutes = len(frames) / 30.0 / 60.0
    if len(frames) < MIN_FRAMES:
        problems.append(
            f"only {len(frames)} frames (~{minutes:.1f} min at 30 Hz): record at least "
            f"{MIN_FRAMES} (~2 min), ideally 20 min, of driving"
        )
    steer = frames.steering
    if len(steer) and (steer.std() < 0.05 or np.mean(np.abs(steer) < SIGN_DEADBAND) > 0.9):
        problems.append(
            f"steering is nearly constant (std {steer.std():.3f}, "
            f"{100 * np.mean(np.abs(steer) < SIGN_DEADBAND):.0f}% near zero): the model will "
            "only learn to go straight; record driving that steers around obstacles"
        )
    for text in problems:
        warnings.warn(text, DataWarning, stacklevel=2)
    return problems


def describe(frames: FrameSet, train_idx: np.ndarray, val_idx: np.ndarray) -> dict[str, Any]:
    """A JSON-ready summary of the data a model was trained on (stored in the checkpoint)."""
    steer = frames.steering
    return {
        "frames": len(frames),
        "minutes": round(len(frames) / 30.0 / 60.0, 2),
        "sessions": list(frames.sessions),
        "train_frames": len(train_idx),
        "val_frames": len(val_idx),
        "dropped_reverse_frames": frames.dropped_reverse,
        "image_hw": list(frames.image_hw),
        "steering_std": round(float(steer.std()), 4) if len(steer) else 0.0,
        "steering_abs_mean": round(float(np.abs(steer).mean()), 4) if len(steer) else 0.0,
        "cruise_throttle": round(cruise_throttle(frames), 4),
        "budget": data_budget(frames),
    }


def cruise_throttle(frames: FrameSet) -> float:
    """The demonstrations' cruising throttle: the 90th percentile of forward throttle."""
    forward = frames.throttle[frames.throttle > 0]
    return float(np.percentile(forward, 90)) if len(forward) else 0.5


def sign_accuracy(pred: np.ndarray, label: np.ndarray) -> tuple[int, int]:
    """(right, counted): frames with |label| >= SIGN_DEADBAND whose predicted sign matches."""
    counted = np.abs(label) >= SIGN_DEADBAND
    right = np.sign(pred[counted]) == np.sign(label[counted])
    return int(right.sum()), int(counted.sum())


def save_frames(frames: FrameSet, path: str | Path) -> Path:
    """Cache prepared frames (an uncompressed .npz: fast to write and to read back)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        images=frames.images,
        steering=frames.steering,
        throttle=frames.throttle,
        session=frames.session,
        sessions=np.asarray(frames.sessions),
        image_hw=np.asarray(frames.image_hw),
        dropped_reverse=np.asarray(frames.dropped_reverse),
        perturbation=frames.perturbation,
        kind=frames.kind,
        skipped=np.asarray([frames.skipped_learner, frames.skipped_stale]),
    )
    tmp.replace(path)
    return path


def load_frames(path: str | Path, model_cfg: SteeringModelConfig) -> FrameSet:
    """Read a cache written by `save_frames`; DataError if it does not fit this model."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            frames = FrameSet(
                images=z["images"],
                steering=z["steering"],
                throttle=z["throttle"],
                session=z["session"],
                sessions=[str(s) for s in z["sessions"]],
                image_hw=(int(z["image_hw"][0]), int(z["image_hw"][1])),
                dropped_reverse=int(z["dropped_reverse"]),
                # caches written before the data budget: all demonstrations, none perturbed
                perturbation=z.get("perturbation", None),
                kind=z.get("kind", None),
            )
            if "skipped" in z:
                frames.skipped_learner, frames.skipped_stale = (int(v) for v in z["skipped"])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"frame cache {path} is unreadable ({exc}): delete it to rebuild") from None
    h, w = model_cfg.input_hw
    if frames.images.shape[1:] != (h, w, 6):
        raise DataError(
            f"frame cache {path} holds {frames.images.shape[1:]} images, the model takes "
            f"{(h, w, 6)}: delete the cache or use the same crop and downsample"
        )
    return frames
