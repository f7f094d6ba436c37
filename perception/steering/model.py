"""The steering CNN: both eyes in, steering (and throttle) out, preprocessing inside.

The network sees the stereo pair as 6 channels (DAVE's early fusion), so it can use disparity
as well as appearance. Everything between the camera's RGB uint8 frames and the first
convolution lives in the model: crop (sky and bonnet), integer downsampling, rounding back to
uint8 (the dataset caches exactly that), RGB -> YUV and normalisation. Training and inference
therefore cannot disagree on units, colour order or scaling.

Two sizes: ``dave`` (~76k parameters, DAVE 2005) and ``pilotnet`` (~222k, PilotNet 2016).
``python -m perception.steering.model`` prints their parameter counts and MACs.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rover.config import dataclass_from_dict
from rover.errors import ConfigError


@dataclass(frozen=True)
class ArchSpec:
    """Conv layers as (channels, kernel, stride), then the hidden fully connected widths."""

    convs: tuple[tuple[int, int, int], ...]
    fcs: tuple[int, ...]


ARCHS: dict[str, ArchSpec] = {
    "dave": ArchSpec(
        convs=((16, 5, 2), (24, 5, 2), (32, 5, 2), (40, 3, 1), (32, 3, 1)), fcs=(50, 10)
    ),
    "pilotnet": ArchSpec(
        convs=((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)), fcs=(100, 50, 10)
    ),
}
NORMALISATIONS = ("image", "fixed")

# BT.601 RGB -> YUV (PilotNet's colour space); U and V are centred on zero.
_RGB_TO_YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]]
)
_STD_FLOOR = 0.05  # per-image std floor (0..1 units): a flat image is not amplified into noise


@dataclass(frozen=True)
class SteeringModelConfig:
    """Architecture and preprocessing; stored in every checkpoint."""

    arch: str = "pilotnet"
    image_height_px: int = 240  # the camera frames the model expects
    image_width_px: int = 320
    crop_top_px: int = 72  # sky and tree tops: nothing to steer around up there
    crop_bottom_px: int = 40  # the ground right under the bumper
    downsample: int = 2  # integer average pooling: exact, cheap, exports everywhere
    predict_throttle: bool = True
    normalise: str = "image"  # "image": per-image mean/std per channel; "fixed": /255 only
    dropout: float = 0.2
    # stereo matching over d = 0, step, 2*step, ... prepared pixels gives two extra input
    # channels (disparity, matching cost): obstacle distance regardless of colour or texture
    disparities: int = 0
    disparity_step_px: int = 2
    # > 0: steering is classified into this many bins over [-1, 1] and read back as the mode.
    # Around an obstacle dead ahead, demonstrations pass left or right: a regression averages
    # the two into "straight on"; the mode picks one. 0: plain regression (PilotNet).
    steering_bins: int = 21

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"model arch = {self.arch!r}: use one of {', '.join(ARCHS)}")
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(f"model normalise = {self.normalise!r}: use 'image' or 'fixed'")
        rows = self.image_height_px - self.crop_top_px - self.crop_bottom_px
        if self.downsample < 1 or rows < 16 * self.downsample or self.image_width_px < 32:
            raise ConfigError(
                f"model crop {self.crop_top_px}+{self.crop_bottom_px} px of "
                f"{self.image_height_px} rows leaves too little image: crop less"
            )
        if rows % self.downsample or self.image_width_px % self.downsample:
            raise ConfigError(
                f"model: cropped size {self.image_width_px}x{rows} is not divisible by "
                f"downsample = {self.downsample}: adjust the crop"
            )
        h, w = self.input_hw
        for _, kernel, stride in ARCHS[self.arch].convs:
            h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
        if h < 1 or w < 1:
            raise ConfigError(
                f"model: {self.input_hw[1]}x{self.input_hw[0]} per eye after crop and "
                f"downsample is too small for {self.arch}: crop less or downsample less"
            )
        if self.disparities < 0 or self.disparity_step_px < 1:
            raise ConfigError("model: disparities >= 0 and disparity_step_px >= 1")
        if self.steering_bins and not 3 <= self.steering_bins <= 101:
            raise ConfigError(f"model steering_bins = {self.steering_bins}: use 0 or 3..101")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model dropout = {self.dropout}: use [0, 1)")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SteeringModelConfig:
        """Build from a dict (a checkpoint's or a user's); unknown keys raise ConfigError."""
        return dataclass_from_dict(cls, raw, "model")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (ints, strs, floats, bools): safe for `torch.load(weights_only=True)`."""
        return dataclasses.asdict(self)

    @property
    def input_hw(self) -> tuple[int, int]:
        """Per-eye size the convolutions see, after crop and downsampling."""
        rows = self.image_height_px - self.crop_top_px - self.crop_bottom_px
        return rows // self.downsample, self.image_width_px // self.downsample

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the model's outputs, in order."""
        return ("steering", "throttle") if self.predict_throttle else ("steering",)


