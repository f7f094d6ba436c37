"""Scenario files (TOML): what a world family looks like and what the task is.

A scenario names ranges; a world is drawn from them with a seed. ``load_scenario("forest")``
reads ``sim/scenarios/forest.toml``; a path works too. A file may start from another with
``base = "forest"`` and override tables (arrays of tables such as ``[[obstacles]]`` replace).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rover.errors import ConfigError
from sim.spec import Range, bounded, build, check_keys, materials, number, region

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
# Seeds from here up are reserved for held-out evaluation: never generate training data with them.
RESERVED_SEED_MIN = 90_000
MAX_OBSTACLE_HEIGHT_M = 10.0
MAX_OBSTACLE_MATERIALS = 8  # the renderer's palette holds 8 obstacle ramps
SHAPES = ("tree", "rock", "cone", "box", "wall")


@dataclass(frozen=True)
class TaskSpec:
    """Drive from x = 0 along +x to the goal line at ``length_m``, within ``time_limit_s``."""

    length_m: float = 60.0
    width_m: float = 16.0  # the field between the side borders
    time_limit_s: float = 60.0
    start_clear_m: float = 4.0  # no obstacle this close to the start

    @classmethod
    def from_dict(cls, table: dict[str, Any], where: str = "task") -> TaskSpec:
        """Validate a ``[task]`` table."""
        return build(
            cls,
            table,
            where,
            {
                "length_m": lambda v, k: number(v, k, 5.0, 2000.0),
                "width_m": lambda v, k: number(v, k, 3.0, 200.0),
                "time_limit_s": lambda v, k: number(v, k, 1.0, 36000.0),
                "start_clear_m": lambda v, k: number(v, k, 1.0, 50.0),
            },
        )


@dataclass(frozen=True)
class LightingSpec:
    """Sky, sun and fog; each range is drawn once per world."""

    sky: tuple[str, ...] = ("clear",)
    sun_elevation_deg: Range = Range(25.0, 60.0)
    sun_azimuth_deg: Range = Range(0.0, 360.0)
    ambient: Range = Range(0.4, 0.55)
    fog_distance_m: Range = Range(25.0, 40.0)
    canopy: Range = Range(0.0, 0.0)  # leaf cover of the upper sky, 0..1

    @classmethod
    def from_dict(cls, table: dict[str, Any], where: str = "lighting") -> LightingSpec:
        """Validate a ``[lighting]`` table."""
        return build(
            cls,
            table,
            where,
            {
                "sky": lambda v, k: materials(v, "sky", k),
                "sun_elevation_deg": lambda v, k: bounded(v, k, 5.0, 85.0),
                "sun_azimuth_deg": lambda v, k: bounded(v, k, -360.0, 720.0),
                "ambient": lambda v, k: bounded(v, k, 0.1, 1.0),
                "fog_distance_m": lambda v, k: bounded(v, k, 5.0, 1000.0),
                "canopy": lambda v, k: bounded(v, k, 0.0, 1.0),
            },
        )


@dataclass(frozen=True)
class GroundSpec:
    """Ground materials mixed in patches, and the trail's material for corridors."""

    materials: tuple[str, ...] = ("grass", "dirt")
    patch_size_m: Range = Range(4.0, 10.0)
    trail: str = "dirt"

    @classmethod
    def from_dict(cls, table: dict[str, Any], where: str = "ground") -> GroundSpec:
        """Validate a ``[ground]`` table (at most 3 patch materials)."""
        spec = build(
            cls,
            table,
            where,
            {
                "materials": lambda v, k: materials(v, "ground", k),
                "patch_size_m": lambda v, k: bounded(v, k, 0.5, 100.0),
                "trail": lambda v, k: materials(v, "ground", k)[0],
            },
        )
        if len(spec.materials) > 3:
            raise ConfigError(f"{where}.materials lists {len(spec.materials)}; use at most 3")
        return spec


_SHAPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tree": {"radius_m": [0.08, 0.25], "height_m": [3.0, 8.0], "materials": ["bark_brown"]},
    "rock": {"radius_m": [0.15, 0.5], "height_m": [0.15, 0.6], "materials": ["rock_grey"]},
    "cone": {"radius_m": [0.12, 0.16], "height_m": [0.3, 0.45], "materials": ["cone_orange"]},
    "box": {
        "length_m": [0.3, 0.8],
        "width_m": [0.3, 0.8],
        "height_m": [0.3, 0.8],
        "materials": ["cardboard"],
    },
    "wall": {
        "length_m": [1.5, 4.0],
        "width_m": [0.15, 0.25],
        "height_m": [0.8, 1.5],
        "materials": ["concrete"],
    },
}


