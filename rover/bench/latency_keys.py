"""`rover bench latency --keys`: a key press in the teleop window to the motor controller's output.

On a rig (its own unless ``--config``), `rover teleop --config rig.toml` runs with its keyboard
window on a private Xvfb. Each press: the clock is read, then ``xdotool keydown Up`` sends a
real key event through the X server (one long-running ``xdotool -``, so no process starts per
press); the figure is from that clock reading to the first DRIVE with forward throttle arriving
at the motor controller (its DRIVE log stamp), so it includes xdotool's handling of the command
(``xdotool`` row: until its acknowledgement, measured per press). Then the key is released
and, after a random pause (so presses do not lock to the 50 Hz loops), pressed again. The
floor: xdotool's acknowledgement, a bare pyzmq hop of a small message (the teleop node
publishes on each input event, it does not wait for its next tick) and a DRIVE across a bare
pty. The stack is stopped with Ctrl-C (SIGINT to its process group) and the time until all its
processes are gone is reported.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

PRESS_TIMEOUT_S = 2.0


def _arrived_after(log: Path, offset: int, after_ns: int, forward: bool) -> int | None:
    """Arrival of the first DRIVE in the log past `offset` after `after_ns` that drives forward
    (or, with forward False, that does not)."""
    with open(log, "rb") as f:
        f.seek(offset)
        for line in f.read().decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 6:
                continue
            arrival, throttle = int(parts[1]), int(parts[3])
            if arrival > after_ns and (throttle > 0) == forward:
                return arrival
    return None


def _wait_arrival(log: Path, offset: int, after_ns: int, forward: bool) -> int | None:
    deadline = time.monotonic() + PRESS_TIMEOUT_S
    while time.monotonic() < deadline:
        found = _arrived_after(log, offset, after_ns, forward)
        if found is not None:
            return found
        time.sleep(0.002)  # polling the log; the figure comes from the emulator's stamps
    return None


def time_presses(keys, log: Path, presses: int) -> tuple[list[float], list[float], int]:
    """Per press: ms from the clock read to the motor output, and xdotool's acknowledgement; lost presses."""
    rng = random.Random(0)
    to_motor, xdotool, lost = [], [], 0
    for _ in range(presses):
        offset = log.stat().st_size
        start = time.monotonic_ns()
        keys.down("Up")
        xdotool.append((time.monotonic_ns() - start) / 1e6)
        arrival = _wait_arrival(log, offset, start, forward=True)
        released = time.monotonic_ns()
        keys.up("Up")
        if arrival is None:
            lost += 1
        else:
            to_motor.append((arrival - start) / 1e6)
        _wait_arrival(log, offset, released, forward=False)
        time.sleep(rng.uniform(0.05, 0.25))  # de-phase from the 50 Hz loop (not a wait)
    return to_motor, xdotool, lost


def run_keys(args: argparse.Namespace) -> dict:
    """Run the key bench, print a table, return the flat result dict."""
    from rover.bench import bus as bus_bench
    from rover.bench.common import latency_summary, print_table
    from rover.bench.latency_floor import pty_one_way
    from rover.bench.rig_stack import rig_for, start_stack, stop_stack
    from rover.bench.xkeys import Keyboard, xvfb

    with tempfile.TemporaryDirectory(prefix="rover-bench-keys-") as tmp_name:
        toml, drive_log, baud, stop_rig = rig_for(args, Path(tmp_name))
        try:
            serial_floor = pty_one_way(500)
            hop_floor = bus_bench._measure("raw", 200, 100.0, (4, 4))["lat_ms"]
            with xvfb() as display:
                env = {**os.environ, "DISPLAY": display}
                env.pop("SDL_VIDEODRIVER", None)
                ns = f"benchkeys{uuid.uuid4().hex[:8]}"
                argv = ["teleop", "--config", str(toml), "--namespace", ns]
                stack = start_stack([sys.executable, "-m", "rover.cli", *argv], env)
                try:
                    keys = Keyboard(display)
                    keys.focus()
                    _warm_up(keys, drive_log)
                    to_motor, xdotool, lost = time_presses(keys, drive_log, args.presses)
                    keys.close()
                finally:
                    ctrl_c_s = stop_stack(stack)
        finally:
            stop_rig()
    summary, xdo, ser, hop = (
        latency_summary(v) for v in (to_motor, xdotool, serial_floor, hop_floor)
    )
    floor = xdo["p50_ms"] + hop["p50_ms"] + ser["p50_ms"]
    print(
        f"key press -> motor output, {len(to_motor)} presses ({lost} lost), teleop window on Xvfb"
    )
    rows = [
        ["key press -> DRIVE at the motor controller", summary],
        ["  of which xdotool sending it", xdo],
    ]
    print_table(
        ["what", "p50 ms", "p99 ms", "max ms"],
        [[n, f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['max_ms']:.2f}"] for n, s in rows],
    )
    print(f"floor (xdotool + a bus hop + a bare pty) p50 {floor:.2f} ms")
    print(f"Ctrl-C to every process gone: {ctrl_c_s:.2f} s")
    return {
        "presses": len(to_motor),
        "lost": lost,
        "p50_ms": round(summary["p50_ms"], 2),
        "p99_ms": round(summary["p99_ms"], 2),
        "floor_p50_ms": round(floor, 2),
        "xdotool_p50_ms": round(xdo["p50_ms"], 2),
        "ctrl_c_s": round(ctrl_c_s, 3),
        "baud": baud or 0,
    }


def _warm_up(keys, log: Path) -> None:
    """Press until a press reaches the motors: the window, the operator check and the arming."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        offset, start = log.stat().st_size, time.monotonic_ns()
        keys.down("Up")
        found = _wait_arrival(log, offset, start, forward=True)
        keys.up("Up")
        if found is not None:
            _wait_arrival(log, offset, time.monotonic_ns(), forward=False)
            return
    raise RuntimeError("key presses never reached the motor controller: is the stack arming?")
