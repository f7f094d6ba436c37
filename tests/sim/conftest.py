"""Shared fixtures for the simulator tests: small scenarios and hand-placed worlds."""

from __future__ import annotations

import dataclasses
import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

from sim.geometry import Obstacle  # noqa: E402
from sim.scenario import Scenario  # noqa: E402
from sim.world import World, generate_world  # noqa: E402


def tree(x: float, y: float, radius: float = 0.2, height: float = 6.0) -> Obstacle:
    """A trunk at (x, y)."""
    return Obstacle("tree", x, y, 0.0, radius, 2 * radius, 2 * radius, height, "bark_brown")


def rock(x: float, y: float, radius: float = 0.3, height: float = 0.3) -> Obstacle:
    """A low rock at (x, y)."""
    return Obstacle("rock", x, y, 0.0, radius, 2 * radius, 2 * radius, height, "rock_grey")


def box(x: float, y: float, yaw: float, length: float, width: float, height: float = 1.0):
    """A box (oriented rectangle) at (x, y)."""
    radius = (length**2 + width**2) ** 0.5 / 2
    return Obstacle("box", x, y, yaw, radius, length, width, height, "cardboard")


def empty_scenario(**task) -> Scenario:
    """A bare field scenario: no obstacles, a fence far away, plain lighting."""
    table = {
        "name": "empty",
        "task": {"length_m": 30.0, "width_m": 40.0, "time_limit_s": 20.0, **task},
        "border": {"shape": "wall", "materials": ["concrete"]},
        "lighting": {"sky": "clear", "fog_distance_m": 40.0},
    }
    return Scenario.from_dict(table)


def world_with(obstacles: list[Obstacle], seed: int = 0, **task) -> World:
    """A bare world holding exactly ``obstacles`` (no border, nothing else)."""
    world = generate_world(empty_scenario(**task), seed)
    return dataclasses.replace(world, obstacles=tuple(obstacles))


@pytest.fixture
def make_world():
    """Factory: ``make_world([tree(5, 0), ...])`` gives a world with only those obstacles."""
    return world_with
