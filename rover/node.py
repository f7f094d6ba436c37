"""The node run loop: a rate keeper and clean SIGINT/SIGTERM shutdown.

A node is a small process: it builds its publishers and subscribers, then loops, handing
messages to a plain logic object that never imports the bus. See rover/nodes/ for examples.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable

from rover.config import RobotConfig, load_config
from rover.errors import RoverError
from rover.topics import BusConfig

log = logging.getLogger("rover.node")


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


def run_main(name: str, main: Callable[[], None]) -> None:
    """Run a node's main: user errors become one line and exit code, no traceback wall."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name}: %(message)s")
    try:
        main()
    except RoverError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        pass
