"""The node run loop: a rate keeper and clean SIGINT/SIGTERM shutdown.

A node is a small process: it builds its publishers and subscribers, then loops, handing
messages to a plain logic object that never imports the bus. See rover/nodes/ for examples.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Protocol

from rover import priority
from rover.config import RobotConfig, load_config
from rover.errors import RoverError
from rover.health import Faults
from rover.messages import HealthEvent
from rover.topics import BusConfig, Topic

log = logging.getLogger("rover.node")
_PR_SET_PDEATHSIG = 1
HEALTH_REPEAT_S = 1.0
FINISH_LINGER_MS = 200  # at exit: how long the bus may take to send what it still holds


class NodeFinished(Exception):
    """A node has nothing more to do (a file camera ended): it exits 0 with this one line,
    which the manager shows the user as the reason the run ended."""


class Shutdown:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so a node stops between steps."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._set)
        signal.signal(signal.SIGTERM, self._set)

    def _set(self, signum, frame) -> None:
        self.requested = True


class RateKeeper:
    """Keeps a loop at `rate_hz` without drift; counts the iterations that ran late."""

    def __init__(self, rate_hz: float, late_tolerance_s: float | None = None):
        self.period_ns = int(1e9 / rate_hz)
        self.next_ns = time.monotonic_ns() + self.period_ns
        self.late_ns = int((late_tolerance_s or 0.5 / rate_hz) * 1e9)
        self.frames = 0
        self.late = 0

    def remaining_s(self) -> float:
        """Seconds until the next tick (negative when behind)."""
        return (self.next_ns - time.monotonic_ns()) / 1e9

    def keep_time(self) -> bool:
        """Sleep until the next tick; return True if this iteration ran late."""
        self.frames += 1
        now = time.monotonic_ns()
        lagging = now - self.next_ns > self.late_ns
        if lagging:
            self.late += 1
            self.next_ns = now  # skip missed ticks rather than bursting to catch up
        elif self.next_ns > now:
            time.sleep((self.next_ns - now) / 1e9)
        self.next_ns += self.period_ns
        return lagging


class Spinner(Protocol):
    """A node's logic around its sockets: one step of its loop, and closing what it holds."""

    def spin_once(self) -> object: ...

    def close(self) -> None: ...


def spin(node: Spinner, stop: Shutdown | None = None) -> None:
    """The node main loop: step until SIGINT/SIGTERM, then close the node, whatever happened."""
    stop = stop or Shutdown()
    # what start-up made (imports, config, sockets) stays out of the collector's sight: no
    # full collection of it comes due between an input and its answer
    gc.freeze()
    try:
        while not stop.requested:
            node.spin_once()
    finally:
        node.close()


def node_argparser(description: str) -> argparse.ArgumentParser:
    """The arguments every node process takes (the manager passes them)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="robot TOML file (default: built-in)")
    parser.add_argument("--namespace", default=None, help="bus namespace of this stack")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable)",
    )
    return parser


def node_config(args: argparse.Namespace) -> tuple[RobotConfig, BusConfig]:
    """The robot config and bus for a node, from its standard arguments."""
    cfg = load_config(args.config, overrides=args.set)
    bus = (
        cfg.bus
        if args.namespace is None
        else BusConfig.from_dict({**cfg.bus.__dict__, "namespace": args.namespace})
    )
    return cfg, bus


class HealthPublisher:
    """Publishes a node's ``Faults`` on its health topic: each change at once, and the state of
    every fault again once a second, so a listener that joined late still learns it."""

    def __init__(self, topic: Topic, bus_cfg: BusConfig, node: str):
        from rover import bus

        self.faults = Faults(node)
        self._pub = bus.Publisher(topic, bus_cfg)
        self._next_repeat = time.monotonic() + HEALTH_REPEAT_S

    def set(self, fault: str, active: bool, text: str) -> HealthEvent | None:
        """Turn a fault on or off; a change is logged and published now."""
        event = self.faults.set(fault, active, text, time.monotonic_ns())
        if event is not None:
            log.warning("%s", event.text)
            self._pub.publish(event)
        return event

    def tick(self) -> None:
        """Call from the node's loop: repeats the state once a second."""
        if time.monotonic() < self._next_repeat:
            return
        self._next_repeat = time.monotonic() + HEALTH_REPEAT_S
        for event in self.faults.state():
            self._pub.publish(event)

    def close(self) -> None:
        self._pub.close(linger_ms=200)  # a last event (end of file) still reaches the listeners


MANAGER_PID_ENV = "ROVER_MANAGER_PID"  # set by the manager for each node it starts


def stop_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies (the manager SIGKILLed), so no node
    outlives its stack driving motors or holding the namespace."""
    if not sys.platform.startswith("linux"):
        return
    # the manager's pid, from before this process spent a second on imports: a manager that
    # died meanwhile is not our parent any more, and os.getppid() would name the reaper
    parent = int(os.environ.get(MANAGER_PID_ENV) or os.getppid())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl: stop now
        os.kill(os.getpid(), signal.SIGTERM)


def run_main(name: str, main: Callable[[], None]) -> None:
    """Run a node's main: user errors become one line and exit code, no traceback wall.

    Once main has returned (its sockets, files and serial port closed in its own `finally`),
    the process leaves without the interpreter's shutdown: with torch loaded that teardown
    alone took 1.5-2.3 s here, most of the stack's Ctrl-C budget. What the bus still holds
    is sent first (`finish`)."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name}: %(message)s")
    stop_with_parent()
    logging.getLogger(f"rover.{name}").info("priority: %s", priority.take())
    code = 0
    try:
        main()
    except RoverError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
        code = exc.exit_code
    except NodeFinished as done:
        print(f"{name}: {done}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finish(code)


def finish(code: int) -> None:
    """Flush what the process holds (bus, logs, stdio), then exit at once with `code`."""
    bus = sys.modules.get("rover.bus")
    if bus is not None and bus._context is not None and not bus._context.closed:
        bus._context.destroy(linger=FINISH_LINGER_MS)  # a last message still goes out
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
