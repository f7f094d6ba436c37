"""Scoring traversability in the simulator: ``rover eval traversability --model M --suite DIR``.

Against the renderer's ground-truth obstacle mask (left eye), per pixel, for the near band
(true depth below ``near_band_m``: where stereo is trusted) and the far band (everything beyond,
the sky included: calling sky an obstacle is an error like any other):

- ``stereo``: the stereo labels as the node uses them (obstacle within the trusted range);
- ``stereo_fullrange``: the same labelling with no range limit (to ``distant_m``), the
  strongest geometric baseline, reported so the far-band comparison is not against a straw man;
- ``learned``: the offline segmenter alone; ``online``: the segmenter with online adaptation;
- ``fused``: what the node publishes (stereo where it labelled, the network elsewhere).

The expert drives each scenario; every frame goes through the pipeline (online adaptation
needs the sequence), every ``every``-th frame is scored. Figures pool pixels over frames.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from perception import stereo
from perception.traversability.pipeline import TraversabilityConfig, TraversabilityPipeline
from rover.errors import ConfigError, DataError
from rover.table import print_table

METHODS = ("stereo", "stereo_fullrange", "learned", "online", "fused")
BANDS = ("near", "far")


@dataclass(frozen=True)
class EvalConfig:
    """Band split, how often to score, how long to drive."""

    near_band_m: float = 6.0
    every: int = 6
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.near_band_m <= 0 or self.every < 1:
            raise ConfigError("near_band_m must be positive and every >= 1")


class Tally:
    """Pooled intersection, union, correct and total pixels per (method, band)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], np.ndarray] = {}

    def add(self, method: str, band: str, pred: np.ndarray, truth: np.ndarray, mask: np.ndarray):
        p, t = pred & mask, truth & mask
        row = np.array(
            [(p & t).sum(), (p | t).sum(), ((pred == truth) & mask).sum(), mask.sum()], np.int64
        )
        self.counts[(method, band)] = self.counts.get((method, band), 0) + row

    def merge(self, other: Tally) -> None:
        for key, row in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + row

    def figures(self) -> dict[str, float]:
        """``{band}_iou_{method}`` and ``{band}_acc_{method}`` (None where nothing was scored:
        JSON has no NaN)."""
        out = {}
        for (method, band), (inter, union, correct, total) in sorted(self.counts.items()):
            out[f"{band}_iou_{method}"] = round(float(inter / union), 4) if union else None
            out[f"{band}_acc_{method}"] = round(float(correct / total), 4) if total else None
        return out


def score_frame(tally: Tally, result, truth, geom, cfg: EvalConfig, full_cfg) -> None:
    """Add one frame's predictions to ``tally``."""
    depth, obstacle = truth.depth_m[0], truth.obstacle_mask[0]
    bands = {"near": depth < cfg.near_band_m}
    bands["far"] = ~bands["near"]
    labels = result.stereo.labels
    full = stereo.label_pixels(result.stereo.disparity_px, labels.plane, geom, full_cfg)
    preds = {
        "stereo": labels.labels == stereo.OBSTACLE,
        "stereo_fullrange": full.labels == stereo.OBSTACLE,
        "fused": result.obstacle_prob >= 0.5,
    }
    if result.learned_prob is not None:
        preds["learned"] = result.learned_prob >= 0.5
    if result.online_prob is not None:
        preds["online"] = result.online_prob >= 0.5
    for method, pred in preds.items():
        for band, mask in bands.items():
            tally.add(method, band, pred, obstacle, mask)


def evaluate_scenario(
    path: Path, trav_cfg: TraversabilityConfig, net, cfg: EvalConfig, prior=None
) -> tuple[Tally, dict]:
    """Drive one scenario with the expert and score the pipeline on it."""
    from sim.expert import Expert
    from sim.simulation import Simulation

    sim = Simulation(path)
    geom = stereo.StereoGeometry.from_camera_model(sim.camera)
    pipe = TraversabilityPipeline(trav_cfg, geom, net, prior)
    full_cfg = replace(trav_cfg.stereo, trusted_range_m=trav_cfg.stereo.distant_m)
    expert, tally, step, totals = Expert(), Tally(), 0, []
    while not sim.done and (cfg.max_steps is None or step < cfg.max_steps):
        left, right, truth = sim.render()
        scored = step % cfg.every == 0
        result = pipe.process(left, right, offline=scored)
        totals.append(result.timings_ms["total"])
        if scored:
            score_frame(tally, result, truth, pipe.geom, cfg, full_cfg)
        sim.step(*expert.act(sim.observation()))
        step += 1
    info = {
        "scenario": sim.scenario.name,
        "held_out": sim.scenario.held_out,
        "frames": step,
        "scored_frames": (step + cfg.every - 1) // cfg.every,
        "pipeline_p50_ms": round(float(np.median(totals)), 2) if totals else None,
    }
    return tally, info


