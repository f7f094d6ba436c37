"""Baseline policies. Every policy has one method: ``act(observation) -> (steering, throttle)``.

``Straight`` holds the wheel straight; ``RandomSteer`` wanders without looking. They set the
floor any learned driver must beat. The privileged expert lives in ``sim.expert``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sim.expert import Expert
from sim.simulation import Observation, Policy

__all__ = ["POLICIES", "Policy", "RandomSteer", "Straight", "make_policy"]


class Straight:
    """Drive straight ahead at the cruise throttle (or ``throttle`` if given)."""

    def __init__(self, throttle: float | None = None) -> None:
        self.throttle = throttle

    def act(self, observation: Observation) -> tuple[float, float]:
        """Zero steering, constant throttle."""
        throttle = observation.vehicle.cruise_throttle if self.throttle is None else self.throttle
        return 0.0, throttle


class RandomSteer:
    """Steering that wanders: a random walk pulled back toward straight ahead; cruise throttle.

    An Ornstein-Uhlenbeck process with standard deviation ``std`` and correlation time
    ``correlation_s``: it drifts left and right like an inattentive driver and never sees.
    """

    def __init__(self, seed: int = 0, std: float = 0.3, correlation_s: float = 2.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.std = std
        self.correlation_s = correlation_s
        self._steering = 0.0

    def act(self, observation: Observation) -> tuple[float, float]:
        """The next step of the random walk and the cruise throttle."""
        dt = observation.dt_s
        pull = dt / self.correlation_s
        noise = self.std * math.sqrt(2.0 * pull) * float(self.rng.normal())
        self._steering = float(np.clip(self._steering * (1.0 - pull) + noise, -1.0, 1.0))
        return self._steering, observation.vehicle.cruise_throttle


# the simulator's policies by the name `--model NAME` gives them: each built from the world's seed
POLICIES: dict[str, Callable[[int], Policy]] = {
    "expert": lambda seed: Expert(),
    "straight": lambda seed: Straight(),
    "random": lambda seed: RandomSteer(seed=seed),
}


def make_policy(name: str, seed: int) -> Policy:
    """The policy called `name` (a key of POLICIES) for the world of `seed`."""
    return POLICIES[name](seed)
