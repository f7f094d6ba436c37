"""Frames to training inputs: decode (JPEG bytes from the reader) and crop-and-pool with the
model's own ``prepare``, here or in worker processes, chunk by chunk, in order."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from perception.steering.model import SteeringModelConfig, prepare


class ChunkRunner:
    """Decodes (JPEG bytes) and prepares chunks here or in worker processes, kept in order;
    at most a few chunks per worker in flight."""

    def __init__(self, cfg: SteeringModelConfig, expected: tuple[int, int, int], workers: int):
        self.cfg, self.expected, self.workers = cfg, expected, workers
        self.parts: deque = deque()
        self.done: list[tuple[np.ndarray, np.ndarray, dict]] = []
        self.pool = None

    def __enter__(self) -> ChunkRunner:
        if self.workers > 1:
            from perception.workers import worker_context

            self.pool = ProcessPoolExecutor(self.workers, mp_context=worker_context())
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def submit(self, lefts: list, rights: list) -> None:
        if self.pool is None:
            self.done.append(_prepare_chunk(lefts, rights, self.cfg, self.expected))
            return
        self.parts.append(self.pool.submit(_in_worker, lefts, rights, self.cfg, self.expected))
        while len(self.parts) > 4 * self.workers:
            self.done.append(self.parts.popleft().result())

    def results(self) -> tuple[list[np.ndarray], np.ndarray, dict[tuple, int]]:
        """Prepared chunks, which frames they kept (right size), the sizes skipped."""
        self.done += [part.result() for part in self.parts]
        self.parts.clear()
        shapes: dict[tuple, int] = {}
        for _, _, bad in self.done:
            for shape, count in bad.items():
                shapes[shape] = shapes.get(shape, 0) + count
        chunks = [c for c, ok, _ in self.done if len(c)]
        keep = np.concatenate([ok for _, ok, _ in self.done]) if self.done else np.zeros(0, bool)
        return chunks, keep, shapes


def _prepare_chunk(lefts: list, rights: list, cfg: SteeringModelConfig, expected: tuple):
    """(prepared uint8 frames, which frames were of the expected size, the other sizes)."""
    from rover.recording.reader import decode_jpeg

    lefts = [decode_jpeg(x) if isinstance(x, bytes) else x for x in lefts]
    rights = [decode_jpeg(x) if isinstance(x, bytes) else x for x in rights]
    ok = np.array(
        [a.shape == expected and b.shape == expected for a, b in zip(lefts, rights, strict=True)]
    )
    bad: dict[tuple, int] = {}
    for a, good in zip(lefts, ok, strict=True):
        if not good:
            bad[a.shape] = bad.get(a.shape, 0) + 1
    h, w = cfg.input_hw
    if not ok.any():
        return np.zeros((0, h, w, 6), np.uint8), ok, bad
    left = torch.from_numpy(np.stack([a for a, good in zip(lefts, ok, strict=True) if good]))
    right = torch.from_numpy(np.stack([b for b, good in zip(rights, ok, strict=True) if good]))
    return prepare(left, right, cfg).permute(0, 2, 3, 1).contiguous().numpy(), ok, bad


def _in_worker(lefts: list, rights: list, cfg: SteeringModelConfig, expected: tuple):
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism
    return _prepare_chunk(lefts, rights, cfg, expected)
