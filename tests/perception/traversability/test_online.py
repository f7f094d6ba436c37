"""The online head: it adapts to a new terrain within seconds, and can be switched off."""

from __future__ import annotations

import numpy as np
import torch

from perception.traversability.model import SegmenterNet
from perception.traversability.online import OnlineConfig, OnlineHead


def synthetic_counts(feats: torch.Tensor) -> np.ndarray:
    """Labels that follow feature 0's sign: what a new terrain's stereo labels would teach."""
    sign = feats[0, 0].numpy() > 0
    counts = np.zeros((3, *sign.shape), np.uint8)
    counts[1][sign] = 16
    counts[0][~sign] = 16
    return counts


def test_online_head_learns_a_new_terrain_within_a_few_seconds_of_frames(tiny_segmenter):
    torch.manual_seed(0)
    head = SegmenterNet(tiny_segmenter).head
    online = OnlineHead(head, tiny_segmenter.features, OnlineConfig(seed=1))

    def accuracy() -> float:
        feats = torch.randn(1, tiny_segmenter.features, 24, 32)
        pred = online.predict(feats).argmax(1)[0]
        return float((pred == (feats[0, 0].numpy() > 0)).mean())

    start = accuracy()
    for _ in range(60):  # two seconds at 30 frames per second
        feats = torch.randn(1, tiny_segmenter.features, 24, 32)
        taken = online.update(feats, synthetic_counts(feats))
        assert taken <= online.cfg.new_per_frame
    assert accuracy() > max(0.9, start + 0.2)
    assert online.buffer.count <= online.cfg.replay_size
    online.reset()
    assert online.updates == 0 and abs(accuracy() - start) < 0.1


def test_online_adaptation_can_be_switched_off(tiny_segmenter):
    head = SegmenterNet(tiny_segmenter).head
    online = OnlineHead(head, tiny_segmenter.features, OnlineConfig(enabled=False))
    feats = torch.randn(1, tiny_segmenter.features, 24, 32)
    before = online.predict(feats)
    for _ in range(5):
        assert online.update(feats, synthetic_counts(feats)) == 0
    np.testing.assert_array_equal(online.predict(feats), before)
