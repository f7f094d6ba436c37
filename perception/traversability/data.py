"""Training data for the segmenter: stereo pairs in, images with stereo self-labels out.

Pairs come from recordings (``rover.recording.reader``) or straight from the simulator. Each
pair is labelled by `perception.stereo` (no hand labels, no simulator truth); the labels are
kept as per-block class counts at the segmenter's output resolution, which become soft targets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from perception import stereo
from perception.traversability.model import SegmenterConfig, make_input
from rover.errors import DataError

log = logging.getLogger("perception.traversability")

# stereo label -> segmenter class (unknown has none: it carries no loss)
_CLASS_OF_LABEL = {
    stereo.GROUND: 0,
    stereo.OBSTACLE: 1,
    stereo.DISTANT: 2,
}
TRAIN_SCENARIOS = ("forest", "open", "corridor")


def sim_pairs(
    scenarios: Iterable[str] = TRAIN_SCENARIOS,
    seeds: Iterable[int] = (11, 12),
    steps: int = 600,
    every: int = 4,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stereo pairs along the expert's drives (with recoverable perturbations, so the views
    include close calls), one every ``every`` steps. Seeds must be below the held-out range."""
    from sim.expert import Expert, ExpertConfig
    from sim.scenario import RESERVED_SEED_MIN
    from sim.simulation import Simulation

    for name in scenarios:
        for seed in seeds:
            if seed >= RESERVED_SEED_MIN:
                raise DataError(f"seed {seed} is reserved for held-out evaluation; use a lower one")
            sim = Simulation(name, seed)
            expert = Expert(ExpertConfig(perturb_rate_hz=0.6, noise_steering=0.1, seed=seed))
            for i in range(steps):
                if sim.done:
                    break
                if i % every == 0:
                    left, right, _ = sim.render()
                    yield left, right
                sim.step(*expert.act(sim.observation()))


def recording_pairs(paths: list[str | Path]) -> tuple[Iterator, stereo.StereoGeometry, str]:
    """Pairs from recordings (all sessions under ``paths``), and the geometry to label them
    with: the recordings' metadata when they carry one, else the simulator's defaults."""
    from rover.recording.reader import open_sessions  # mcap and friends: only when reading

    sessions = open_sessions(paths)
    if not sessions:
        raise DataError(f"no recordings found under {', '.join(map(str, paths))}: check the paths")
    geom, source = stereo.StereoGeometry.from_metadata(sessions[0].metadata)
    for s in sessions[1:]:
        if stereo.StereoGeometry.from_metadata(s.metadata)[0] != geom:
            raise DataError(
                f"session {s.name} has a different stereo geometry: train on one rig at a time"
            )

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for session in sessions:
            for sample in session.samples(honour_trims=True, decode=True):
                yield sample.left, sample.right

    return pairs(), geom, source


@dataclass
class LabelledSet:
    """Half-size images, fitted planes and per-block stereo class counts, frame by frame."""

    images: np.ndarray  # (N, h, w, 3) uint8 at the segmenter's input size
    planes: np.ndarray  # (N, 3) float32: disparity plane (a, b, c) of each frame
    counts: np.ndarray  # (N, 3, h/2, w/2) uint8: labelled pixels of each class per block
    geom: stereo.StereoGeometry

    def __len__(self) -> int:
        return len(self.images)

    def split(self, val_fraction: float) -> tuple[LabelledSet, LabelledSet]:
        """Last ``val_fraction`` of the frames for validation (later frames: less overlap)."""
        n_val = max(1, int(round(len(self) * val_fraction))) if len(self) > 1 else 0
        cut = len(self) - n_val
        part = lambda s: LabelledSet(  # noqa: E731
            self.images[s], self.planes[s], self.counts[s], self.geom
        )
        return part(slice(0, cut)), part(slice(cut, None))


