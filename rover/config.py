"""The robot's TOML file, parsed once into per-node config dataclasses with clear errors.

Every section is optional and every setting has a working default, so an empty file (or none)
is a valid robot. Each node reads only its own section's dataclass.
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rover.errors import ConfigError

# section name -> "module:Class"; each class has from_dict(raw) raising ConfigError
SECTIONS: dict[str, str] = {
    "bus": "rover.topics:BusConfig",
    "motor": "drivers.serial_link:SerialConfig",
    "camera": "drivers.camera:CameraConfig",
    "control": "rover.control:ControlConfig",
    "perturb": "rover.perturb:PerturbConfig",
    "teleop": "rover.teleop:TeleopConfig",
    "recorder": "rover.recording.writer:RecorderConfig",
    "traversability": "perception.traversability.pipeline:TraversabilityConfig",
    "guard": "perception.traversability.guard:GuardConfig",
    "steering": "perception.steering.settings:SteeringNodeConfig",
}


# keys that name a file or device: relative values in a TOML file are relative to its folder
PATH_KEYS: dict[str, tuple[str, ...]] = {
    "camera": ("left", "right", "calibration"),
    "motor": ("port",),
    "traversability": ("model",),
}
_NOT_PATHS = {"", "bundled"}  # keywords, not files


@dataclass(frozen=True)
class RobotConfig:
    """All sections of a robot config, each already validated."""

    sections: dict[str, Any]
    path: str | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["sections"][name]
        except KeyError:
            raise AttributeError(name) from None

    def raw(self) -> dict[str, dict]:
        """The effective config as plain dicts (for recordings' metadata)."""
        return {name: dataclasses.asdict(sec) for name, sec in self.sections.items()}


def _factory(section: str):
    module, cls = SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), cls)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RobotConfig:
    """Read and validate a robot TOML file (None: all defaults), applying `SECTION.KEY=VALUE`."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"config file {path} does not exist: check the path or omit "
                "--config to use the defaults"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"config file {path} is not valid TOML ({exc}): fix that line"
            ) from None
        resolve_paths(raw, Path(path).resolve().parent)
    for item in overrides or []:
        _apply_override(raw, item)
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(
            f"unknown section(s) {sorted(unknown)} in {path or 'overrides'}: "
            f"valid sections are {sorted(SECTIONS)}"
        )
    sections = {}
    for name in SECTIONS:
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table, got {section!r}")
        try:
            sections[name] = _factory(name).from_dict(section)
        except ConfigError as exc:
            raise ConfigError(f"{path or 'config'}: {exc}") from None
    return RobotConfig(sections, str(path) if path else None)


def resolve_paths(raw: dict, folder: Path) -> None:
    """Make the file's relative paths (``PATH_KEYS``) absolute, from `folder`: a robot.toml
    means the same files whatever the current directory. Device numbers, URLs and keywords
    stay as they are; command-line overrides stay relative to the current directory."""
    for section, keys in PATH_KEYS.items():
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            value = table.get(key)
            if not isinstance(value, str) or value in _NOT_PATHS or value.strip().isdigit():
                continue
            if "://" in value:
                continue
            table[key] = str(folder / Path(value).expanduser())  # an absolute one stays


def _apply_override(raw: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    path = key.split(".")
    if not sep or len(path) < 2 or not all(path):
        raise ConfigError(
            f"override {item!r}: write SECTION.KEY=VALUE, e.g. motor.port=/dev/ttyACM0"
        )
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word: take it as a string
    table = raw
    for name in path[:-1]:
        table = table.setdefault(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"override {item!r}: {name} is a value, not a table")
    table[path[-1]] = parsed


def dataclass_from_dict(cls: type, raw: dict, section: str):
    """Build dataclass `cls` from `raw`, rejecting unknown keys and values of the wrong type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(
            f"[{section}] unknown key(s) {sorted(unknown)}: valid keys are {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        want = hints[key]
        ok = _type_ok(value, want)
        if not ok:
            raise ConfigError(f"[{section}] {key} = {value!r}: expected {_type_name(want)}")
    return cls(**raw)


def _type_ok(value: Any, want: Any) -> bool:
    if want is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(want)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, a) for a in typing.get_args(want))
    if want is type(None):
        return value is None
    return isinstance(value, origin or want)


def _type_name(want: Any) -> str:
    return getattr(want, "__name__", str(want))
