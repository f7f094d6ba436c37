"""`rover bench sim`: the simulator core alone, headless, on one thread by default.

- render: stereo pairs per second along a real expert trajectory (images; ground truth left
  lazy) and with the ground truth arrays materialised too;
- sim: whole steps per second, render + expert + vehicle + collisions, as a driver sees them;
- whole stack: steps per second in lock-step (as fast as the stack answers) and in real
  time (paced by the camera rate: the target);
- floor, measured in the same run: one table lookup per pixel of a stereo pair plus the RGB
  conversion, the least any textured renderer has to do per frame.

Rates come from median frame times (robust to other processes preempting the bench); the
``*_mean_*`` figures include every stall.

Returns a flat dict; callers (the lock-step bench) merge their own figures into it.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from rover.bench.common import latency_summary, print_table
from rover.bench.lockstep import measure_lockstep
from sim.expert import Expert
from sim.simulation import Simulation

_WARMUP = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument("--scenario", default="forest", help="scenario name or .toml path")
    parser.add_argument("--seed", type=int, default=None, help="world seed (default: file's)")
    parser.add_argument("--frames", type=int, default=300, help="frames per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repeat and keep the median")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads while measuring")
    parser.add_argument(
        "--lockstep-s",
        type=float,
        default=20.0,
        help="simulated seconds of the whole-stack lock-step run (0: skip)",
    )
    parser.add_argument(
        "--realtime-s",
        type=float,
        default=4.0,
        help="seconds of the whole stack in real time, paced by the camera rate (0: skip)",
    )


def expert_poses(sim: Simulation, frames: int) -> list[tuple[float, float, float]]:
    """Vehicle poses along the expert's drive (restarting at the end of an episode)."""
    expert, poses = Expert(), []
    sim.reset()
    while len(poses) < frames:
        if sim.done:
            sim.reset()
            expert.reset()
        state = sim.step(*expert.act(sim.observation()))
        poses.append((state.x_m, state.y_m, state.yaw_rad))
    return poses


def measure_render(sim: Simulation, poses, truth: bool = False) -> list[float]:
    """Milliseconds per stereo pair over ``poses``; ``truth`` also builds depth and shape ids."""
    renderer, times_ms = sim.renderer, []
    for x, y, yaw in poses[:_WARMUP] + poses:
        start = time.perf_counter_ns()
        _, _, gt = renderer.render_vehicle(x, y, yaw)
        if truth:
            _ = gt.depth_m, gt.shape_id
        times_ms.append((time.perf_counter_ns() - start) / 1e6)
    return times_ms[_WARMUP:]


def measure_sim(sim: Simulation, frames: int) -> dict[str, list[float]]:
    """Per-step milliseconds of render, expert and step over ``frames`` closed-loop steps."""
    expert = Expert()
    sim.reset()
    parts: dict[str, list[float]] = {"total": [], "render": [], "expert": [], "step": []}
    for i in range(frames + _WARMUP):
        if sim.done:
            sim.reset()
            expert.reset()
        t0 = time.perf_counter_ns()
        sim.render()
        t1 = time.perf_counter_ns()
        command = expert.act(sim.observation())
        t2 = time.perf_counter_ns()
        sim.step(*command)
        t3 = time.perf_counter_ns()
        if i >= _WARMUP:
            for key, ns in (("render", t1 - t0), ("expert", t2 - t1), ("step", t3 - t2)):
                parts[key].append(ns / 1e6)
            parts["total"].append((t3 - t0) / 1e6)
    return parts


def measure_floor(sim: Simulation, frames: int) -> list[float]:
    """Milliseconds for one LUT gather per pixel of a stereo pair plus RGBA->RGB."""
    cam, lut = sim.camera, sim.renderer.look.lut
    rng = np.random.default_rng(0)
    index = rng.integers(0, lut.size, (2, cam.height_px, cam.width_px)).astype(np.int32)
    times_ms = []
    for _ in range(frames + _WARMUP):
        start = time.perf_counter_ns()
        rgba = lut.take(index, mode="clip")
        cv2.cvtColor(rgba.view(np.uint8).reshape(-1, cam.width_px, 4), cv2.COLOR_RGBA2RGB)
        times_ms.append((time.perf_counter_ns() - start) / 1e6)
    return times_ms[_WARMUP:]


def _median_rate(runs: list[list[float]]) -> tuple[float, list[float]]:
    """Items per second from the median item time (median over repeats), and all samples.

    Medians, as DESIGN.md asks on this shared machine: another process preempting the bench
    adds 10 ms spikes that say nothing about the renderer. The mean rate is reported as well.
    """
    rates = [1000.0 / float(np.median(r)) for r in runs]
    return float(np.median(rates)), [v for r in runs for v in r]


