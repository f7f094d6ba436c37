"""`rover bench camera`: how close in time the two eyes of a stereo pair are grabbed, and how
fast the camera driver delivers pairs.

The camera driver grabs both eyes before decoding either and stamps each right after its grab,
so a pair's skew (right stamp minus left stamp) is the time the second eye's grab takes. The
floor, measured in the same run: that grab alone, the right source's ``grab()`` timed on its
own. Sources: the robot config's `[camera]` (`--config`), or by default two synthetic 320x240
videos written for the run (raw I420, like `rover rig`). Target: skew p50 under 5 ms.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rover.bench.common import latency_summary, print_table

TARGET_SKEW_MS = 5.0  # a stereo pair is one instant: the eyes well within a 30 fps frame


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument("--frames", type=int, default=300, help="stereo pairs to time")
    parser.add_argument("--config", help="robot TOML whose [camera] to measure")


def _synthetic(folder: Path, frames: int) -> dict:
    import cv2

    size, rng = (320, 240), np.random.default_rng(0)
    for name in ("left.avi", "right.avi"):
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"I420"), 30.0, size)
        for _ in range(frames):
            writer.write(rng.integers(0, 255, (240, 320, 3), np.uint8))
        writer.release()
    return {"left": str(folder / "left.avi"), "right": str(folder / "right.avi"), "loop": True}


def _pairs(config, frames: int) -> tuple[list[float], float]:
    """Skews (ms) of `frames` pairs read as fast as the driver goes, and pairs per second."""
    from drivers.camera import open_camera

    camera = open_camera(config)
    try:
        camera.read()  # the first read opens the decoders: not a pair's cost
        start = time.perf_counter()
        skews = []
        for _ in range(frames):
            frame = camera.read()
            skews.append(abs(frame.right_stamp_ns - frame.left_stamp_ns) / 1e6)
        return skews, frames / (time.perf_counter() - start)
    finally:
        camera.close()


def _grab_floor(source: int | str, frames: int) -> list[float]:
    """One eye's grab alone (ms), the same source: what a pair's skew cannot beat."""
    import cv2

    cap = cv2.VideoCapture(source)
    grabs = []
    try:
        for _ in range(frames):
            start = time.perf_counter_ns()
            if not cap.grab():
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            grabs.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        cap.release()
    return grabs


def run(args: argparse.Namespace) -> dict:
    from drivers.camera import CameraConfig
    from rover.config import load_config

    with tempfile.TemporaryDirectory(prefix="rover-bench-camera-") as tmp:
        if args.config:
            config = load_config(args.config).camera
        else:
            config = CameraConfig(**_synthetic(Path(tmp), args.frames))
        skews, fps = _pairs(config, args.frames)
        second = config.left if config.side_by_side else config.right
        floor = latency_summary(_grab_floor(second, args.frames))
    skew = latency_summary(skews)
    print(f"stereo pairs from {args.config or 'two synthetic 320x240 videos'}, read back to back")
    print_table(
        ("measure", "p50 ms", "p99 ms", "n"),
        [
            ("eye-to-eye skew", f"{skew['p50_ms']:.3f}", f"{skew['p99_ms']:.3f}", str(skew["n"])),
            ("one grab (floor)", f"{floor['p50_ms']:.3f}", f"{floor['p99_ms']:.3f}", "-"),
        ],
    )
    met = skew["p50_ms"] < TARGET_SKEW_MS
    print(
        f"{fps:.0f} pairs/s; skew p50 {skew['p50_ms']:.2f} ms, target < {TARGET_SKEW_MS:g} ms: "
        f"{'met' if met else 'NOT met'}"
    )
    return {
        "skew_p50_ms": round(skew["p50_ms"], 4),
        "skew_p99_ms": round(skew["p99_ms"], 4),
        "floor_p50_ms": round(floor["p50_ms"], 4),
        "ratio_p50": round(skew["p50_ms"] / floor["p50_ms"], 3) if floor["p50_ms"] > 0 else None,
        "pairs_per_s": round(fps, 1),
        "target_skew_ms": TARGET_SKEW_MS,
        "met": met,
        "frames": skew["n"],
    }
