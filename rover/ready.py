"""Readiness markers: a node says "I hear the bus" so lock-step never starts without it.

ZeroMQ drops what a PUB sends before a SUB has connected (the slow joiner). A node whose
absence would lose data (the recorder) marks itself ready once it has received a frame; the
simulator publishes its first frame again and again until every node it waits for is ready.
Markers are files in the namespace's runtime folder, so they need no socket of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

from rover.topics import BusConfig


def ready_path(bus_cfg: BusConfig, node: str) -> Path:
    """Where `node` of this namespace marks itself ready."""
    return Path(bus_cfg.ipc_root()) / f"ready.{node}"


def mark_ready(bus_cfg: BusConfig, node: str) -> None:
    """Say `node` is ready (atomic: a reader never sees a half-written marker)."""
    path = ready_path(bus_cfg, node)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)


def clear_ready(bus_cfg: BusConfig, node: str) -> None:
    """Withdraw `node`'s marker (at start, and when it stops)."""
    ready_path(bus_cfg, node).unlink(missing_ok=True)


def all_ready(bus_cfg: BusConfig, nodes: list[str]) -> bool:
    """True when every node in `nodes` has marked itself ready."""
    return all(ready_path(bus_cfg, n).exists() for n in nodes)
