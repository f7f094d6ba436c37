"""The doctor's probes that touch devices and processes: cameras, firmware, live nodes.

Kept apart from `rover.doctor` (the checks and their lines) so each stays small. A camera is
read in a child process: a device or stream that hangs in OpenCV cannot be interrupted, but a
child can be killed, and the doctor then says so instead of hanging.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

READ_SECONDS = 2.0
MAX_PAIRS = 90
KEEP_PAIRS = 30  # sent back for the disk check
STARTUP_TIMEOUT_S = 90.0


@dataclass
class CameraProbe:
    """What a camera did in its probe."""

    error: str = ""
    frames: int = 0
    fps: float = 0.0
    skew_p99_ms: float = 0.0
    pairs: list = field(default_factory=list)


def _camera_child(config, conn) -> None:
    """In the child: open, read for READ_SECONDS (or MAX_PAIRS), send stamps and a few pairs."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # the line we print says it better
    from drivers.camera import EndOfStream, open_camera
    from rover.errors import RoverError

    try:
        camera = open_camera(config)
    except RoverError as exc:
        conn.send(("error", str(exc)))
        return
    started, count = time.monotonic(), 0
    try:
        while count < MAX_PAIRS and time.monotonic() - started < READ_SECONDS:
            frame = camera.read()
            pair = (frame.left, frame.right) if count < KEEP_PAIRS else None
            conn.send(("frame", frame.left_stamp_ns, frame.right_stamp_ns, pair))
            count += 1
    except EndOfStream as exc:
        conn.send(("end", str(exc)))
    except RoverError as exc:
        conn.send(("error", str(exc)))
    finally:
        camera.close()
        conn.send(("done",))


