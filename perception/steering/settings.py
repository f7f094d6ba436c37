"""The [steering] section: where and how the steering node runs its model (no torch, no bus).

It lives beside the model so that perception (device and precision picking in
`perception.infer`) and the node read the same names, and loading a robot config imports
neither torch nor ZeroMQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rover.config import dataclass_from_dict
from rover.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class SteeringNodeConfig:
    """[steering] section: where and how the steering node runs its model."""

    device: str = "auto"  # auto (CUDA, else Apple MPS, else CPU), cpu, cuda, mps
    # of the convolutions and the head; auto: fp16 on CUDA, else fp32. bf16 is faster on a
    # CPU that computes it natively (AVX512-BF16, AMX). See `perception.infer.pick_precision`.
    precision: str = "auto"
    threads: int = 1  # torch threads: the node is one process among several
    smoothing_s: float = 0.0  # ease the steering over this time constant; 0: raw

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"[steering] device = {self.device!r}: use {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"[steering] precision = {self.precision!r}: use {', '.join(PRECISIONS)}"
            )
        if self.threads < 1 or self.smoothing_s < 0:
            raise ConfigError("[steering] use threads >= 1 and smoothing_s >= 0")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SteeringNodeConfig:
        """Build from the [steering] table; unknown keys or wrong types raise ConfigError."""
        return dataclass_from_dict(cls, raw, "steering")
