"""`rover bench bus`: stereo frames through the real bus between two processes, vs raw pyzmq.

A child process publishes 320x240 stereo pairs at 30 Hz; this process subscribes (newest-frame
mode, as perception does) and measures capture-to-receipt latency from the header's monotonic
stamp. The floor is the same pair sent with bare pyzmq (zero-copy multipart, no header encode or
decode, no registry) in the same run; rounds alternate so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import struct
import time
import uuid

import numpy as np
import zmq

from rover import bus, topics
from rover import messages as m
from rover.bench.common import latency_summary, print_table

RAW = struct.Struct("<qq")  # seq, stamp_ns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=450, help="measured frames per variant")
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate, Hz")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant")


def _pair(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 255, (height, width, 3), np.uint8),
        rng.integers(0, 255, (height, width, 3), np.uint8),
    )


def _publisher(variant: str, namespace: str, n: int, rate: float, size, ready, go) -> None:
    left, right = _pair(*size)
    bus_cfg = topics.BusConfig(namespace=namespace)
    if variant == "rover":
        pub = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
        send = lambda: pub.publish(m.StereoImage(left=left, right=right))  # noqa: E731
    else:
        sock = bus.context().socket(zmq.PUB)
        sock.bind(bus_cfg.endpoint(topics.CAMERA_STEREO))
        seq = iter(range(1 << 62))
        send = lambda: sock.send_multipart(  # noqa: E731
            [RAW.pack(next(seq), time.monotonic_ns()), left, right], copy=False
        )
    while not go.is_set():  # slow joiner: publish until the subscriber has heard one
        send()
        go.wait(0.01)
    ready.set()
    rk_period = 1.0 / rate
    next_t = time.monotonic()
    for _ in range(n):
        send()
        next_t += rk_period
        time.sleep(max(0.0, next_t - time.monotonic()))


def _measure(variant: str, n: int, rate: float, size) -> dict:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    bus_cfg = topics.BusConfig(namespace=namespace)
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    if variant == "rover":
        sub = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg, newest=True)
        recv = lambda t: _rover_recv(sub, t)  # noqa: E731
    else:
        sock = bus.context().socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(bus_cfg.endpoint(topics.CAMERA_STEREO))
        recv = lambda t: _raw_recv(sock, t)  # noqa: E731
    proc = ctx.Process(target=_publisher, args=(variant, namespace, n, rate, size, ready, go))
    proc.start()
    while recv(100) is None:
        pass
    go.set()
    ready.wait(10)
    while recv(0) is not None:  # discard warm-up frames
        pass
    lat, seqs = [], []
    deadline = time.monotonic() + n / rate + 5
    while len(lat) < n and time.monotonic() < deadline:
        msg = recv(200)
        if msg is None:
            if not proc.is_alive():
                break
            continue
        lat.append((time.monotonic_ns() - msg[1]) / 1e6)
        seqs.append(msg[0])
    proc.join(5)
    drops = (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else n
    return {"lat_ms": lat, "drops": drops + (n - len(lat))}


def _raw_recv(sock: zmq.Socket, timeout_ms: float):
    if not sock.poll(timeout_ms):
        return None
    parts = sock.recv_multipart(copy=False)
    np.frombuffer(parts[1].buffer, np.uint8)  # touch the buffers as a consumer would
    return RAW.unpack(parts[0].bytes)


def _rover_recv(sub: bus.Subscriber, timeout_ms: float):
    msg = sub.receive(timeout_ms)
    return None if msg is None else (msg.seq, msg.stamp_ns)


def run(args: argparse.Namespace) -> dict:
    size = (args.width, args.height)
    per_round = max(10, args.frames // args.rounds)
    results: dict[str, dict] = {
        "raw pyzmq (floor)": {"lat_ms": [], "drops": 0},
        "rover bus": {"lat_ms": [], "drops": 0},
    }
    for _ in range(args.rounds):
        for name, variant in (("raw pyzmq (floor)", "raw"), ("rover bus", "rover")):
            res = _measure(variant, per_round, args.rate, size)
            results[name]["lat_ms"] += res["lat_ms"]
            results[name]["drops"] += res["drops"]
    floor = latency_summary(results["raw pyzmq (floor)"]["lat_ms"])
    ours = latency_summary(results["rover bus"]["lat_ms"])
    rows = [
        (name, f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}", str(r["drops"]), str(s["n"]))
        for name, r, s in (
            ("raw pyzmq (floor)", results["raw pyzmq (floor)"], floor),
            ("rover bus", results["rover bus"], ours),
        )
    ]
    print(
        f"stereo {args.width}x{args.height} RGB over ipc at {args.rate:g} Hz, "
        "publisher and subscriber in separate processes"
    )
    print_table(("path", "p50 ms", "p99 ms", "drops", "frames"), rows)
    return {
        "p50_ms": round(ours["p50_ms"], 4),
        "p99_ms": round(ours["p99_ms"], 4),
        "floor_p50_ms": round(floor["p50_ms"], 4),
        "floor_p99_ms": round(floor["p99_ms"], 4),
        "ratio_p50": round(ours["p50_ms"] / floor["p50_ms"], 3),
        "drops": results["rover bus"]["drops"],
        "frames": ours["n"],
    }