def probe_camera(config, timeout_s: float) -> CameraProbe:
    """Read the configured stereo camera for a couple of seconds in a child process."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_camera_child, args=(config, child), daemon=True)
    proc.start()
    child.close()
    stamps, result = [], CameraProbe()
    deadline = time.monotonic() + timeout_s + READ_SECONDS
    try:
        while True:
            wait_s = deadline - time.monotonic() if stamps else timeout_s
            if wait_s <= 0 or not parent.poll(wait_s):
                result.error = _silent(config, timeout_s, stamps)
                break
            try:
                message = parent.recv()
            except EOFError:
                result.error = result.error or "the camera probe died: run `rover -v teleop`"
                break
            if message[0] == "frame":
                stamps.append(message[1:3])
                if message[3] is not None:
                    result.pairs.append(message[3])
            elif message[0] == "error":
                result.error = message[1]
            elif message[0] == "end" and not stamps:
                result.error = f"{message[1]}: the file has no frames; point [camera] at a video"
            elif message[0] == "done":
                break
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if result.error:
        return result
    return _rates(result, stamps)


def _silent(config, timeout_s: float, stamps: list) -> str:
    sources = "the source" if config.side_by_side else f"{config.left} / {config.right}"
    if stamps:
        return f"camera {sources} stopped delivering after {len(stamps)} frames"
    return (
        f"camera {sources} opened no stream and delivered no frame in {timeout_s:g} s: check "
        "the cable, that the stream or pipe has a sender, or set [camera] left/right"
    )


def _rates(result: CameraProbe, stamps: list) -> CameraProbe:
    result.frames = len(stamps)
    lefts = np.array([s[0] for s in stamps], dtype=np.int64)
    rights = np.array([s[1] for s in stamps], dtype=np.int64)
    if len(stamps) >= 2 and lefts[-1] > lefts[0]:
        result.fps = (len(stamps) - 1) / ((lefts[-1] - lefts[0]) / 1e9)
    result.skew_p99_ms = float(np.percentile(np.abs(rights - lefts), 99) / 1e6) if stamps else 0.0
    return result


def probe_firmware(motor, reply_s: float) -> list[tuple[str, str, str]]:
    """Talk to the motor controller: does it answer, does its watchdog trip. Disarmed only."""
    from drivers.protocol import DriveCommand
    from drivers.serial_link import SerialMotorLink
    from rover.errors import RoverError

    try:
        link = SerialMotorLink(motor)
    except RoverError as exc:
        return [("FAIL", "firmware", str(exc))]
    try:
        start = time.monotonic()
        state = _exchange(link, DriveCommand(1, 0.0, 0.0), reply_s)
        if state is None:
            return [
                (
                    "FAIL",
                    "firmware",
                    f"no STATE reply on {motor.port} within {reply_s:g} s: is the firmware flashed "
                    f"(drivers/firmware/README.md), and does [motor] baud = {motor.baud} match it?",
                )
            ]
        rtt_ms = (time.monotonic() - start) * 1000
        found = [
            (
                "ok",
                "firmware",
                f"answers DRIVE with STATE in {rtt_ms:.1f} ms (protocol 1: it has no version "
                f"query, so the CRC-checked echo of the command's seq is its answer), uptime "
                f"{state.uptime_ms / 1000:.1f} s, {state.bad_frames} bad frames",
            )
        ]
        found.append(_watchdog(link, reply_s))
        return found
    finally:
        link.close()


def _exchange(link, cmd, reply_s: float):
    """Send `cmd`, return the STATE echoing its seq (None if none came in time)."""
    link.send(cmd)
    deadline = time.monotonic() + reply_s
    while (left := deadline - time.monotonic()) > 0:
        for state in link.poll(timeout_s=left):
            if state.seq == cmd.seq:
                return state
    return None


def _watchdog(link, reply_s: float) -> tuple[str, str, str]:
    """Commands at 50 Hz, then silence: the next STATE must carry the WATCHDOG bit. A longer
    silence second (a simulated MCU starved of CPU runs behind the wall clock)."""
    from drivers.protocol import DriveCommand

    seq = 2
    for silence_s in (0.6, 2.0):
        for _ in range(10):
            link.send(DriveCommand(seq, 0.0, 0.0))
            seq += 1
            time.sleep(0.02)  # the host's 50 Hz command rate, as the control node sends
            link.poll()
        time.sleep(silence_s)  # the silence the watchdog must notice
        state = _exchange(link, DriveCommand(seq, 0.0, 0.0), reply_s)
        seq += 1
        if state is None:
            return (
                "FAIL",
                "watchdog",
                "no STATE after the silence: the firmware stopped answering",
            )
        if state.watchdog_tripped:
            text = f"tripped within {silence_s:g} s without commands (motors zeroed)"
            return ("ok", "watchdog", text)
    return (
        "FAIL",
        "watchdog",
        f"did not trip after {silence_s:g} s without commands: the motors would keep running "
        "if the host died; reflash drivers/firmware",
    )


def run_nodes(args, model: str, seconds: float) -> Iterator[tuple[str, dict, str]]:
    """The real camera, steering and traversability nodes on live frames: each node's
    per-frame latency (its own ``latency_ms``) over `seconds` and what the rest of the machine
    used meanwhile (``others``: rover.cpu_load.OtherLoad), or why it did not run."""
    from rover import bus, topics
    from rover.bench.common import latency_summary
    from rover.topics import BusConfig

    bus_cfg = BusConfig(namespace=f"doctor{os.getpid()}x{uuid.uuid4().hex[:6]}")
    common = ["--namespace", bus_cfg.namespace, "--set", "camera.loop=true"]
    if args.config:
        common += ["--config", args.config]
    for item in args.set:
        common += ["--set", item]
    nodes = {
        "camera": ["rover.nodes.camera"],
        "steering": ["rover.nodes.steering", "--model", model],
        "traversability": ["rover.nodes.traversability"],
    }
    subs = {
        "steering": bus.Subscriber(topics.PERCEPTION_STEERING, bus_cfg, newest=False, hwm=1000),
        "traversability": bus.Subscriber(
            topics.PERCEPTION_TRAVERSABILITY, bus_cfg, newest=False, hwm=1000
        ),
    }
    with contextlib.ExitStack() as stack:
        logs = {name: stack.enter_context(tempfile.TemporaryFile()) for name in nodes}
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", *argv[:1], *common, *argv[1:]],
                stderr=logs[name],
                stdin=subprocess.DEVNULL,
                env=_node_env(name),
            )
            for name, argv in nodes.items()
        }
        stack.callback(_stop, procs, subs, bus_cfg)
        yield from _collect(procs, logs, subs, seconds, latency_summary)


def _node_env(name: str) -> dict[str, str]:
    """The environment a robot stack's manager gives node `name`: its scheduling class
    (rover.priority), so the budgets are judged as the nodes will run."""
    from rover import priority
    from rover.manager import NODES
    from rover.runspec import Run

    spec = next(s for s in NODES if s.name == name)
    return {**os.environ, priority.PRIORITY_ENV: spec.priority(Run(mode="drive"))}


def _stop(procs, subs, bus_cfg) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs.values():
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for sub in subs.values():
        sub.close()
    bus_cfg.remove_ipc_root()


def _collect(procs, logs, subs, seconds, summarise) -> Iterator[tuple[str, dict, str]]:
    from rover import bus
    from rover.cpu_load import CpuWatch

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    heard: set[str] = set()
    while heard != set(subs):  # models loaded, every node subscribed: one answer from each
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            for name in dead or sorted(set(subs) - heard):
                yield name, {}, _why(name, procs[name], logs[name])
            return
        for sub in bus.wait_any(list(subs.values()), 100):
            sub.drain()
            heard |= {n for n, s in subs.items() if s is sub}
    latencies: dict[str, list[float]] = {name: [] for name in subs}
    watch = CpuWatch([p.pid for p in procs.values()])  # the rest of the machine, meanwhile
    watch.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for sub in bus.wait_any(list(subs.values()), 100):
            name = next(n for n, s in subs.items() if s is sub)
            latencies[name] += [msg.latency_ms for msg in sub.drain()]
    others = watch.stop()
    for name, values in latencies.items():
        if values:
            yield name, {**summarise(values), "others": others}, ""
        else:
            yield (
                name,
                {},
                f"answered no frame in {seconds:g} s: {_why(name, procs[name], logs[name])}",
            )


def _why(name: str, proc, log) -> str:
    log.seek(0)
    lines = log.read().decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else ""
    state = "running" if proc.poll() is None else f"exited with code {proc.returncode}"
    return f"node {name} {state}" + (f": {last}" if last else " and said nothing")