def evaluate_suite(
    suite: Path, model: str, cfg: EvalConfig, held_out_only: bool = False, progress: bool = True
) -> dict:
    """Score every scenario in ``suite``; top-level figures pool the held-out scenarios when
    there are any (they are what the targets are about), else all."""
    from sim.scenario import list_suite, load_scenario

    paths = list_suite(suite)
    if not paths:
        raise DataError(f"no scenario files in {suite}: point --suite at a folder of .toml files")
    from perception.traversability.pipeline import resolve_model

    model = resolve_model(model)
    net = prior = None
    if model:
        from perception.traversability.model import load_model

        net, info = load_model(model)
        prior = info["replay"]
    if held_out_only:
        paths = [p for p in paths if load_scenario(p).held_out]
    per, pooled_all, pooled_held = [], Tally(), Tally()
    for path in paths:
        trav_cfg = TraversabilityConfig(model=model)
        start = time.monotonic()
        tally, info = evaluate_scenario(path, trav_cfg, net, cfg, prior)
        info.update(tally.figures(), wall_s=round(time.monotonic() - start, 1))
        per.append(info)
        pooled_all.merge(tally)
        if info["held_out"]:
            pooled_held.merge(tally)
        if progress:
            print(f"  {info['scenario']}: {info['frames']} frames, {info['wall_s']} s", flush=True)
    top = pooled_held if pooled_held.counts else pooled_all
    return {
        "suite": str(suite),
        "model": model,
        "pooled_over": "held_out" if pooled_held.counts else "all",
        "near_band_m": cfg.near_band_m,
        **top.figures(),
        "all": pooled_all.figures(),
        "scenarios": per,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rover eval traversability``."""
    parser.add_argument(
        "--model", default="bundled", help="segmenter file; 'bundled' (default); '' stereo only"
    )
    parser.add_argument("--suite", required=True, help="folder of scenario .toml files")
    parser.add_argument("--held-out", action="store_true", help="score held-out scenarios only")
    parser.add_argument(
        "--near-band",
        type=float,
        default=EvalConfig.near_band_m,
        metavar="M",
        help="true depth (m) below which a pixel is in the near band, where stereo is trusted",
    )
    parser.add_argument("--every", type=int, default=EvalConfig.every, help="score every Nth")
    parser.add_argument("--max-steps", type=int, default=None, help="cut each drive short")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    parser.add_argument(
        "--closed-loop",
        action="store_true",
        help="also drive the suite with noisy expert steering, guard off and on: collisions/km",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        help="steering noise std in the closed loop (default 0.8 for the expert, 0 for --steering)",
    )
    parser.add_argument(
        "--steering",
        metavar="MODEL",
        help="closed loop: a steering checkpoint drives, not the expert",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="closed loop: worlds per scenario (1 + reserved)"
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, print the JSON report on the last line."""
    suite = Path(args.suite)
    if not suite.is_dir():
        raise DataError(f"--suite {suite} is not a folder: point it at sim/scenarios/regression")
    cfg = EvalConfig(args.near_band, args.every, args.max_steps)
    report = evaluate_suite(suite, args.model, cfg, args.held_out)
    print_report(report)
    if args.closed_loop:
        noise = args.noise if args.noise is not None else (0.0 if args.steering else 0.8)
        report["closed_loop"] = closed_loop_report(suite, args, noise)
    text = json.dumps(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(text)
    return 0


def closed_loop_report(suite: Path, args: argparse.Namespace, noise: float) -> dict:
    """Collisions per km over the suite (or its held-out scenarios), guard off and on."""
    from perception.traversability.closed_loop import NoiseConfig, compare
    from sim.scenario import list_suite, load_scenario

    paths = list_suite(suite)
    if args.held_out:
        paths = [p for p in paths if load_scenario(p).held_out]
    result = compare(
        paths,
        NoiseConfig(sigma=noise),
        TraversabilityConfig(model=args.model),
        None,
        args.max_steps,
        steering=args.steering,
        seeds=args.seeds,
    )
    result["steering"] = args.steering or "expert"
    print(
        f"closed loop, {result['steering']} steering, noise {noise}, "
        f"{len(result['per_scenario'])} runs: collisions/km "
        f"{result['collisions_per_km_off']} without the guard "
        f"({result['collisions_off']} in {result['distance_off_m']} m, "
        f"{result['goal_reached_off']} goals), "
        f"{result['collisions_per_km_on']} with it "
        f"({result['collisions_on']} in {result['distance_on_m']} m, "
        f"{result['goal_reached_on']} goals)"
    )
    return result


def print_report(report: dict) -> None:
    """The human table: IoU and accuracy per method and band."""
    print(
        f"obstacle IoU / pixel accuracy vs ground truth, pooled over {report['pooled_over']} "
        f"scenarios, near band < {report['near_band_m']} m"
    )
    rows = []
    for method in METHODS:
        cells = []
        for band in BANDS:
            iou = report.get(f"{band}_iou_{method}")
            acc = report.get(f"{band}_acc_{method}")
            cells += ["-" if iou is None else f"{iou:.3f}", "-" if acc is None else f"{acc:.3f}"]
        rows.append([method, *cells])
    print_table(["method", "near IoU", "near acc", "far IoU", "far acc"], rows)