def prepare(left: torch.Tensor, right: torch.Tensor, cfg: SteeringModelConfig) -> torch.Tensor:
    """Camera frames (N, H, W, 3) uint8 per eye -> (N, 6, h, w) uint8: crop, pool, round.

    The dataset caches this output and the model recomputes it at inference: the same code.
    Sums of whole pixel values in float32 are exact, so the rounding (half up) is exact too;
    float keeps the exported graph free of int16, which TensorRT does not take.
    """
    rows = slice(cfg.crop_top_px, cfg.image_height_px - cfg.crop_bottom_px)
    # eyes stacked on a new axis: whole cropped frames copied as blocks, no RGB interleaving
    x = torch.stack([left[:, rows], right[:, rows]], dim=1)  # (N, 2, h, W, 3)
    n, eyes, h, w, c = x.shape
    k = cfg.downsample
    if k > 1:  # rows first, then columns: each sum reads whole contiguous rows
        x = x.float().reshape(n, eyes, h // k, k, w * c)
        x = functools.reduce(operator.add, [x[:, :, :, i] for i in range(k)])
        x = x.reshape(n, eyes, h // k, w // k, k, c)
        x = functools.reduce(operator.add, [x[..., j, :] for j in range(k)])
        x = torch.floor((x + (k * k // 2)) / (k * k)).to(torch.uint8)
    # (N, 6, h, w) contiguous: the layout `SteeringNet.normalise` reads without another copy
    return x.permute(0, 1, 4, 2, 3).reshape(n, eyes * c, h // k, w // k)


class SteeringNet(nn.Module):
    """Stereo steering CNN. ``forward(left, right)`` takes raw uint8 frames (N, H, W, 3)."""

    def __init__(self, cfg: SteeringModelConfig):
        super().__init__()
        self.cfg = cfg
        spec = ARCHS[cfg.arch]
        colour = torch.zeros(6, 6)
        colour[:3, :3] = colour[3:, 3:] = _RGB_TO_YUV / 255.0
        self.register_buffer("colour", colour, persistent=False)
        offset = torch.tensor([0.5, 0.0, 0.0, 0.5, 0.0, 0.0]).reshape(1, 6, 1)
        self.register_buffer("offset", offset, persistent=False)  # Y to [-0.5, 0.5]
        layers: list[nn.Module] = []
        channels = channels_in(cfg)
        for out, kernel, stride in spec.convs:
            # no BatchNorm: on a 2-core CPU it cost ~18% of training throughput, and with
            # per-image input normalisation and AdamW this depth trains well without it
            layers += [nn.Conv2d(channels, out, kernel, stride), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        h, w = cfg.input_hw
        with torch.no_grad():
            flat = self.features(torch.zeros(1, channels_in(cfg), h, w)).numel()
        head: list[nn.Module] = []
        for width in spec.fcs:
            head += [nn.Linear(flat, width), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            flat = width
        head.append(nn.Linear(flat, raw_outputs(cfg)))
        self.head = nn.Sequential(*head)
        bins = max(cfg.steering_bins, 1)
        self.register_buffer("bin_centres", torch.linspace(-1, 1, bins), persistent=False)

    def forward_prepared(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared uint8 (N, 6, h, w) -> outputs (N, len(cfg.outputs)) in [-1, 1] units."""
        return self.decode(self.forward_raw(x))

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """What training fits: regression outputs, or steering-bin logits then throttle.

        Preprocessing runs in fp32; the convolutions and the head in their weights' dtype
        (fp32 in training, bf16 or fp16 where the predictor reduced them).
        """
        y = self.normalise(x).to(self.head[-1].weight.dtype)
        return self.head(self.features(y).flatten(1))

    def decode(
        self, raw: torch.Tensor, previous: torch.Tensor | None = None, commitment: float = 0.5
    ) -> torch.Tensor:
        """Raw head outputs -> (steering[, throttle]); with bins, the mode's local mean.

        ``previous`` (N,) steering of the last frame: modes near it are preferred (a Gaussian
        prior of width ``commitment``), so a choice to pass left is not undone by one frame
        that slightly favours right. Without it the plain mode is read.
        """
        bins = self.cfg.steering_bins
        if not bins:
            return raw.float()
        prob = torch.softmax(raw[:, :bins].float(), dim=1)
        score = prob
        if previous is not None:
            near = (self.bin_centres[None, :] - previous.float()[:, None]) / commitment
            score = prob * torch.exp(-0.5 * near * near)
        best = score.argmax(dim=1, keepdim=True)
        window = (best + torch.arange(-1, 2, device=raw.device)).clamp(0, bins - 1)
        weight = prob.gather(1, window)
        steering = (weight * self.bin_centres[window]).sum(1, keepdim=True) / weight.sum(
            1, keepdim=True
        )
        return torch.cat([steering, raw[:, bins:].float()], dim=1)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 RGB (N, 6, h, w) -> YUV per eye, normalised; channels_last for the convs."""
        n, c, h, w = x.shape
        # (6, 6) @ (N, 6, h*w): contiguous rows make the matmul and reductions fast on CPU
        y = self.colour @ x.contiguous().reshape(n, c, h * w).to(self.colour.dtype)
        if self.cfg.normalise == "image":
            mean = y.mean(dim=2, keepdim=True)
            var = (y * y).mean(dim=2, keepdim=True) - mean * mean
            y = (y - mean) * var.clamp_min(_STD_FLOOR**2).rsqrt()
        else:
            y = y - self.offset
        y = y.reshape(n, c, h, w)
        if self.cfg.disparities:
            y = torch.cat([y, self.matching_costs(y[:, 0], y[:, 3])], dim=1)
        return y.contiguous(memory_format=torch.channels_last)

    def matching_costs(self, left_y: torch.Tensor, right_y: torch.Tensor) -> torch.Tensor:
        """(N, 2, h, w): disparity (soft arg-min over the matching costs, 0..1 of the range)
        and its matching cost. Cost: 3x3-averaged |left(x) - right(x - d)|."""
        costs = []
        w = left_y.shape[-1]
        for i in range(self.cfg.disparities):
            d = i * self.cfg.disparity_step_px
            diff = (left_y[..., d:] - right_y[..., : w - d]).abs()
            costs.append(F.pad(diff, (d, 0), mode="replicate") if d else diff)
        cost = F.avg_pool2d(torch.stack(costs, dim=1), 3, stride=1, padding=1)
        weight = torch.softmax(-4.0 * cost, dim=1)
        levels = torch.linspace(0.0, 1.0, self.cfg.disparities, dtype=cost.dtype)
        disparity = (weight * levels.to(cost.device).reshape(1, -1, 1, 1)).sum(1, keepdim=True)
        return torch.cat([disparity, cost.amin(dim=1, keepdim=True)], dim=1)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Raw camera frames (N, H, W, 3) uint8 per eye -> outputs (N, len(cfg.outputs))."""
        return self.forward_prepared(prepare(left, right, self.cfg))


def raw_outputs(cfg: SteeringModelConfig) -> int:
    """Width of the head's last layer."""
    return len(cfg.outputs) + (cfg.steering_bins - 1 if cfg.steering_bins else 0)


def soft_bin_targets(steering: torch.Tensor, bins: int) -> torch.Tensor:
    """Gaussian class targets (one bin wide) around each steering label: (N, bins)."""
    centres = torch.linspace(-1, 1, bins, device=steering.device)
    width = 2.0 / (bins - 1)
    logits = -0.5 * ((steering[:, None] - centres[None, :]) / width) ** 2
    return torch.softmax(logits, dim=1)


def channels_in(cfg: SteeringModelConfig) -> int:
    """Channels the first convolution sees: YUV per eye, plus the matching costs."""
    return 6 + (2 if cfg.disparities else 0)


def build_model(cfg: SteeringModelConfig | None = None) -> SteeringNet:
    """A fresh model in channels_last layout (faster convolutions on CPU)."""
    model = SteeringNet(cfg or SteeringModelConfig())
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: SteeringNet) -> int:
    """Multiply-accumulates of one forward pass on one stereo pair (convs and linears)."""
    total = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0]
            total += output.numel() * per_out * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    cfg = model.cfg
    frame = torch.zeros(1, cfg.image_height_px, cfg.image_width_px, 3, dtype=torch.uint8)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(frame, frame)
    model.train(was_training)
    for h in handles:
        h.remove()
    return total


def summary_rows(cfg: SteeringModelConfig | None = None) -> list[dict[str, Any]]:
    """Parameters and MACs of every architecture at this preprocessing."""
    base = cfg or SteeringModelConfig()
    rows = []
    for arch in ARCHS:
        model = build_model(dataclasses.replace(base, arch=arch))
        h, w = model.cfg.input_hw
        rows.append(
            {
                "arch": arch,
                "params": count_parameters(model),
                "macs": count_macs(model),
                "input": f"2 eyes x 3 x {h} x {w}",
            }
        )
    return rows


def summary_text(cfg: SteeringModelConfig | None = None) -> str:
    """A small table of the architectures, for --help and the summary command."""
    lines = [f"{'arch':<10}{'params':>10}{'MACs':>14}  input"]
    for row in summary_rows(cfg):
        lines.append(
            f"{row['arch']:<10}{row['params']:>10,}{row['macs'] / 1e6:>11.1f} M  {row['input']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary_text())
