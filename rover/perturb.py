"""Recoverable steering perturbations for demonstrations (DART, Laskey et al. 2017): plain logic.

With ``[perturb] rate_hz > 0`` (``--perturb RATE,SIZE`` on ``rover teleop`` and ``rover drive``)
the control node adds a bounded, smooth offset to the steering it sends to the motors, in spans
that start at random (on average ``rate_hz`` a second) and last ``duration_s``. The driver (a
person, or the simulator's expert) sees the vehicle drift and corrects it; the recording keeps
the driver's own command as the label and the offset beside it, so the data show how to
recover from states a clean demonstration never visits.

Inside a span the offset is an Ornstein-Uhlenbeck process (stationary std ``size``, correlation
time ``duration_s``) around three quarters of ``size`` on a side drawn per span, clipped to ``size`` and
faded in and out with a raised-cosine envelope: no step a driver could not follow. Never while
the deadman is released, never with throttle above ``max_throttle``, never on e-stop. The state
advances with the inputs' capture stamps, so a lock-step simulator run is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rover.config import dataclass_from_dict
from rover.errors import ConfigError


@dataclass(frozen=True)
class PerturbConfig:
    """[perturb] section: how often, how much and how long the steering is perturbed."""

    rate_hz: float = 0.0  # mean rate of perturbation spans; 0: off
    size: float = 0.5  # largest |offset| in normalised steering
    duration_s: float = 1.0  # length of a span (fade in, hold, fade out)
    max_throttle: float = 0.8  # no perturbation while |throttle| is above this
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rate_hz < 0 or not 0 < self.size <= 1 or self.duration_s <= 0:
            raise ConfigError(
                f"[perturb] rate_hz = {self.rate_hz}, size = {self.size}, duration_s = "
                f"{self.duration_s}: use rate_hz >= 0, size in (0, 1], duration_s > 0"
            )
        if not 0 <= self.max_throttle <= 1:
            raise ConfigError(f"[perturb] max_throttle = {self.max_throttle}: use [0, 1]")

    @classmethod
    def from_dict(cls, raw: dict) -> PerturbConfig:
        """Build from a config table; unknown keys raise ConfigError."""
        return dataclass_from_dict(cls, raw, "perturb")

    @property
    def enabled(self) -> bool:
        """True when spans can start."""
        return self.rate_hz > 0


def parse_perturb(text: str) -> tuple[float, float]:
    """``RATE,SIZE`` (``--perturb 0.3,0.5``) -> (rate_hz, size); ConfigError naming the fix."""
    rate, sep, size = text.partition(",")
    try:
        values = (float(rate), float(size) if sep else PerturbConfig.size)
        PerturbConfig(rate_hz=values[0], size=values[1])
    except ValueError:
        raise ConfigError(
            f"--perturb {text!r}: give RATE,SIZE, e.g. 0.3,0.5 (spans a second, peak steering)"
        ) from None
    return values


class OrnsteinUhlenbeck:
    """A mean-reverting random walk, exactly discretised: stationary std ``sigma``,
    correlation time ``tau_s``, whatever the step (also the traversability bench's noise)."""

    def __init__(self, sigma: float, tau_s: float, rng: np.random.Generator):
        self.sigma, self.tau_s, self.rng = sigma, tau_s, rng
        self.value = 0.0

    def step(self, dt_s: float) -> float:
        """Advance by ``dt_s`` seconds; returns the new value."""
        keep = math.exp(-dt_s / self.tau_s)
        noise = self.sigma * math.sqrt(1.0 - keep * keep) * self.rng.normal()
        self.value = keep * self.value + noise
        return self.value


class Perturber:
    """The offset to add to the driver's steering now; ``update`` once per input."""

    def __init__(self, cfg: PerturbConfig | None = None):
        self.cfg = cfg or PerturbConfig()
        self.rng = np.random.default_rng(self.cfg.seed)
        self.ou = OrnsteinUhlenbeck(self.cfg.size, self.cfg.duration_s, self.rng)
        self.stamp_ns: int | None = None
        self.span_left_s = 0.0
        self.sign = 1.0
        self.offset = 0.0

    def update(self, stamp_ns: int, allowed: bool) -> float:
        """Advance to the input stamped ``stamp_ns``; ``allowed`` False (deadman released,
        throttle over the cap, e-stop, stale input) ends any span at once. Returns the offset."""
        dt = 0.0 if self.stamp_ns is None else max(0.0, (stamp_ns - self.stamp_ns) / 1e9)
        dt = min(dt, 0.1)  # after a pause, go on from where we were
        self.stamp_ns = stamp_ns
        cfg = self.cfg
        if not cfg.enabled or not allowed:
            self.span_left_s, self.offset = 0.0, 0.0
            return 0.0
        if self.span_left_s <= 0.0:
            if dt <= 0.0 or self.rng.random() >= 1.0 - math.exp(-cfg.rate_hz * dt):
                self.offset = 0.0
                return 0.0
            self.span_left_s = cfg.duration_s
            self.sign = 1.0 if self.rng.random() < 0.5 else -1.0
            self.ou.value = 0.0
        self.span_left_s = max(0.0, self.span_left_s - dt)
        phase = 1.0 - self.span_left_s / cfg.duration_s  # 0 -> 1 through the span
        envelope = math.sin(math.pi * phase) ** 2
        swing = self.sign * cfg.size * (0.75 + 0.25 * math.tanh(self.ou.step(dt) / cfg.size))
        self.offset = float(np.clip(envelope * swing, -cfg.size, cfg.size))
        return self.offset

    def allowed(self, throttle: float, deadman: bool = True, estop: bool = False) -> bool:
        """Whether a span may run: deadman held, throttle within the cap, no e-stop."""
        return deadman and not estop and abs(throttle) <= self.cfg.max_throttle


def perturbed(steering: float, offset: float) -> tuple[float, float]:
    """(steering sent to the motors, the offset it really carries after clipping to [-1, 1])."""
    sent = min(1.0, max(-1.0, steering + offset))
    return sent, sent - steering
