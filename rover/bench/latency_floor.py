"""The floor of `rover bench latency`: each glass-to-motor stage's bare cost, on this machine.

- capture_publish: a bare OpenCV read of the rig's cameras from the left eye's capture stamp
  (where the stack's stage starts: the right eye's grab, both decodes, colour, rectify), in
  one thread as the camera node reads, plus a bare pyzmq hop of the stereo pair between two
  processes (``rover bench bus``'s floor);
- bus: a bare pyzmq hop of a small message between two processes;
- steering: the network's bare forward and decoding on a prepared pair, run as the steering
  node runs it (its frozen graph where that gives the same answers);
- control: the controller's arbitration and the DRIVE frame's encoding, in this process;
- serial: a DRIVE frame written on a bare pty to another thread reading it, plus the wire time
  of a DRIVE at the rig's baud rate.

Each is timed at the stack's cadence, one sample per camera period (``FLOOR_HZ``, as the pyzmq
hops are), with the process idle in between, as a node is between frames: the work of a stage,
none of the waiting for a wake-up or a core that the stack adds between stages. On this VM a
network forward after 5-33 ms asleep costs 1.5-3x its cost back to back (the host's core went to
other work meanwhile; warming the weights first does not restore it), so a back-to-back floor is
work no node answering a camera ever gets to do: it is kept as the ``warm`` figures
(``measure(..., paced=False)``), for comparison.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from rover.node import RateKeeper

DRIVE_BYTES = 13  # a DRIVE frame and the delimiter that may precede it

FRAMES = 150
WARM_UP = 10  # forwards before timing: a frozen graph optimises itself in its first runs
FLOOR_HZ = 30.0  # the rig's camera rate: each stage's work comes once a frame


def _pace(hz: float | None) -> Callable[[], object]:
    """A wait for the next period of `hz` (`rover.node.RateKeeper`), or nothing unpaced."""
    return RateKeeper(hz).keep_time if hz else lambda: None


def camera_reads(
    toml: Path, count: int = FRAMES, hz: float | None = FLOOR_HZ
) -> tuple[list[float], list]:
    """Milliseconds per bare stereo read of the rig's cameras from the left eye's capture
    stamp to the pair in hand (one read per period of `hz`), and the pairs read."""
    import cv2

    from drivers.camera import EndOfStream, open_camera
    from rover.config import load_config

    cv2.setNumThreads(1)  # as the camera node runs
    config = load_config(toml, ["camera.loop=true"]).camera
    camera = open_camera(config)
    times_ms, pairs = [], []
    wait = _pace(hz)
    try:
        while len(pairs) < count:
            wait()
            try:
                frame = camera.read()
            except EndOfStream:
                break
            times_ms.append((time.monotonic_ns() - frame.left_stamp_ns) / 1e6)
            pairs.append((frame.left, frame.right))
    finally:
        camera.close()
    return times_ms, pairs


def forward_costs(model: Path, pairs: list, hz: float | None = FLOOR_HZ) -> list[float]:
    """Milliseconds of the steering node's network (and decoding) on each prepared pair, one
    per period of `hz` after the warm-up."""
    import torch

    from perception.infer import SteeringPredictor

    torch.set_num_threads(1)  # the [steering] default
    predictor = SteeringPredictor(model, device="cpu")
    predictor.freeze()
    prepared = [predictor.prepare(left, right).clone() for left, right in pairs]
    out_ms = []
    wait = _pace(hz)
    with torch.inference_mode():
        for i, x in enumerate(prepared[:WARM_UP] + prepared):
            if i >= WARM_UP:
                wait()
            start = time.perf_counter_ns()
            predictor.forward_prepared(x)
            if i >= WARM_UP:
                out_ms.append((time.perf_counter_ns() - start) / 1e6)
    return out_ms


def control_costs(count: int = FRAMES, hz: float | None = FLOOR_HZ) -> list[float]:
    """Milliseconds of one estimate through the controller and into a DRIVE frame, one per
    period of `hz` after 100 to warm up."""
    from drivers.protocol import DriveCommand, encode_drive
    from rover import messages as m
    from rover.control import ControlConfig, Controller

    controller = Controller(ControlConfig(autopilot_without_teleop=True))
    out_ms = []
    wait = _pace(hz)
    for i in range(count + 100):
        if i >= 100:
            wait()
        now = time.monotonic_ns()
        est = m.SteeringEstimate(frame_seq=i, stamp_ns=now, steering=0.1, throttle=0.3)
        start = time.perf_counter_ns()
        controller.on_estimate(est, now)
        out = controller.output(now)
        encode_drive(DriveCommand(i & 0xFFFF, out.steering, out.throttle, out.arm, out.estop))
        out_ms.append((time.perf_counter_ns() - start) / 1e6)
    return out_ms[100:]


def pty_one_way(count: int, timeout_s: float = 2.0, hz: float | None = FLOOR_HZ) -> list[float]:
    """Milliseconds from writing a DRIVE frame on a bare pty to another thread reading it,
    one per period of `hz`."""
    from drivers.protocol import DriveCommand, encode_drive

    frame = encode_drive(DriveCommand(1, 0.1, 0.2, arm=True))
    master, slave = os.openpty()
    tty.setraw(slave)
    arrived: queue.SimpleQueue[int] = queue.SimpleQueue()

    def reader() -> None:
        got = b""
        while got.count(0) < count:
            if not select.select([master], [], [], timeout_s)[0]:
                return
            data = os.read(master, 4096)
            if data.endswith(b"\x00"):
                arrived.put(time.monotonic_ns())
            got += data

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    out_ms = []
    wait = _pace(hz)
    try:
        for _ in range(count):
            wait()
            start = time.monotonic_ns()
            os.write(slave, frame)
            try:
                out_ms.append((arrived.get(timeout=timeout_s) - start) / 1e6)
            except queue.Empty:
                break  # starved past the timeout: keep what was measured
    finally:
        thread.join(timeout_s)
        os.close(master)
        os.close(slave)
    return out_ms


def measure(
    toml: Path, model: Path, baud: int | None, frames: int = FRAMES, paced: bool = True
) -> dict[str, list[float]]:
    """Each stage's bare cost in milliseconds (a list of samples per stage): at the stack's
    cadence, or back to back (``paced=False``: the warm figures; the pyzmq hops are paced in
    both, as a publisher at a rate is)."""
    from rover.bench import bus as bus_bench

    hz = FLOOR_HZ if paced else None
    reads_ms, pairs = camera_reads(toml, frames, hz)
    pair_hop = bus_bench._measure("raw", len(reads_ms), 30.0, (320, 240))["lat_ms"]
    small_hop = bus_bench._measure("raw", frames, FLOOR_HZ, (4, 4))["lat_ms"]
    forward_ms = forward_costs(model, pairs, hz)
    wire_ms = DRIVE_BYTES * 10 / baud * 1000 if baud else 0.0
    serial_ms = [one_way + wire_ms for one_way in pty_one_way(frames, hz=hz)]
    return {
        "capture_publish": [a + b for a, b in zip(reads_ms, pair_hop, strict=False)],
        "bus": small_hop,
        "steering": forward_ms,
        "control": control_costs(frames, hz),
        "serial": serial_ms,
    }
