"""`rover bench traversability`: per-frame latency of the traversability node's work.

Frames come from an expert drive in the simulator (rendered beforehand, so rendering is not
timed). Per frame: disparity (SGBM), labels (plane fit and labelling), segmenter (network and
offline head), fuse (fusion and arcs), online (adapted head's learning step), and the total.
The floor, measured in the same run on the same frames, is the bare OpenCV StereoSGBM 3-way
call (64 disparities) the design notes quote at 3.5-5 ms on this machine: a loaded machine
inflates both, so read the total as a ratio to the floor.

Threads default to the node's: one torch thread (several processes share the cores) and
OpenCV's default for SGBM (every core); `--threads N` sets both, as `--opencv-threads` does
OpenCV's alone. The floor runs with the same OpenCV threads.
"""

from __future__ import annotations

import argparse
import time

import cv2

from rover.bench.common import expert_frames, latency_summary, print_table

STAGES = ("disparity", "labels", "segmenter", "fuse", "online", "total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument(
        "--model", default="bundled", help="segmenter file; 'bundled' (default); '' stereo only"
    )
    parser.add_argument("--scenario", default="forest", help="scenario name or .toml path")
    parser.add_argument("--frames", type=int, default=200, help="frames per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the frames")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and OpenCV threads (default: 1 and all)"
    )
    parser.add_argument(
        "--opencv-threads", type=int, default=None, help="OpenCV's threads (SGBM) alone"
    )
    parser.add_argument("--no-online", action="store_true", help="online adaptation off")


def measure_floor(frames) -> list[float]:
    """Milliseconds of a bare StereoSGBM 3-way (64 disparities, block 5) on grey pairs."""
    sgbm = cv2.StereoSGBM_create(0, 64, 5, 200, 800, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    greys = [
        (cv2.cvtColor(lt, cv2.COLOR_RGB2GRAY), cv2.cvtColor(rt, cv2.COLOR_RGB2GRAY))
        for lt, rt in frames
    ]
    out = []
    for gl, gr in greys:
        start = time.perf_counter_ns()
        sgbm.compute(gl, gr)
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def run(args: argparse.Namespace) -> dict:
    """Run the bench, print a table, return the flat result dict."""
    from perception.traversability.pipeline import TraversabilityConfig, TraversabilityPipeline

    threads_before = cv2.getNumThreads()
    torch_threads = args.threads or 1
    cv_threads = args.opencv_threads or args.threads or threads_before
    cv2.setNumThreads(cv_threads)
    try:
        frames = expert_frames(args.scenario, args.frames)
        cfg = TraversabilityConfig(
            model=args.model, threads=torch_threads, opencv_threads=cv_threads
        )
        cfg = cfg.with_overrides(online=not args.no_online)
        pipe = TraversabilityPipeline.from_config(cfg)
        for left, right in frames[:10]:  # warm-up: allocators, torch kernels
            pipe.process(left, right)
        stages: dict[str, list[float]] = {s: [] for s in STAGES}
        floor: list[float] = []
        for _ in range(args.repeats):
            floor += measure_floor(frames)
            for left, right in frames:
                timings = pipe.process(left, right).timings_ms
                for s in STAGES:
                    stages[s].append(timings[s])
    finally:
        cv2.setNumThreads(threads_before)
    summary = {s: latency_summary(v) for s, v in stages.items()}
    fl = latency_summary(floor)
    print(
        f"traversability node work, {args.scenario}, 320x240, {len(frames)} frames x "
        f"{args.repeats}, torch {torch_threads} / OpenCV {cv_threads} thread(s), model {args.model or 'none (stereo only)'}, "
        f"online {'on' if pipe.online is not None and pipe.online.cfg.enabled else 'off'}"
    )
    rows = [["floor: bare SGBM 3-way", f"{fl['p50_ms']:.2f}", f"{fl['p99_ms']:.2f}", "1.00"]]
    for s in STAGES:
        p50 = summary[s]["p50_ms"]
        rows.append([s, f"{p50:.2f}", f"{summary[s]['p99_ms']:.2f}", f"{p50 / fl['p50_ms']:.2f}"])
    print_table(["stage", "p50 ms", "p99 ms", "p50 / floor"], rows)
    result = {
        "scenario": args.scenario,
        "frames": len(frames) * args.repeats,
        "threads": torch_threads,
        "opencv_threads": cv_threads,
        "model": args.model,
        "online": pipe.online is not None and pipe.online.cfg.enabled,
    }
    for s in STAGES:
        result[f"{s}_p50_ms"] = round(summary[s]["p50_ms"], 3)
        result[f"{s}_p99_ms"] = round(summary[s]["p99_ms"], 3)
    result["p50_ms"], result["p99_ms"] = result["total_p50_ms"], result["total_p99_ms"]
    result["floor_p50_ms"] = round(fl["p50_ms"], 3)
    result["total_over_floor"] = round(summary["total"]["p50_ms"] / fl["p50_ms"], 2)
    result["frames_per_s"] = round(1000.0 / summary["total"]["p50_ms"], 1)
    return result
