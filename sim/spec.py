"""Validated parsing of scenario tables: ranges, numbers, material names, unknown keys.

Every check raises a one-line ``ConfigError`` naming the key (``task.length_m``) and what a
good value looks like; ``sim.scenario`` adds the file name in front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rover.errors import ConfigError
from sim.materials import MATERIALS, names_for


@dataclass(frozen=True)
class Range:
    """A uniform range [low, high]; a single number in a file means low == high."""

    low: float
    high: float

    def sample(self, rng: Any) -> float:
        """One draw from ``rng`` (a numpy Generator); always draws, so streams stay aligned."""
        return float(self.low + (self.high - self.low) * rng.random())

    @classmethod
    def parse(cls, value: Any, key: str, minimum: float = 0.0) -> Range:
        """Parse ``number`` or ``[low, high]``; raise ConfigError naming ``key``."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low = high = float(value)
        elif (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            low, high = float(value[0]), float(value[1])
        else:
            raise ConfigError(f"{key} must be a number or [low, high]; got {value!r}")
        if not minimum <= low <= high:
            raise ConfigError(f"{key} must satisfy {minimum} <= low <= high; got {value!r}")
        return cls(low, high)


def check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    """Refuse keys not in ``allowed`` (a typo must not read as a default)."""
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"unknown key {where}.{key}; valid keys: {', '.join(sorted(allowed))}"
            )


def materials(value: Any, use: str, key: str) -> tuple[str, ...]:
    """A material name or list of names, each known and meant for ``use``."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{key} must be a material name or a non-empty list of names")
    for name in names:
        material = MATERIALS.get(name)
        if material is None or material.use != use:
            raise ConfigError(
                f"{key}: unknown {use} material {name!r}; use one of: {', '.join(names_for(use))}"
            )
    return tuple(names)


def number(value: Any, key: str, low: float, high: float) -> float:
    """A plain number within [low, high]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{key} must be a number in [{low}, {high}]; got {value!r}")
    return float(value)


def build(cls: Any, table: Any, where: str, converters: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from ``table`` using one converter per key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    check_keys(table, set(converters), where)
    return cls(**{k: converters[k](v, f"{where}.{k}") for k, v in table.items()})


def bounded(value: Any, key: str, low: float, high: float) -> Range:
    """A ``Range`` lying within [low, high]."""
    parsed = Range.parse(value, key, minimum=low)
    if parsed.high > high:
        raise ConfigError(f"{key} must lie in [{low}, {high}]; got {value!r}")
    return parsed


def region(value: Any, key: str) -> str:
    """Where an obstacle family goes: the field, or a corridor's trail or roadside."""
    if value not in ("field", "trail", "roadside"):
        raise ConfigError(f"{key} must be 'field', 'trail' or 'roadside'; got {value!r}")
    return value
