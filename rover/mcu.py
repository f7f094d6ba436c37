"""`rover mcu serve`: a motor controller on a stable device path, for the rig and for people.

    rover mcu serve --avr [--stage hbridge] [--link PATH]   # the compiled firmware in simavr
    rover mcu serve --emulator [--link PATH]                # the Python emulator

`--avr` builds the firmware first when it is stale (`make firmware`). The device path is a
symlink to the pty (like /dev/serial/by-id/...): give it to `[motor] port` or
`--set motor.port=PATH`. It prints one line per change of mode (armed, e-stop, watchdog) until
Ctrl-C, which removes the link.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import threading

from drivers.avr_sim import STAGES, AvrConfig, AvrMcu
from drivers.emulator import EmulatorConfig, MotorOutputs, PtyEmulator
from rover.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument(
        "action", choices=("serve",), metavar="serve", help="serve a motor controller on a pty"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--avr", action="store_true", help="the compiled firmware in simavr")
    which.add_argument("--emulator", action="store_true", help="the Python firmware emulator")
    parser.add_argument(
        "--link",
        default=os.path.join(tempfile.gettempdir(), "rover-mcu"),
        help="stable device path to create (default: %(default)s)",
    )
    parser.add_argument("--stage", choices=STAGES, default="esc_servo", help="--avr output stage")
    parser.add_argument("--watchdog-ms", type=int, default=250, help="--emulator watchdog")


def _mode(outputs: MotorOutputs) -> tuple[bool, bool, bool]:
    return outputs.armed, outputs.estop, outputs.watchdog_tripped


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    if os.path.lexists(args.link) and not os.path.islink(args.link):
        raise ConfigError(f"--link {args.link} exists and is not a symlink: pick another path")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.avr:
        mcu: AvrMcu | PtyEmulator = AvrMcu(AvrConfig(stage=args.stage), link_path=args.link)
        what = f"the compiled firmware ({args.stage}) in simavr"
    else:
        config = EmulatorConfig.from_dict({"watchdog_ms": args.watchdog_ms})
        mcu = PtyEmulator(config, link_path=args.link)
        what = "the firmware emulator"
    mcu.start()
    try:
        print(f"{args.link} -> {mcu.pty_path}: {what}; Ctrl-C to stop", flush=True)
        last = mcu.outputs
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                last = mcu.wait_outputs(lambda o, seen=last: _mode(o) != _mode(seen), 0.1)
                print(f"armed={last.armed} estop={last.estop} watchdog={last.watchdog_tripped}")
    finally:
        mcu.stop()
    return 0
