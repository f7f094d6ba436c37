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

Each is measured back to back in a loop (warm caches): the work of a stage, none of the
waiting for a wake-up or a core that the stack adds between stages.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import time
import tty
from pathlib import Path

DRIVE_BYTES = 13  # a DRIVE frame and the delimiter that may precede it

FRAMES = 150
WARM_UP = 10  # forwards before timing: a frozen graph optimises itself in its first runs


def camera_reads(toml: Path, count: int = FRAMES) -> tuple[list[float], list]:
    """Milliseconds per bare stereo read of the rig's cameras from the left eye's capture
    stamp to the pair in hand, and the pairs read."""
    import cv2

    from drivers.camera import EndOfStream, open_camera
    from rover.config import load_config

    cv2.setNumThreads(1)  # as the camera node runs
    config = load_config(toml, ["camera.loop=true"]).camera
    camera = open_camera(config)
    times_ms, pairs = [], []
    try:
        while len(pairs) < count:
            try:
                frame = camera.read()
            except EndOfStream:
                break
            times_ms.append((time.monotonic_ns() - frame.left_stamp_ns) / 1e6)
            pairs.append((frame.left, frame.right))
    finally:
        camera.close()
    return times_ms, pairs


def forward_costs(model: Path, pairs: list) -> list[float]:
    """Milliseconds of the steering node's network (and decoding) on each prepared pair."""
    import torch

    from perception.infer import SteeringPredictor

    torch.set_num_threads(1)  # the [steering] default
    predictor = SteeringPredictor(model, device="cpu")
    predictor.freeze()
    prepared = [predictor.prepare(left, right).clone() for left, right in pairs]
    out_ms = []
    with torch.inference_mode():
        for i, x in enumerate(prepared[:WARM_UP] + prepared):
            start = time.perf_counter_ns()
            predictor.forward_prepared(x)
            if i >= WARM_UP:
                out_ms.append((time.perf_counter_ns() - start) / 1e6)
    return out_ms


def control_costs(count: int = 2000) -> list[float]:
    """Milliseconds of one estimate through the controller and into a DRIVE frame."""
    from drivers.protocol import DriveCommand, encode_drive
    from rover import messages as m
    from rover.control import ControlConfig, Controller

    controller = Controller(ControlConfig(autopilot_without_teleop=True))
    out_ms = []
    for i in range(count):
        now = time.monotonic_ns()
        est = m.SteeringEstimate(frame_seq=i, stamp_ns=now, steering=0.1, throttle=0.3)
        start = time.perf_counter_ns()
        controller.on_estimate(est, now)
        out = controller.output(now)
        encode_drive(DriveCommand(i & 0xFFFF, out.steering, out.throttle, out.arm, out.estop))
        out_ms.append((time.perf_counter_ns() - start) / 1e6)
    return out_ms[100:]


def pty_one_way(count: int, timeout_s: float = 2.0) -> list[float]:
    """Milliseconds from writing a DRIVE frame on a bare pty to another thread reading it."""
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
    try:
        for _ in range(count):
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
    toml: Path, model: Path, baud: int | None, frames: int = FRAMES
) -> dict[str, list[float]]:
    """Each stage's bare cost in milliseconds (a list of samples per stage)."""
    from rover.bench import bus as bus_bench

    reads_ms, pairs = camera_reads(toml, frames)
    pair_hop = bus_bench._measure("raw", len(reads_ms), 30.0, (320, 240))["lat_ms"]
    small_hop = bus_bench._measure("raw", 200, 100.0, (4, 4))["lat_ms"]
    forward_ms = forward_costs(model, pairs)
    wire_ms = DRIVE_BYTES * 10 / baud * 1000 if baud else 0.0
    serial_ms = [one_way + wire_ms for one_way in pty_one_way(500)]
    return {
        "capture_publish": [a + b for a, b in zip(reads_ms, pair_hop, strict=False)],
        "bus": small_hop,
        "steering": forward_ms,
        "control": control_costs(),
        "serial": serial_ms,
    }
