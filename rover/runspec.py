"""The run description: what a stack is asked to do, typed and frozen, built once.

``RunRequest`` is what the user asked for (`rover drive`/`rover teleop`'s flags, or a run
started from code: `rover demo`, `rover eval`, the benches); `rover.stack` checks it and turns it
into ``Run``, which the manager's table reads (rover/manager.py: each row says when its node
runs and with which arguments). ``SimSpec`` is the simulator node's own configuration, the one
declaration of its settings: the CLI fills it from its flags, the node reads it back from JSON.
A field name that does not exist is an error, here and on the way back from JSON, never None.

A leaf for typed configuration: it imports nothing of the bus, the nodes or the CLI, so
perception's evaluation may build a request too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rover.config import dataclass_from_dict
from rover.errors import ConfigError
from rover.topics import BusConfig

MODES = ("drive", "teleop")


@dataclass(frozen=True)
class SimSpec:
    """The simulator node's configuration (`rover drive --sim ...`'s simulator flags)."""

    scenario: str  # a scenario, a .toml path, or several: a,b,c
    mode: str = "drive"  # teleop: the window's autopilot starts off
    seed: int | None = None
    duration_s: float | None = None
    lockstep: bool = False
    # lock-step: seconds to wait for a frame's answer before stepping without it (a late
    # frame); long enough that a loaded machine gives the run a quiet one gives
    lockstep_timeout_s: float = 2.0
    headless: bool = False
    policy: str | None = None  # a simulator policy publishes the steering estimates
    mcu: str = "emulator"  # or "avr": the compiled firmware in simavr
    metrics_out: str | None = None
    snapshot: str | None = None
    safety_driver_s: float = 0.0  # after a collision the expert drives this long
    camera_latency_ms: float = 0.0  # injected between capture and publication
    camera_latency_measured: bool = False  # the default (the robot's measured delay), not asked
    frame_drop: float = 0.0  # probability a frame is dropped
    serial_loss: float = 0.0  # probability a chunk to the motor controller is garbled
    randomise_materials: float = 0.0  # share of worlds repainted with other materials
    takeover: str | None = None  # expert[,CLEARANCE_M[,SECONDS]]: the expert takes the wheel
    wait_ready: tuple[str, ...] = ()  # nodes that must be ready before the first frame

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SimSpec:
        return _from_dict(cls, json.loads(text), "sim")


@dataclass(frozen=True)
class RunRequest:
    """What a user (or code) asks of `rover drive` / `rover teleop`, before any check."""

    mode: str  # "drive" | "teleop"
    namespace: str = "default"
    config: str | None = None  # the robot TOML
    overrides: tuple[str, ...] = ()  # --set SECTION.KEY=VALUE
    sim: SimSpec | None = None  # None: the robot
    model: str | None = None  # a checkpoint, or in the simulator a policy's name
    record: str | None = None  # the folder a new session goes in
    traversability: bool = False
    headless: bool = False
    perturb: str | None = None  # RATE,SIZE
    unattended: bool = False
    teleop_script: str | None = None
    listen: str | None = None
    console: str | None = None
    foxglove: str | None = None
    keys: str | None = None
    summary: bool = True  # False: no end-of-run lines (a bench prints its own table)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunRequest:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ConfigError("a run request is a JSON object")
        sim = raw.get("sim")
        if sim is not None:
            raw = {**raw, "sim": _from_dict(SimSpec, sim, "sim")}
        return _from_dict(cls, raw, "run")


@dataclass(frozen=True)
class Run:
    """The checked run the manager's table reads: every node's arguments derive from it."""

    mode: str
    bus: BusConfig = field(default_factory=BusConfig)  # its namespace is the run's
    config: str | None = None
    overrides: tuple[str, ...] = ()  # the user's and the stack's own, for every node
    sim: SimSpec | None = None
    model: str | None = None  # a checkpoint for the steering node, or a policy's name
    record: str | None = None  # the session folder (made once: a restarted recorder appends)
    traversability: bool = False
    headless: bool = False
    lockstep: bool = False  # inputs come frame by frame (a lock-step simulator, a replay)
    unattended: bool = False
    teleop_script: str | None = None  # absolute path
    listen: str | None = None  # remote operators' CURVE link (HOST:PORT)
    console: str | None = None  # web console ([HOST:]PORT)
    foxglove: str | None = None  # Foxglove live server ([HOST:]PORT)
    keys: str | None = None

    @property
    def namespace(self) -> str:
        return self.bus.namespace

    @property
    def sim_policy(self) -> bool:
        """The simulator itself drives (expert, straight, random): no steering node."""
        return self.sim is not None and self.sim.policy is not None


# flags that only the simulator reads: (argparse destination, flag, its "not given" value)
SIM_ONLY_FLAGS = (
    ("duration", "--duration", None),
    ("lockstep", "--lockstep", False),
    ("seed", "--seed", None),
    ("snapshot", "--snapshot", None),
    ("frame_drop", "--frame-drop", 0.0),
    ("serial_loss", "--serial-loss", 0.0),
    ("camera_latency_ms", "--camera-latency-ms", 0.0),
    ("safety_driver", "--safety-driver", 0.0),
    ("metrics_out", "--metrics-out", None),
    ("mcu", "--mcu", "emulator"),
    ("takeover", "--takeover", None),
)
ROBOT_ONLY_FLAGS = (
    ("unattended", "--unattended", False),
    ("teleop_script", "--teleop-script", None),
)


def request_from_args(args: argparse.Namespace) -> RunRequest:
    """`rover drive`/`rover teleop`'s command line as a request: the one place that reads
    it. A flag the chosen target ignores is a mistake: say which, in one line."""
    flags = vars(args)
    if args.sim is None:
        for dest, flag, unset in SIM_ONLY_FLAGS:
            if flags[dest] != unset:
                raise ConfigError(
                    f"{flag} is for the simulator: add --sim SCENARIO, or leave {flag} out "
                    "on the robot"
                )
    else:
        for dest, flag, unset in ROBOT_ONLY_FLAGS:
            if flags[dest] != unset:
                raise ConfigError(f"{flag} is for the robot: leave it out with --sim")
    sim = None
    if args.sim is not None:
        sim = SimSpec(
            args.sim,
            seed=args.seed,
            duration_s=args.duration,
            lockstep=args.lockstep,
            mcu=args.mcu,
            metrics_out=args.metrics_out,
            snapshot=args.snapshot,
            safety_driver_s=args.safety_driver,
            camera_latency_ms=args.camera_latency_ms,
            camera_latency_measured=args.camera_latency_measured,
            frame_drop=args.frame_drop,
            serial_loss=args.serial_loss,
            randomise_materials=args.randomise_materials,
            takeover=args.takeover,
        )
    elif args.randomise_materials:
        raise ConfigError("--randomise-materials is for the simulator: add --sim SCENARIO")
    return RunRequest(
        mode=args.mode,
        namespace=args.namespace,
        config=args.config,
        overrides=tuple(args.set),
        sim=sim,
        model=args.model,
        record=args.record,
        traversability=args.traversability,
        headless=args.headless,
        perturb=args.perturb,
        unattended=args.unattended,
        teleop_script=args.teleop_script,
        listen=args.listen,
        console=args.console,
        foxglove=args.foxglove,
        keys=args.keys,
    )


def sim_request(
    scenario: str,
    model: str,
    metrics_out: str | Path,
    *,
    headless: bool = True,
    lockstep: bool = True,
    duration_s: float | None = None,
    seed: int | None = None,
    summary: bool = True,
    traversability: bool = False,
    safety_driver_s: float = 0.0,
    overrides: tuple[str, ...] = (),
    namespace: str | None = None,
) -> RunRequest:
    """`rover drive --sim SCENARIO --model M --metrics-out PATH ...` for a run started from
    code (demo, eval, benches), in a namespace of its own unless one is given."""
    sim = SimSpec(
        scenario,
        seed=seed,
        duration_s=duration_s,
        lockstep=lockstep,
        metrics_out=str(metrics_out),
        safety_driver_s=safety_driver_s,
    )
    return RunRequest(
        mode="drive",
        namespace=namespace or f"run{os.getpid()}x{uuid.uuid4().hex[:6]}",
        overrides=tuple(overrides),
        sim=sim,
        model=model,
        traversability=traversability,
        headless=headless,
        summary=summary,
    )


def _from_dict(cls: type, raw: Any, section: str) -> Any:
    """`cls` from a JSON table: unknown fields and wrong types are ConfigErrors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section}] must be a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    raw = {
        k: tuple(v) if isinstance(v, list) and typing.get_origin(hints.get(k)) is tuple else v
        for k, v in raw.items()
    }
    try:
        return dataclass_from_dict(cls, raw, section)
    except TypeError as exc:  # a required field missing
        raise ConfigError(f"[{section}] {exc}") from None