def block_counts(labels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(3, h, w) uint8: per output cell, how many pixels stereo labelled each class."""
    h, w = out_hw
    cell = (labels.shape[0] // h) * (labels.shape[1] // w)
    out = np.empty((3, h, w), np.uint8)
    for label, cls in _CLASS_OF_LABEL.items():
        # an area resize of a 0/1 mask is the fraction of the cell: cheap and exact here
        mask = (labels == label).astype(np.float32)
        frac = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
        out[cls] = np.rint(frac * cell)
    return out


def label_pairs(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    labeler: stereo.StereoLabeler,
    cfg: SegmenterConfig,
    limit: int | None = None,
    progress: bool = True,
) -> LabelledSet:
    """Run stereo on every pair and keep what training needs."""
    w, h = cfg.input_width_px, cfg.input_height_px
    images, planes, counts = [], [], []
    bar = tqdm(pairs, desc="stereo labels", unit="pair", disable=not progress, total=limit)
    for left, right in bar:
        frame = labeler.process(left, right)
        p = frame.labels.plane
        images.append(cv2.resize(left, (w, h), interpolation=cv2.INTER_AREA))
        planes.append((p.a, p.b, p.c))
        counts.append(block_counts(frame.labels.labels, (h // 2, w // 2)))
        if limit is not None and len(images) >= limit:
            break
    bar.close()
    if not images:
        raise DataError("no stereo pairs to train on: the recordings hold no frames")
    return LabelledSet(
        np.stack(images), np.asarray(planes, np.float32), np.stack(counts), labeler.geom
    )


def zoom_out(
    img: np.ndarray, counts: np.ndarray, plane, geom, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink the view about its horizon point by ``scale`` < 1: on flat ground that is what
    moving everything 1/scale times farther away looks like (LAGR's distance normalisation,
    run backwards), so near labels teach the far range. The margin it opens is unlabelled."""
    from perception.traversability.model import horizon_rows

    h, w = img.shape[:2]
    hy = float(horizon_rows(tuple(plane), geom, w)[w // 2]) * h / geom.height_px
    cx = (w - 1) / 2.0

    def warp(a: np.ndarray, size: tuple[int, int], centre: tuple[float, float], border: int):
        m = np.float32([[scale, 0, centre[0] * (1 - scale)], [0, scale, centre[1] * (1 - scale)]])
        return cv2.warpAffine(a, m, size, flags=cv2.INTER_AREA, borderMode=border)

    img = warp(img, (w, h), (cx, hy), cv2.BORDER_REFLECT_101)
    ch, cw = counts.shape[1:]
    centre = (cx * cw / w, hy * ch / h)
    shrunk = [warp(c, (cw, ch), centre, cv2.BORDER_CONSTANT) for c in counts]
    return img, np.stack(shrunk)


def batch(
    data: LabelledSet, idx: np.ndarray, cfg: SegmenterConfig, rng: np.random.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs (B, 4, h, w), soft targets (B, 3, h/2, w/2) and per-cell weights (B, h/2, w/2).

    With ``rng`` it augments: colour gains and offsets (unseen textures differ mostly in
    colour and brightness), zooming out about the horizon (far-looking views) and flips.
    """
    xs, ts = [], []
    for i in idx:
        img = data.images[i]
        counts = data.counts[i].astype(np.float32)
        if rng is not None:
            gain = rng.uniform(0.6, 1.4, 3) * rng.uniform(0.7, 1.3)
            shift = rng.uniform(-40, 40, 3)
            img = np.clip(img * gain + shift, 0, 255).astype(np.uint8)
            if rng.random() < 0.4:
                scale = float(rng.uniform(0.4, 0.9))
                img, counts = zoom_out(img, counts, data.planes[i], data.geom, scale)
        x = make_input(img, tuple(data.planes[i]), data.geom, cfg)
        if rng is not None and rng.random() < 0.5:
            x, counts = x.flip(-1), counts[:, :, ::-1].copy()
        xs.append(x)
        ts.append(torch.from_numpy(np.ascontiguousarray(counts)))
    x = torch.cat(xs)
    counts = torch.stack(ts)
    known = counts.sum(1)
    target = counts / known.clamp(min=1).unsqueeze(1)
    weight = known / known.amax().clamp(min=1)
    return x, target, weight