@dataclass(frozen=True)
class ObstacleFamily:
    """One kind of obstacle scattered over a region at a density (per 100 square metres)."""

    shape: str
    density_per_100m2: float
    height_m: Range
    materials: tuple[str, ...]
    radius_m: Range = Range(0.2, 0.2)  # tree, rock, cone
    length_m: Range = Range(0.5, 0.5)  # box, wall: along the obstacle's own x axis
    width_m: Range = Range(0.5, 0.5)
    region: str = "field"  # "field", or for corridors "trail" / "roadside"

    @property
    def is_box(self) -> bool:
        """True for oriented rectangles (boxes and walls), False for round shapes."""
        return self.shape in ("box", "wall")

    @classmethod
    def from_dict(cls, table: dict[str, Any], where: str = "obstacles") -> ObstacleFamily:
        """Validate one ``[[obstacles]]`` table; shape defaults fill missing sizes."""
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        shape = table.get("shape")
        if shape not in SHAPES:
            raise ConfigError(f"{where}.shape must be one of {', '.join(SHAPES)}; got {shape!r}")
        merged = {**_SHAPE_DEFAULTS[shape], **table}
        sizes = ("radius_m",) if shape in ("tree", "rock", "cone") else ("length_m", "width_m")
        convert: dict[str, Any] = {
            "shape": lambda v, k: v,
            "density_per_100m2": lambda v, k: number(v, k, 0.0, 100.0),
            "height_m": lambda v, k: bounded(v, k, 0.05, MAX_OBSTACLE_HEIGHT_M),
            "materials": lambda v, k: materials(v, "obstacle", k),
            "region": region,
        }
        convert.update({s: (lambda v, k: bounded(v, k, 0.02, 20.0)) for s in sizes})
        if "density_per_100m2" not in merged:
            raise ConfigError(f"{where}.density_per_100m2 is missing; add e.g. 2.0")
        return build(cls, merged, where, convert)


@dataclass(frozen=True)
class CorridorSpec:
    """A winding trail along +x between two continuous border walls."""

    half_width_m: Range = Range(1.4, 1.8)
    amplitude_m: Range = Range(1.0, 3.0)
    wavelength_m: Range = Range(20.0, 35.0)
    wall_height_m: Range = Range(0.8, 1.2)
    wall_materials: tuple[str, ...] = ("hedge",)

    @classmethod
    def from_dict(cls, table: dict[str, Any], where: str = "corridor") -> CorridorSpec:
        """Validate a ``[corridor]`` table."""
        return build(
            cls,
            table,
            where,
            {
                "half_width_m": lambda v, k: bounded(v, k, 0.8, 20.0),
                "amplitude_m": lambda v, k: bounded(v, k, 0.0, 50.0),
                "wavelength_m": lambda v, k: bounded(v, k, 5.0, 1000.0),
                "wall_height_m": lambda v, k: bounded(v, k, 0.2, MAX_OBSTACLE_HEIGHT_M),
                "wall_materials": lambda v, k: materials(v, "obstacle", k),
            },
        )


