"""`rover bench faults`: how fast the stack reacts to a fault, with real node processes.

The control node, started by the manager, drives the firmware emulator on a pty from teleop
commands at 50 Hz; then:

- stale input: the teleop commands stop; milliseconds from the last one to the first stale
  control command (throttle zeroed) and to the motor controller's zero throttle. The floor is
  the configured ``[control] stale_ms`` itself: the figure over it is the control node's own
  reaction (up to one 20 ms control period is expected);
- restart: the control node is SIGKILLed; seconds until the manager's new one publishes
  (its back-off plus the new process's imports and start-up).

The tests assert what happens (throttle zeroed, node back); this bench says how fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import uuid

import numpy as np

from drivers.emulator import PtyEmulator
from rover import bus, topics
from rover import messages as m
from rover.bench.common import latency_summary, print_table
from rover.control import ControlConfig
from rover.manager import NODES, Manager
from rover.runspec import Run

_TELEOP_PERIOD_S = 0.02  # 50 Hz, as a gamepad's teleop node sends


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument("--trials", type=int, default=10, help="stale-input trials")
    parser.add_argument("--restarts", type=int, default=2, help="control node kills")


def _until(predicate, timeout_s: float, what: str, tick=lambda: None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tick()
        value = predicate()
        if value:
            return value
    raise RuntimeError(f"bench faults: timed out waiting for {what}")


def _stale_trial(pub, cmds, emu: PtyEmulator) -> tuple[float, float]:
    """Drive until the motors follow, fall silent; (ms to stale command, ms to zero motors)."""
    teleop = m.TeleopCommand(steering=0.2, throttle=0.6, deadman=True)
    next_t = time.monotonic()

    def drive():
        nonlocal next_t
        if time.monotonic() >= next_t:
            pub.publish(teleop)
            next_t += _TELEOP_PERIOD_S

    _until(lambda: emu.outputs.throttle > 0.5, 10, "the motors to follow teleop", drive)
    last = pub.publish(teleop)
    cmds.drain()
    stale = _until(lambda: next((c for c in cmds.drain() if c.stale), None), 5, "stale")
    out = emu.wait_outputs(lambda o: o.throttle == 0.0, timeout_s=5)
    return (stale.stamp_ns - last.stamp_ns) / 1e6, (out.stamp_ns - last.stamp_ns) / 1e6


def _restart_trial(mgr: Manager, cmds) -> float:
    """SIGKILL the control node; seconds until its successor publishes."""
    _until(lambda: cmds.receive(50), 10, "control to publish", mgr.poll)
    old = mgr.pids()["control"]
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    _until(lambda: mgr.pids()["control"] != old, 30, "a restart", mgr.poll)
    cmds.drain()
    _until(lambda: cmds.receive(50), 30, "the new control node", mgr.poll)
    return time.monotonic() - killed


def run(args: argparse.Namespace) -> dict:
    """Run the bench, print a table, return the flat result dict."""
    stale_ms = ControlConfig().stale_ms
    cfg = topics.BusConfig(namespace=f"bench{os.getpid()}x{uuid.uuid4().hex[:6]}")
    with PtyEmulator() as emu:
        opts = Run(mode="teleop", bus=cfg, overrides=(f"motor.port={emu.device_path}",))
        mgr = Manager(opts, nodes=tuple(n for n in NODES if n.name == "control"))
        mgr.start()
        pub = bus.Publisher(topics.TELEOP_COMMAND, cfg)
        cmds = bus.Subscriber(topics.CONTROL_COMMAND, cfg, newest=False, hwm=1000)
        try:
            stale = [_stale_trial(pub, cmds, emu) for _ in range(args.trials)]
            restarts = [_restart_trial(mgr, cmds) for _ in range(args.restarts)]
        finally:
            pub.close()
            cmds.close()
            mgr.stop()
            mgr.failures.clear()  # the kills were ours: no logs to keep
            mgr.clean_up()
    to_cmd = latency_summary([s for s, _ in stale])
    to_motor = latency_summary([z for _, z in stale])
    print(f"faults: control node + firmware emulator on a pty, stale_ms = {stale_ms:g}")
    print_table(
        ["fault -> reaction", "p50", "max", "n"],
        [
            ["floor: configured stale_ms", f"{stale_ms:.1f} ms", "", ""],
            [
                "teleop silent -> stale command",
                f"{to_cmd['p50_ms']:.1f} ms",
                f"{to_cmd['max_ms']:.1f} ms",
                str(to_cmd["n"]),
            ],
            [
                "teleop silent -> motors at zero",
                f"{to_motor['p50_ms']:.1f} ms",
                f"{to_motor['max_ms']:.1f} ms",
                str(to_motor["n"]),
            ],
            [
                "control killed -> new one publishes",
                f"{np.median(restarts):.2f} s" if restarts else "-",
                f"{max(restarts):.2f} s" if restarts else "",
                str(len(restarts)),
            ],
        ],
    )
    return {
        "floor_stale_ms": stale_ms,
        "stale_p50_ms": round(to_cmd["p50_ms"], 2),
        "stale_max_ms": round(to_cmd["max_ms"], 2),
        "motors_zero_p50_ms": round(to_motor["p50_ms"], 2),
        "motors_zero_max_ms": round(to_motor["max_ms"], 2),
        "restart_p50_s": round(float(np.median(restarts)), 3) if restarts else None,
        "restart_max_s": round(max(restarts), 3) if restarts else None,
        "trials": args.trials,
    }