def _mean_rate(samples_ms: list[float]) -> float:
    return 1000.0 * len(samples_ms) / sum(samples_ms)


def _print_rows(rows: list) -> None:
    print_table(
        ["what", "p50 ms", "p99 ms", "per s"],
        [
            [name, f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}", "" if r is None else f"{r:.0f}"]
            for name, s, r in rows
        ],
    )


def run(args: argparse.Namespace) -> dict:
    """Run the bench, print a table, return the flat result dict."""
    threads_before = cv2.getNumThreads()
    cv2.setNumThreads(args.threads)
    try:
        sim = Simulation(args.scenario, args.seed)
        poses = expert_poses(sim, args.frames)
        render_rate, render_ms = _median_rate(
            [measure_render(sim, poses) for _ in range(args.repeats)]
        )
        truth_rate, truth_ms = _median_rate(
            [measure_render(sim, poses, truth=True) for _ in range(args.repeats)]
        )
        sims = [measure_sim(sim, args.frames) for _ in range(args.repeats)]
        floor = latency_summary(measure_floor(sim, args.frames))
    finally:
        cv2.setNumThreads(threads_before)
    sim_rate, _ = _median_rate([s["total"] for s in sims])
    pooled = {k: [v for s in sims for v in s[k]] for k in sims[0]}
    summary = {k: latency_summary(v) for k, v in pooled.items()}
    render, truth = latency_summary(render_ms), latency_summary(truth_ms)
    lockstep = (
        measure_lockstep(args.scenario, args.seed, args.lockstep_s) if args.lockstep_s > 0 else None
    )
    realtime = (
        measure_lockstep(args.scenario, args.seed, args.realtime_s, lockstep=False)
        if args.realtime_s > 0
        else None
    )
    camera_hz = 1.0 / sim.dt_s
    cam = sim.camera
    print(
        f"simulator core, {args.scenario}, {cam.width_px}x{cam.height_px} per eye, "
        f"{args.frames} frames x {args.repeats}, {args.threads} OpenCV thread(s)"
    )
    _print_rows(
        [
            ["floor: 1 lookup/pixel", floor, 1000.0 / floor["p50_ms"]],
            ["render (images)", render, render_rate],
            ["render + ground truth", truth, truth_rate],
            ["sim step: render+expert+step", summary["total"], sim_rate],
            ["  of which expert", summary["expert"], None],
            ["  of which vehicle+collisions", summary["step"], None],
        ]
    )
    if lockstep is not None:
        print(
            f"whole stack in lock-step (sim, bus, control, serial pty, emulator): "
            f"{lockstep['steps_per_s']:.0f} steps/s over {lockstep['steps']} steps, "
            f"{lockstep['late_frames']} late frames"
        )
    if realtime is not None:
        print(
            f"whole stack in real time: {realtime['steps_per_s']:.1f} steps/s over "
            f"{realtime['wall_s']:.1f} s (target: the camera rate, {camera_hz:.0f}/s)"
        )
    return {
        "scenario": args.scenario,
        "frames": args.frames,
        "threads": args.threads,
        "render_pairs_per_s": round(render_rate, 1),
        "render_mean_pairs_per_s": round(_mean_rate(render_ms), 1),
        "render_p50_ms": round(render["p50_ms"], 4),
        "render_p99_ms": round(render["p99_ms"], 4),
        "render_gt_pairs_per_s": round(truth_rate, 1),
        "sim_steps_per_s": round(sim_rate, 1),
        "sim_mean_steps_per_s": round(_mean_rate(pooled["total"]), 1),
        "sim_p50_ms": round(summary["total"]["p50_ms"], 4),
        "expert_p50_ms": round(summary["expert"]["p50_ms"], 4),
        "step_p50_ms": round(summary["step"]["p50_ms"], 4),
        "floor_p50_ms": round(floor["p50_ms"], 4),
        "lockstep_steps_per_s": lockstep["steps_per_s"] if lockstep else None,
        "lockstep_late_frames": lockstep["late_frames"] if lockstep else None,
        "realtime_steps_per_s": realtime["steps_per_s"] if realtime else None,
        "realtime_target_steps_per_s": round(camera_hz, 1),
    }


def main() -> None:
    """``python -m rover.bench.sim``: the bench alone, JSON on the last line."""
    parser = argparse.ArgumentParser(prog="rover bench sim", description=__doc__)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
