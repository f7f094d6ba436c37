"""`rover bench latency`: glass-to-motor on the rig, stage by stage, against the same stages' floor.

The real stack runs (`rover drive --config rig.toml --model M --traversability`: camera,
steering, traversability and control nodes, as on the robot) against a rig (`rover rig`; the
bench starts its own in a temporary folder unless ``--config`` names one). For each camera frame
the steering node answered, end to end is from the frame's capture stamp (``stamp_ns``, taken
right after the grab) to the moment the DRIVE that answers it (``control/command`` carries its
``frame_seq`` and ``drive_seq``) arrived at the motor controller (the emulator logs each DRIVE's
arrival; with ``--baud`` the moment its last byte would have come off the wire). This process
listens on the bus like any subscriber and splits that time into five stages that add up to it:

- capture→publish: capture stamp → the frame received here (the camera node's decode, colour,
  rectification and the bus hop of the pair);
- bus: the estimate's hop to the control node (frame received here → estimate received here,
  less the steering node's own time);
- steering: the steering node's time for the frame, measured in the node (``latency_ms``);
- control: estimate received → its DRIVE written (``control/command``'s stamp);
- serial: DRIVE written → arrived at the motor controller.

The split between capture→publish, bus and control is this listener's view (it raises its own
priority where allowed), each time it saw capped by causality (the control node had the
estimate before it wrote its DRIVE; the steering node had the frame ``latency_ms`` before its
estimate arrived): on a loaded machine the listener's late wake-ups still move time between
those three. End to end, steering and serial are stamped where they happen.

The floor, measured in the same run on this machine, half before the stack starts and half
after it stopped, at the stack's cadence (one sample a camera period, the process idle
between, as a node is; `rover.bench.latency_floor`): the same stages' bare costs (a bare
OpenCV read of the rig's videos from the left eye's capture stamp plus a bare pyzmq hop of the
pair; a bare pyzmq hop of a small message; the network's bare forward on a prepared pair, as
the node runs it; the controller's logic and the DRIVE's encoding; a DRIVE frame across a bare
pty to another thread, plus its wire time at ``--baud``). Its end-to-end p50 is the sum of the stages' p50s; its p99 that of
sums of one random sample per stage (`floor_sum_p99`): the tail of the work alone. The same
stages timed back to back (warm caches, a core never given away) are shown beside it
(``warm_floor_p50_ms``, ``p50_over_warm_floor``): work no node answering a camera gets to do.

The capture→publish p50 is also written to the user's state folder (``latency.json``): the
simulator's ``--camera-latency-ms`` defaults to it in real-time runs, so they see the robot's
own delay between the glass and the bus (``DEFAULT_CAMERA_LATENCY_MS`` until a bench ran).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rover.bench.rig_stack import rig_for, start_stack, stop_stack

# capture -> publish p50 on the rig measured here (bench/RESULTS.md, issue 12, quiet machine,
# 2026-12-04 23:31); used by the simulator until `rover bench latency` has run on this computer
DEFAULT_CAMERA_LATENCY_MS = 1.8
STAGES = ("capture_publish", "bus", "steering", "control", "serial")
STAGE_NAMES = {
    "capture_publish": "capture -> publish",
    "bus": "bus (estimate hop)",
    "steering": "steering node",
    "control": "control node",
    "serial": "serial -> motor controller",
}
STARTUP_TIMEOUT_S = 90.0


def state_file() -> Path:
    """Where the last measured figures are kept for this user."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "rover" / "latency.json"


