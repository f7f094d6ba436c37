"""Which world each episode of a long run drives: the scenario's next world after the goal.

A run longer than one episode (``rover drive --sim forest,open,corridor --duration 1200``, or the
in-process demonstrations of ``perception.steering.demos``) goes on world after world. Episode 0
is the world asked for (the first family, its seed or ``--seed``); later episodes cycle the
families with seeds drawn from the training range: never a regression-suite seed (101-302),
never the reserved held-out range. With ``randomise`` a share of the worlds repaints the
family's obstacles, borders, ground and sky with other materials of the training families
(domain randomisation); materials that only held-out scenarios use are never drawn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache

import numpy as np

from sim.scenario import RESERVED_SEED_MIN, Scenario, load_scenario

TRAINING_FAMILIES = ("forest", "open", "corridor")
FIRST_TRAINING_SEED = 1000  # regression-suite worlds use seeds 101-302


@dataclass(frozen=True)
class MaterialPools:
    """Every material the training families use, by role."""

    obstacle: tuple[str, ...]
    ground: tuple[str, ...]
    sky: tuple[str, ...]


@cache
def training_materials(families: tuple[str, ...] = TRAINING_FAMILIES) -> MaterialPools:
    """The training families' own materials: nothing a held-out scenario alone shows."""
    scenarios = [load_scenario(f) for f in families]
    obstacle = set().union(*(s.obstacle_materials() for s in scenarios))
    ground = set().union(*(set(s.ground.materials) | {s.ground.trail} for s in scenarios))
    sky = set().union(*(set(s.lighting.sky) for s in scenarios))
    return MaterialPools(tuple(sorted(obstacle)), tuple(sorted(ground)), tuple(sorted(sky)))


def repaint(scenario: Scenario, rng: np.random.Generator) -> Scenario:
    """The same layouts with materials drawn from the training pools (one per family)."""
    pools = training_materials()

    def pick(pool: tuple[str, ...], k: int = 1) -> tuple[str, ...]:
        return tuple(str(x) for x in rng.choice(pool, size=min(k, len(pool)), replace=False))

    obstacles = tuple(
        dataclasses.replace(f, materials=pick(pools.obstacle)) for f in scenario.obstacles
    )
    ground = dataclasses.replace(
        scenario.ground, materials=pick(pools.ground, 2), trail=pick(pools.ground)[0]
    )
    corridor = scenario.corridor
    if corridor is not None:
        corridor = dataclasses.replace(corridor, wall_materials=pick(pools.obstacle))
    return dataclasses.replace(
        scenario,
        name=f"{scenario.name}-repainted",
        obstacles=obstacles,
        ground=ground,
        corridor=corridor,
        border=dataclasses.replace(scenario.border, materials=pick(pools.obstacle)),
        lighting=dataclasses.replace(scenario.lighting, sky=pick(pools.sky)),
    )


def training_worlds(count: int, seed: int = 0, families=TRAINING_FAMILIES) -> list[tuple[str, int]]:
    """(family, world seed) pairs: families in turn, seeds drawn from the training range."""
    rng = np.random.default_rng(seed)
    seeds = rng.choice(np.arange(FIRST_TRAINING_SEED, RESERVED_SEED_MIN), size=count, replace=False)
    return [(families[i % len(families)], int(s)) for i, s in enumerate(seeds)]


@cache
def _worlds(seed: int, families: tuple[str, ...]) -> list[tuple[str, int]]:
    return training_worlds(10_000, seed, families)


@dataclass(frozen=True)
class WorldSequence:
    """Episode ``i``'s scenario and world seed, the same in any process.

    ``first_seed`` None: every episode comes from the training range (the in-process
    demonstrations); otherwise episode 0 is ``families[0]`` with that seed (the world the user
    asked for) and the later ones come from the training range."""

    families: tuple[str, ...] = TRAINING_FAMILIES
    seed: int = 0
    randomise: float = 0.0  # share of worlds repainted with other training materials
    first_seed: int | None = None

    def __post_init__(self) -> None:
        if not self.families:
            raise ValueError("a world sequence needs at least one scenario family")

    def world(self, episode: int) -> tuple[Scenario, int]:
        """Episode ``episode``'s scenario (repainted for a ``randomise`` share), world seed."""
        if episode == 0 and self.first_seed is not None:
            family, world_seed = self.families[0], self.first_seed
        else:
            family, world_seed = _worlds(self.seed, tuple(self.families))[episode]
        scenario = load_scenario(family)
        paint = np.random.default_rng(world_seed)
        if paint.random() < self.randomise:
            scenario = repaint(scenario, paint)
        return scenario, world_seed
