"""The traversability segmenter: a small fully convolutional network over the left image.

Input: the left image at half size (160x120 for the 320x240 rig) plus one channel that says how
far each row lies below the horizon of the fitted ground plane: on flat ground that row offset
*is* the distance, so the network sees appearance and distance together (LAGR normalised its
windows by distance for the same reason). A U-shaped encoder sees ~50 px of context at 1/8
scale; the decoder returns a feature map at half the input size (80x60). A 1x1 head turns
features into three classes (ground, obstacle, distant); the online learner adapts a copy of
that head, seeing each cell's mean colour besides the features.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rover.config import dataclass_from_dict
from rover.errors import ConfigError, DataError

CLASSES = ("ground", "obstacle", "distant")
GROUND_CLASS, OBSTACLE_CLASS, DISTANT_CLASS = 0, 1, 2
FORMAT = "rover-traversability-1"
_MEAN = torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1)
_STD = torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1)


@dataclass(frozen=True)
class SegmenterConfig:
    """Network size and input scale."""

    input_width_px: int = 160
    input_height_px: int = 120
    width1: int = 16
    width2: int = 24
    width3: int = 32
    features: int = 24
    hidden: int = 32  # head: features -> hidden -> classes, all 1x1

    @classmethod
    def from_dict(cls, raw: dict) -> SegmenterConfig:
        """Build from a table; unknown keys raise ConfigError."""
        cfg = dataclass_from_dict(cls, raw, "traversability.segmenter")
        if cfg.input_width_px % 8 or cfg.input_height_px % 8:
            raise ConfigError("[traversability.segmenter] input size must be a multiple of 8")
        return cfg


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Head(nn.Module):
    """Per-pixel classifier on the feature map (1x1 convolutions)."""

    def __init__(self, features: int, hidden: int, classes: int = len(CLASSES)):
        super().__init__()
        self.hidden = nn.Conv2d(features, hidden, 1)
        self.out = nn.Conv2d(hidden, classes, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(feats)))


class SegmenterNet(nn.Module):
    """Encoder-decoder to a feature map at 1/2 of the input, plus the class head."""

    def __init__(self, cfg: SegmenterConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SegmenterConfig()
        self.enc1 = _conv(4, cfg.width1, 2)
        self.enc2 = nn.Sequential(_conv(cfg.width1, cfg.width2, 2), _conv(cfg.width2, cfg.width2))
        self.enc3 = nn.Sequential(
            _conv(cfg.width2, cfg.width3, 2), _conv(cfg.width3, cfg.width3, dilation=2)
        )
        self.dec2 = nn.Sequential(
            nn.Conv2d(cfg.width3 + cfg.width2, cfg.features, 1, bias=False),
            nn.BatchNorm2d(cfg.features),
            nn.ReLU(inplace=True),
        )
        self.dec1 = _conv(cfg.features + cfg.width1, cfg.features)
        self.head = Head(cfg.features, cfg.hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, features, H/2, W/2) from (N, 4, H, W) normalised input."""
        a = self.enc1(x)
        b = self.enc2(a)
        c = self.enc3(b)
        c = F.interpolate(c, size=b.shape[-2:], mode="bilinear", align_corners=False)
        d = self.dec2(torch.cat([c, b], 1))
        d = F.interpolate(d, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return self.dec1(torch.cat([d, a], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def fused_for_inference(net: SegmenterNet) -> SegmenterNet:
    """A copy with every BatchNorm folded into its convolution (eval mode): same outputs,
    fewer operations per frame."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(net).eval()
    for block in out.modules():
        if isinstance(block, nn.Sequential) and len(block) == 3:
            conv, bn = block[0], block[1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                block[0], block[1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return out


ONLINE_EXTRA = 4  # the online head also sees each cell's mean input: colour and distance


def online_inputs(x: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """(N, features + 4, h, w): the network's features plus each cell's mean input channels.
    New textures differ most in colour, which the frozen features may have learned to ignore;
    LAGR's online classifier likewise saw colour next to its learned features."""
    pooled = F.adaptive_avg_pool2d(x, feats.shape[-2:])
    return torch.cat([feats, pooled], 1)


def horizon_rows(plane_abc: tuple[float, float, float], geom, width_px: int) -> np.ndarray:
    """Row of the horizon (ground disparity 0) in each of ``width_px`` columns of the input."""
    a, b, c = plane_abc
    cols = (np.arange(width_px) + 0.5) * (geom.width_px / width_px) - 0.5
    return geom.cy_px - (c + a * (cols - geom.cx_px)) / b


def make_input(
    left: np.ndarray, plane_abc: tuple[float, float, float], geom, cfg: SegmenterConfig
) -> torch.Tensor:
    """(1, 4, h, w) float tensor: normalised RGB at the input size and the horizon channel."""
    import cv2

    w, h = cfg.input_width_px, cfg.input_height_px
    small = left
    if left.shape[:2] != (h, w):
        small = cv2.resize(left, (w, h), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(small).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    rgb = (rgb - _MEAN) / _STD
    scale = h / geom.height_px
    rows_full = (np.arange(h) + 0.5) / scale - 0.5
    horizon = horizon_rows(plane_abc, geom, w)
    # rows below the horizon, in units of 1/8 image height, squashed: near rows differ little
    offset = (rows_full[:, None] - horizon[None, :]) / (geom.height_px / 8)
    chan = np.tanh(offset).astype(np.float32)
    return torch.cat([rgb, torch.from_numpy(chan)[None, None]], 1)


def save_model(
    path: str | Path,
    net: SegmenterNet,
    geom,
    metrics: dict[str, Any] | None = None,
    replay: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Path:
    """Write weights, config, geometry, validation metrics and (optionally) a reservoir of
    training features and classes that the online head keeps replaying."""
    path = Path(path)
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: folder {path.parent} does not exist; create it")
    payload = {
        "format": FORMAT,
        "config": asdict(net.cfg),
        "geometry": asdict(geom),
        "metrics": metrics or {},
        "state_dict": net.state_dict(),
    }
    if replay is not None:
        payload["replay_x"] = replay[0].to(torch.float16)
        payload["replay_y"] = replay[1].to(torch.uint8)
    torch.save(payload, path)
    return path


def load_model(path: str | Path) -> tuple[SegmenterNet, dict[str, Any]]:
    """Load a segmenter saved by `save_model` (weights_only), in eval mode; returns (net, info)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"traversability model {path} not found: train one with "
            "`rover train traversability REC... --out MODEL`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or truncated file
        raise DataError(f"{path} is not a traversability model ({exc}); retrain it") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path} is not a {FORMAT} model file: retrain it with this version")
    net = SegmenterNet(SegmenterConfig.from_dict(payload["config"]))
    net.load_state_dict(payload["state_dict"])
    net.eval()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    info = {"geometry": payload["geometry"], "metrics": payload["metrics"], "sha256": digest}
    info["replay"] = None
    if "replay_x" in payload:
        info["replay"] = (payload["replay_x"].float(), payload["replay_y"].long())
    return net, info