@dataclass(frozen=True)
class BorderSpec:
    """What lines the field's sides and back: a row of trees or rocks, or a wall."""

    shape: str = "tree"
    materials: tuple[str, ...] = ("bark_brown",)
    spacing_m: Range = Range(0.5, 1.0)
    radius_m: Range = Range(0.15, 0.3)
    height_m: Range = Range(3.0, 7.0)

    @classmethod
    def from_dict(cls, table: dict[str, Any], where: str = "border") -> BorderSpec:
        """Validate a ``[border]`` table."""

        def shape(v: Any, k: str) -> str:
            if v not in ("tree", "rock", "wall"):
                raise ConfigError(f"{k} must be 'tree', 'rock' or 'wall'; got {v!r}")
            return v

        return build(
            cls,
            table,
            where,
            {
                "shape": shape,
                "materials": lambda v, k: materials(v, "obstacle", k),
                "spacing_m": lambda v, k: bounded(v, k, 0.0, 20.0),
                "radius_m": lambda v, k: bounded(v, k, 0.05, 5.0),
                "height_m": lambda v, k: bounded(v, k, 0.2, MAX_OBSTACLE_HEIGHT_M),
            },
        )


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: task, look, obstacles; ``seed`` is the default world seed."""

    name: str
    description: str = ""
    seed: int = 0
    held_out: bool = False
    min_gap_m: float = 1.0  # free space kept between obstacles, so the field stays passable
    task: TaskSpec = field(default_factory=TaskSpec)
    lighting: LightingSpec = field(default_factory=LightingSpec)
    ground: GroundSpec = field(default_factory=GroundSpec)
    obstacles: tuple[ObstacleFamily, ...] = ()
    corridor: CorridorSpec | None = None
    border: BorderSpec = field(default_factory=BorderSpec)
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, table: dict[str, Any], source: str = "<dict>") -> Scenario:
        """Validate a parsed scenario table; errors name the file and the key."""
        try:
            return _scenario_from_dict(cls, table, source)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def obstacle_materials(self) -> set[str]:
        """Every obstacle material this scenario can place."""
        names = {m for fam in self.obstacles for m in fam.materials}
        names.update(self.border.materials)
        if self.corridor is not None:
            names.update(self.corridor.wall_materials)
        return names

    def appearance_materials(self) -> set[str]:
        """Every material (obstacle, ground, sky) this scenario can show."""
        names = self.obstacle_materials() | set(self.ground.materials) | set(self.lighting.sky)
        if self.corridor is not None:
            names.add(self.ground.trail)
        return names


def _scenario_from_dict(cls: Any, table: dict[str, Any], source: str) -> Scenario:
    allowed = {f.name for f in fields(cls)} - {"source"}
    check_keys(table, allowed | {"base"}, "scenario")
    name = table.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise ConfigError("name must be a non-empty string")
    seed = table.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    held_out = table.get("held_out", False)
    if not isinstance(held_out, bool):
        raise ConfigError(f"held_out must be true or false; got {held_out!r}")
    if held_out and seed < RESERVED_SEED_MIN:
        raise ConfigError(f"held-out scenarios use seeds >= {RESERVED_SEED_MIN}; got {seed}")
    families = table.get("obstacles", [])
    if not isinstance(families, list):
        raise ConfigError("obstacles must be an array of tables ([[obstacles]])")
    corridor = table.get("corridor")
    scenario = cls(
        name=name,
        description=str(table.get("description", "")),
        seed=seed,
        held_out=held_out,
        min_gap_m=number(table.get("min_gap_m", 1.0), "min_gap_m", 0.3, 20.0),
        task=TaskSpec.from_dict(table.get("task", {})),
        lighting=LightingSpec.from_dict(table.get("lighting", {})),
        ground=GroundSpec.from_dict(table.get("ground", {})),
        obstacles=tuple(
            ObstacleFamily.from_dict(f, f"obstacles[{i}]") for i, f in enumerate(families)
        ),
        corridor=None if corridor is None else CorridorSpec.from_dict(corridor),
        border=BorderSpec.from_dict(table.get("border", {})),
        source=source,
    )
    used = scenario.obstacle_materials()
    if len(used) > MAX_OBSTACLE_MATERIALS:
        raise ConfigError(
            f"{len(used)} obstacle materials listed ({', '.join(sorted(used))}); "
            f"use at most {MAX_OBSTACLE_MATERIALS}"
        )
    for i, fam in enumerate(scenario.obstacles):
        if fam.region != "field" and scenario.corridor is None:
            raise ConfigError(f"obstacles[{i}].region = {fam.region!r} needs a [corridor] table")
    return scenario


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A bundled scenario name (``forest``, ``regression/forest_201``) or a path to a file."""
    text = str(name_or_path)
    path = Path(text)
    if not text.endswith(".toml"):
        bundled = SCENARIO_DIR / f"{text}.toml"
        if bundled.is_file():
            return bundled
    if path.is_file():
        return path
    known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
    raise ConfigError(
        f"scenario {text!r} not found; use one of: {known}, or a path to a .toml file"
    )


def _read_merged(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself; fix the base key")
    try:
        with path.open("rb") as fh:
            table = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc}); fix the syntax") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    base = table.pop("base", None)
    if base is None:
        return table
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a scenario name or path; got {base!r}")
    merged = _read_merged(_resolve_base(base, path), (*seen, path))
    merged.pop("held_out", None)  # a held-out file must say so itself
    merged.pop("name", None)
    merged.pop("description", None)
    return _merge(merged, table)


def _resolve_base(base: str, child: Path) -> Path:
    sibling = child.parent / base
    if sibling.suffix == ".toml" and sibling.is_file():
        return sibling
    return resolve_scenario_path(base)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario by bundled name or file path."""
    path = resolve_scenario_path(name_or_path)
    table = _read_merged(path)
    table.setdefault("name", path.stem)
    return Scenario.from_dict(table, source=str(path))


def list_suite(folder: str | Path) -> list[Path]:
    """The scenario files of a suite folder (e.g. ``sim/scenarios/regression``), sorted."""
    path = Path(folder)
    if not path.is_dir():
        bundled = SCENARIO_DIR / str(folder)
        if not bundled.is_dir():
            raise ConfigError(f"suite folder {str(folder)!r} not found; pass a folder of .toml")
        path = bundled
    files = sorted(path.glob("*.toml"))
    if not files:
        raise ConfigError(f"suite folder {str(path)!r} has no .toml scenarios")
    return files
