"""Online adaptation: a copy of the segmenter's head keeps learning during the run.

Each frame, up to ``new_per_frame`` feature cells with confident near-range stereo labels go
into a replay buffer (a ring, class-balanced on the way in); then ``steps`` small SGD steps on
a batch drawn from the buffer adapt the head, pulled gently back toward the offline weights so a
few odd frames cannot ruin it. The backbone is frozen: time per frame stays bounded (well under
a millisecond) and a new terrain is learned within a few seconds of frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rover.config import dataclass_from_dict
from rover.errors import ConfigError


@dataclass(frozen=True)
class OnlineConfig:
    """Replay size, samples per frame, steps per frame, learning rate, pull to offline."""

    enabled: bool = True
    replay_size: int = 4096
    new_per_frame: int = 192
    batch_size: int = 256
    steps: int = 2
    lr: float = 0.02
    anchor: float = 1e-3  # L2 pull toward the offline head
    prior_share: float = 0.5  # of each batch from the model's training reservoir, if it has one
    min_labelled: int = 10  # of 16 pixels in a cell, to take its label
    seed: int = 0

    @classmethod
    def from_dict(cls, raw: dict) -> OnlineConfig:
        """Build from a table; unknown keys raise ConfigError."""
        cfg = dataclass_from_dict(cls, raw, "traversability.online")
        if cfg.replay_size < cfg.batch_size or cfg.steps < 0 or cfg.lr <= 0:
            raise ConfigError(
                "[traversability.online] need replay_size >= batch_size, steps >= 0, lr > 0"
            )
        return cfg


class ReplayBuffer:
    """A fixed-size ring of (input vector, class) pairs."""

    def __init__(self, size: int, features: int):
        self.x = np.zeros((size, features), np.float32)
        self.y = np.zeros(size, np.int64)
        self.size, self.count, self.head = size, 0, 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        n = min(len(x), self.size)
        idx = (self.head + np.arange(n)) % self.size
        self.x[idx], self.y[idx] = x[:n], y[:n]
        self.head = int((self.head + n) % self.size)
        self.count = min(self.size, self.count + n)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, self.count, min(n, self.count))
        return self.x[idx], self.y[idx]


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


class OnlineHead:
    """Adapts a copy of ``head`` from per-frame stereo labels; ``reset`` returns to offline.

    The head is two 1x1 layers; its gradient is written out by hand on (batch, inputs)
    matrices. Its inputs are the network's features plus each cell's mean colour and distance
    channel (`model.online_inputs`); the weights of those extra inputs start at zero.
    """

    def __init__(
        self,
        head,
        features: int,
        cfg: OnlineConfig | None = None,
        prior: tuple | None = None,
    ):
        self.cfg = cfg or OnlineConfig()
        self.features = features
        self.prior = (
            None if prior is None else (_numpy(prior[0]).astype(np.float32), _numpy(prior[1]))
        )
        w1 = _numpy(head.hidden.weight)[:, :, 0, 0]
        extra = np.zeros((w1.shape[0], features - w1.shape[1]), np.float32)
        self.offline = [
            np.concatenate([w1, extra], 1).astype(np.float32),
            _numpy(head.hidden.bias).astype(np.float32),
            _numpy(head.out.weight)[:, :, 0, 0].astype(np.float32),
            _numpy(head.out.bias).astype(np.float32),
        ]
        self.rng = np.random.default_rng(self.cfg.seed)
        self.reset()

    def reset(self) -> None:
        """Forget everything learned online."""
        self.params = [p.copy() for p in self.offline]
        self.velocity = [np.zeros_like(p) for p in self.offline]
        self.buffer = ReplayBuffer(self.cfg.replay_size, self.features)
        self.updates = 0

    def _pick(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat cell indices and classes of confidently labelled cells, classes balanced."""
        known = counts.sum(0, dtype=np.int32)
        sure = (known >= self.cfg.min_labelled) & (counts.max(0) >= 0.8 * known)
        cells = np.flatnonzero(sure)
        if cells.size == 0:
            return cells, cells
        classes = counts.argmax(0).reshape(-1)[cells]
        present = np.unique(classes)
        share = max(1, self.cfg.new_per_frame // len(present))
        chosen = []
        for c in present:
            pool = cells[classes == c]
            chosen.append(pool if len(pool) <= share else self.rng.choice(pool, share, False))
        picked = np.concatenate(chosen)
        return picked, counts.argmax(0).reshape(-1)[picked]

    def update(self, feats, counts: np.ndarray) -> int:
        """Learn from one frame: ``feats`` (1, C, h, w) online inputs, ``counts`` (3, h, w)
        stereo labels per cell. Returns how many new samples went into the buffer."""
        if not self.cfg.enabled:
            return 0
        cells, classes = self._pick(counts)
        if cells.size:
            flat = _numpy(feats)[0].reshape(self.features, -1)
            self.buffer.add(flat[:, cells].T, classes)
        if self.buffer.count < 32:
            return int(cells.size)
        for _ in range(self.cfg.steps):
            self._sgd_step(*self._batch())
        self.updates += 1
        return int(cells.size)

    def _batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Recent samples, mixed with the training reservoir when the model carries one."""
        n = self.cfg.batch_size
        if self.prior is None or self.cfg.prior_share <= 0:
            return self.buffer.sample(n, self.rng)
        n_prior = int(n * self.cfg.prior_share)
        x, y = self.buffer.sample(n - n_prior, self.rng)
        idx = self.rng.integers(0, len(self.prior[1]), n_prior)
        return np.concatenate([x, self.prior[0][idx]]), np.concatenate([y, self.prior[1][idx]])

    def _sgd_step(self, x: np.ndarray, y: np.ndarray) -> None:
        """One momentum-SGD step of softmax cross-entropy plus the pull to the offline head."""
        w1, b1, w2, b2 = self.params
        pre = x @ w1.T + b1
        hid = np.maximum(pre, 0.0)
        logits = hid @ w2.T + b2
        grad = np.exp(logits - logits.max(1, keepdims=True))
        grad /= grad.sum(1, keepdims=True)
        grad[np.arange(len(y)), y] -= 1.0
        grad /= len(y)
        g_hid = (grad @ w2) * (pre > 0)
        grads = (g_hid.T @ x, g_hid.sum(0), grad.T @ hid, grad.sum(0))
        for p, v, g, p0 in zip(self.params, self.velocity, grads, self.offline, strict=True):
            v *= 0.9
            v += g + self.cfg.anchor * 2.0 * (p - p0)
            p -= self.cfg.lr * v

    def predict(self, feats) -> np.ndarray:
        """Class logits (1, 3, h, w) from the adapted head."""
        import torch  # a whole-map product: torch keeps to its thread budget, BLAS may not

        w1, b1, w2, b2 = (torch.from_numpy(p) for p in self.params)
        x = torch.from_numpy(np.ascontiguousarray(_numpy(feats)))
        _, c, h, w = x.shape
        with torch.inference_mode():
            hid = torch.addmm(b1[:, None], w1, x[0].reshape(c, -1)).clamp_(min=0)
            return torch.addmm(b2[:, None], w2, hid).reshape(1, -1, h, w).numpy()
