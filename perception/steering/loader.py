"""Training batches from prepared frames: a dataset view that augments whole batches in the
loader's workers (the frames in shared memory), and a balanced sampler sharded across ranks."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from perception.steering.augment import AugmentConfig, augment_batch

if TYPE_CHECKING:
    from perception.dataset import FrameSet


class SteeringDataset(torch.utils.data.Dataset):
    """Training or validation view of a FrameSet; yields whole batches via ``__getitems__``.

    A batch is ``(images, targets)``: uint8 (B, 6, h, w) channels_last and float32 (B, k)
    (steering, and throttle when ``targets == 2``).
    """

    def __init__(
        self,
        frames: FrameSet,
        indices: np.ndarray,
        augment: AugmentConfig | None = None,
        targets: int = 2,
    ):
        self.frames = frames
        self.indices = np.asarray(indices, np.int64)
        self.augment = augment
        self.targets = targets
        self._rng: np.random.Generator | None = None
        self._shared: torch.Tensor | None = None  # the images in shared memory, once shared

    def share_images(self) -> bool:
        """Keep the images in shared memory, so a loader worker maps them instead of receiving
        a pickled copy (2 GB: ~20 s before the first batch, and a second copy in RAM). False,
        and nothing changes, when /dev/shm has no room for them (a container's default 64 MB:
        ``docker run --shm-size``)."""
        need = self.frames.images.nbytes
        try:
            free = shutil.disk_usage("/dev/shm").free
        except OSError:
            return False
        if free < 2 * need:
            return False
        images = np.ascontiguousarray(self.frames.images)
        self._shared = torch.from_numpy(images).share_memory_()
        return True

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._shared is not None:  # the tensor travels as a shared-memory handle
            state["frames"] = dataclasses.replace(self.frames, images=None)
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = self.__getitems__([i])
        return images[0], targets[0]

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[np.asarray(positions, np.int64)]
        source = self.frames.images if self._shared is None else self._shared.numpy()
        images = source[rows]  # a copy: safe to modify in place
        steering = self.frames.steering[rows].copy()
        if self.augment is not None:
            if self._rng is None:  # per worker: torch seeds each worker differently
                self._rng = np.random.default_rng(torch.initial_seed() % 2**63)
            steering = augment_batch(images, steering, self.augment, self._rng)
        labels = [steering, self.frames.throttle[rows]][: self.targets]
        x = torch.from_numpy(images).permute(0, 3, 1, 2)  # channels_last strides
        return x, torch.from_numpy(np.stack(labels, axis=1).astype(np.float32))


class BalancedSampler(torch.utils.data.Sampler[int]):
    """Draws positions with replacement by weight; shards them across DDP ranks.

    Every rank draws the same sequence (same seed and epoch) and keeps every world-th item, so
    ranks see disjoint draws without talking to each other.
    """

    def __init__(
        self,
        weights: np.ndarray,
        num_samples: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.num_samples = num_samples - num_samples % world_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a different sequence each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples // self.world_size

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        # torch.multinomial takes at most 2^24 categories: fine for hours of 30 Hz data
        drawn = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g)
        return iter(drawn[self.rank :: self.world_size].tolist())
