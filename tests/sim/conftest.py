"""Fixtures for the simulator tests: a bare scenario and hand-placed worlds (the obstacles
themselves, `tree`, `rock` and `box`, are in tests/conftest.py)."""

from __future__ import annotations

import dataclasses

import pytest

from sim.geometry import Obstacle
from sim.scenario import Scenario
from sim.world import World, generate_world


def _empty_scenario(**task) -> Scenario:
    """A bare field scenario: no obstacles, a fence far away, plain lighting."""
    table = {
        "name": "empty",
        "task": {"length_m": 30.0, "width_m": 40.0, "time_limit_s": 20.0, **task},
        "border": {"shape": "wall", "materials": ["concrete"]},
        "lighting": {"sky": "clear", "fog_distance_m": 40.0},
    }
    return Scenario.from_dict(table)


def _world_with(obstacles: list[Obstacle], seed: int = 0, **task) -> World:
    """A bare world holding exactly ``obstacles`` (no border, nothing else)."""
    world = generate_world(_empty_scenario(**task), seed)
    return dataclasses.replace(world, obstacles=tuple(obstacles))


@pytest.fixture(scope="session")
def empty_scenario():
    """`empty_scenario(**task)`: a bare field scenario, no obstacles, a fence far away."""
    return _empty_scenario


@pytest.fixture(scope="session")
def world_with():
    """`world_with([tree(5, 0), ...], seed=0, **task)`: a bare world holding exactly those
    obstacles (no border, nothing else)."""
    return _world_with