def measured_camera_latency_ms() -> float:
    """The simulator's default camera delay: the last bench's capture -> publish p50."""
    try:
        return float(json.loads(state_file().read_text())["camera_latency_ms"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_CAMERA_LATENCY_MS


def _save_figures(result: dict) -> Path:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "camera_latency_ms": result["capture_publish_p50_ms"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(figures) + "\n")
    os.replace(tmp, path)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument("--config", help="a rig's rig.toml (default: start a rig for the bench)")
    parser.add_argument("--model", default=None, help="steering model (default: the bundled one)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to measure")
    parser.add_argument("--baud", type=int, default=None, help="model a wire at this baud rate")
    parser.add_argument(
        "--no-traversability", action="store_true", help="without the traversability node beside"
    )
    parser.add_argument(
        "--keys", action="store_true", help="key press in the teleop window -> motor output instead"
    )
    parser.add_argument("--presses", type=int, default=40, help="--keys: key presses to time")
    parser.add_argument("--no-save", action="store_true", help="do not store the figures")


@dataclass
class Trace:
    """What this process heard of each frame: frame_seq -> stamps."""

    frame_recv_ns: dict[int, int] = field(default_factory=dict)
    estimates: dict[int, tuple[int, int, float]] = field(default_factory=dict)  # C, recv, ms
    drives: dict[int, tuple[int, int]] = field(default_factory=dict)  # frame -> drive_seq, W

    def stages(self, arrivals: dict[int, int]) -> dict[str, list[float]]:
        """Per answered frame: each stage's milliseconds and the end-to-end."""
        out: dict[str, list[float]] = {s: [] for s in (*STAGES, "e2e")}
        for frame, (drive_seq, written_ns) in self.drives.items():
            if frame not in self.estimates or frame not in self.frame_recv_ns:
                continue
            if drive_seq not in arrivals:
                continue
            capture_ns, est_seen_ns, steering_ms = self.estimates[frame]
            arrival_ns = arrivals[drive_seq]
            # What this listener saw, capped by causality: the control node had the estimate
            # before it wrote the DRIVE answering it, and the steering node had the frame
            # steering_ms before its estimate arrived anywhere.
            est_recv_ns = min(est_seen_ns, written_ns)
            frame_ns = min(self.frame_recv_ns[frame], est_recv_ns - int(steering_ms * 1e6))
            values = {
                "capture_publish": (frame_ns - capture_ns) / 1e6,
                "bus": (est_recv_ns - frame_ns) / 1e6 - steering_ms,
                "steering": steering_ms,
                "control": (written_ns - est_recv_ns) / 1e6,
                "serial": (arrival_ns - written_ns) / 1e6,
                "e2e": (arrival_ns - capture_ns) / 1e6,
            }
            for key, value in values.items():
                out[key].append(value)
        return out


def read_drive_log(path: Path, offset: int) -> dict[int, int]:
    """drive_seq -> arrival_ns of the DRIVEs logged after byte `offset` (the first of a seq)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < offset:
            offset = 0  # the emulator emptied a full log
        f.seek(offset)
        arrivals: dict[int, int] = {}
        for line in f.read().decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                arrivals.setdefault(int(parts[0]), int(parts[1]))
    return arrivals


def listen(bus_cfg, seconds: float, stack: subprocess.Popen) -> Trace:
    """Record the stamps of every frame, estimate and command for `seconds`, after warm-up;
    where allowed in the path's class: the listener's own late wake-ups would move time
    between the stages it splits (see the module doc)."""
    from rover import priority

    with priority.path_class_while():
        return _listen(bus_cfg, seconds, stack)


def _listen(bus_cfg, seconds: float, stack: subprocess.Popen) -> Trace:
    from rover import bus, topics

    frames = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg, newest=False, hwm=300)
    estimates = bus.Subscriber(topics.PERCEPTION_STEERING, bus_cfg, newest=False, hwm=1000)
    commands = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=1000)
    subs = [frames, estimates, commands]
    trace = Trace()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while estimates.receive(100) is None:  # models loaded, every node subscribed
        if stack.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the stack never answered a frame: see its output above")
    end = time.monotonic() + 2.0  # let the first frames' one-off costs pass
    while time.monotonic() < end:
        for sub in bus.wait_any(subs, 100):
            sub.drain()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for sub in bus.wait_any(subs, 100):
            while (msg := sub.receive()) is not None:
                now = sub.last_recv_ns
                if sub is frames:
                    trace.frame_recv_ns[msg.seq] = now
                elif sub is estimates:
                    trace.estimates[msg.frame_seq] = (msg.stamp_ns, now, msg.latency_ms)
                elif msg.frame_seq >= 0 and "stale" not in msg.source:
                    trace.drives.setdefault(msg.frame_seq, (msg.drive_seq, msg.stamp_ns))
        if stack.poll() is not None:
            raise RuntimeError(f"the stack exited during the bench (code {stack.returncode})")
    for sub in subs:
        sub.close()
    return trace


def _drive_argv(toml: Path, model: Path, namespace: str, traversability: bool) -> list[str]:
    argv = ["drive", "--config", str(toml), "--model", str(model), "--namespace", namespace]
    if traversability:
        argv.append("--traversability")
    argv.append("--unattended")  # nobody at the keys: the bench drives the rig alone
    return [sys.executable, "-m", "rover.cli", *argv]


def run(args: argparse.Namespace) -> dict:
    """Run the bench, print a table, return the flat result dict."""
    if args.keys:
        from rover.bench.latency_keys import run_keys

        return run_keys(args)
    from rover.bench.infer import _model_path
    from rover.topics import BusConfig

    with tempfile.TemporaryDirectory(prefix="rover-bench-latency-") as tmp_name:
        tmp = Path(tmp_name)
        toml, drive_log, baud, stop_rig = rig_for(args, tmp)
        try:
            args.arch = "pilotnet"
            model = _model_path(args, tmp)
            # half the floor before the stack runs and half after: load that comes and goes
            # hits the floor and the run alike
            half = min(75, int(15 * args.seconds))
            floors = _floor(toml, model, baud, half)
            namespace = f"benchlat{uuid.uuid4().hex[:8]}"
            offset = drive_log.stat().st_size
            traversability = not args.no_traversability
            stack = start_stack(_drive_argv(toml, model, namespace, traversability))
            try:
                trace = listen(BusConfig(namespace=namespace), args.seconds, stack)
            finally:
                ctrl_c_s = stop_stack(stack)
            stages = trace.stages(read_drive_log(drive_log, offset))
            after = _floor(toml, model, baud, half)
            floors = {stage: floors[stage] + after[stage] for stage in floors}
            warm = _floor(toml, model, baud, half, paced=False)
        finally:
            stop_rig()
    result = report(stages, floors, args, baud, traversability, warm)
    print(f"Ctrl-C to every process of the stack gone: {ctrl_c_s:.2f} s")
    return {**result, "ctrl_c_s": round(ctrl_c_s, 3)}


def _floor(toml: Path, model: Path, baud: int | None, frames: int, paced: bool = True) -> dict:
    """The floor (`rover.bench.latency_floor`), in the class the path's nodes run in: the work
    alone, not this process's waits for a core under load."""
    from rover import priority
    from rover.bench import latency_floor

    with priority.path_class_while():
        return latency_floor.measure(toml, model, baud, frames, paced)


def floor_sum_p99(floors: dict[str, list[float]], draws: int = 20_000) -> float:
    """p99 of the stages' bare costs added up, one sample of each stage drawn at random per
    sum: what the end to end's p99 would be with nothing but the work (no waiting between)."""
    import numpy as np

    if not all(len(floors[s]) for s in STAGES):
        return float("nan")
    rng = np.random.default_rng(0)
    total = sum(rng.choice(np.asarray(floors[s], float), draws) for s in STAGES)
    return float(np.percentile(total, 99))


def report(
    stages: dict,
    floors: dict,
    args,
    baud: int | None,
    traversability: bool,
    warm_floors: dict | None = None,
) -> dict:
    """Print the table; the flat result (and store the camera figure unless --no-save)."""
    from rover.bench.common import latency_summary, print_table

    summary = {k: latency_summary(v) for k, v in stages.items()}
    floor = {k: latency_summary(v) for k, v in floors.items()}
    warm = {k: latency_summary(v) for k, v in (warm_floors or floors).items()}
    floor_e2e = sum(floor[s]["p50_ms"] for s in STAGES)
    warm_e2e = sum(warm[s]["p50_ms"] for s in STAGES)
    floor_e2e_p99 = floor_sum_p99(floors)
    print(
        f"glass-to-motor on the rig, steering path, {summary['e2e']['n']} frames in "
        f"{args.seconds:g} s, traversability node {'beside it' if traversability else 'off'}, "
        f"{f'{baud} baud wire' if baud else 'pty (no wire time)'}"
    )
    rows = []
    for s in (*STAGES, "e2e"):
        fl = floor_e2e if s == "e2e" else floor[s]["p50_ms"]
        fl99 = floor_e2e_p99 if s == "e2e" else floor[s]["p99_ms"]
        hot = warm_e2e if s == "e2e" else warm[s]["p50_ms"]
        name = STAGE_NAMES.get(s, "end to end")
        su = summary[s]
        rows.append(
            [
                name,
                f"{su['p50_ms']:.3f}",
                f"{su['p99_ms']:.3f}",
                f"{fl:.3f}",
                f"{fl99:.3f}",
                f"{hot:.3f}",
            ]
        )
    print_table(
        ["stage", "p50 ms", "p99 ms", "floor p50 ms", "floor p99 ms", "back-to-back p50 ms"],
        rows,
    )
    e2e = summary["e2e"]
    result = {
        "frames": e2e["n"],
        "traversability": traversability,
        "baud": baud or 0,
        "p50_ms": round(e2e["p50_ms"], 3),
        "p99_ms": round(e2e["p99_ms"], 3),
        "floor_p50_ms": round(floor_e2e, 3),
        "floor_p99_ms": round(floor_e2e_p99, 3),
        "p50_over_floor": round(e2e["p50_ms"] / floor_e2e, 2) if floor_e2e else None,
        "warm_floor_p50_ms": round(warm_e2e, 3),
        "p50_over_warm_floor": round(e2e["p50_ms"] / warm_e2e, 2) if warm_e2e else None,
    }
    for s in STAGES:
        result[f"{s}_p50_ms"] = round(summary[s]["p50_ms"], 3)
        result[f"{s}_p99_ms"] = round(summary[s]["p99_ms"], 3)
        result[f"{s}_floor_p50_ms"] = round(floor[s]["p50_ms"], 3)
        result[f"{s}_floor_p99_ms"] = round(floor[s]["p99_ms"], 3)
        result[f"{s}_warm_floor_p50_ms"] = round(warm[s]["p50_ms"], 3)
    if e2e["n"] and not args.no_save:
        print(
            f"camera latency for the simulator ({result['capture_publish_p50_ms']} ms) stored in "
            f"{_save_figures(result)}"
        )
    return result
