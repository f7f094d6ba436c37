"""`rover bench replay`: frames per second through the real nodes in lock-step, against their cost.

Replays a session (default: the committed reference session) through steering + control,
then steering + traversability + control, and reports frames per second and the time per
frame (frame sent -> every answer in), against the floor: the nodes' own processing time of
each frame (their `latency_ms`, summed: what lock-step cannot go below on one core). Then it
checks what replay is for: the second run's answers against the committed reference answers
(0 differing fields expected), and a model whose weights moved by 1e-3 (it must be caught).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from rover.bench.common import print_table
from rover.replay import diff as d
from rover.replay.answers import read_answers
from rover.replay.runner import ReplayNodes, replay_session

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "replay"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", default=str(FIXTURES / "session"), help="session to replay")
    p.add_argument(
        "--reference",
        default=str(FIXTURES / "reference"),
        help="reference answers to diff against ('' to skip the checks)",
    )
    p.add_argument("--model", default=None, help="steering checkpoint (default: bundled)")


def _perturbed(model: str, out: Path) -> Path:
    import torch

    raw = torch.load(model, weights_only=True)
    raw["state_dict"] = {
        k: v + 1e-3 if v.is_floating_point() else v for k, v in raw["state_dict"].items()
    }
    path = out / Path(model).name  # the same name: only the weights differ, not the source
    torch.save(raw, path)
    return path


def _differing(out: Path, reference: str, nodes, frames: list[int]) -> list[d.NodeDiff]:
    ours, theirs = read_answers(out, nodes), read_answers(reference, nodes)
    return d.diff_answers(ours, theirs, list(nodes), frames, d.EXACT)


def _row(name: str, result) -> tuple[list[str], dict]:
    frame_ms = np.median(result.frame_ms) if result.frame_ms else float("nan")
    floor_ms = np.median(result.node_ms) if result.node_ms else float("nan")
    fps = result.frames / result.wall_s if result.wall_s else 0.0
    misses = sum(result.misses.values())
    row = [
        name,
        str(result.frames),
        f"{fps:.1f}",
        f"{frame_ms:.1f}",
        f"{floor_ms:.1f}",
        f"{1000 / floor_ms:.1f}",
        str(misses),
    ]
    figures = {
        f"{name}_frames_per_s": round(fps, 2),
        f"{name}_frame_p50_ms": round(float(frame_ms), 2),
        f"{name}_floor_p50_ms": round(float(floor_ms), 2),
        f"{name}_floor_frames_per_s": round(1000 / float(floor_ms), 2),
        f"{name}_misses": misses,
    }
    return row, figures


def run(args: argparse.Namespace) -> dict:
    from perception.steering.bundled import bundled_model_path

    model = args.model or str(bundled_model_path())
    from rover.recording.reader import Session

    frames = [f.frame_seq for f in Session(args.session).frames()]
    rows, out = [], {"frames": len(frames)}
    with tempfile.TemporaryDirectory(prefix="rover-bench-replay-") as tmp:
        tmp_path = Path(tmp)
        runs = (
            ("steering_control", ("steering", "control")),
            ("with_traversability", ("steering", "traversability", "control")),
        )
        for name, nodes in runs:
            answers = tmp_path / name
            result = replay_session(
                args.session, ReplayNodes(nodes, model), answers, frames_out=False
            )
            row, figures = _row(name, result)
            rows.append(row)
            out.update(figures)
        if args.reference:
            nodes = runs[-1][1]
            diffs = _differing(tmp_path / runs[-1][0], args.reference, nodes, frames)
            out["differing_fields"] = sum(not f.ok for x in diffs for f in x.fields)
            perturbed = tmp_path / "perturbed"
            replay_session(
                args.session,
                ReplayNodes(("steering",), str(_perturbed(model, tmp_path))),
                perturbed,
                frames_out=False,
                limit=30,
            )
            caught = _differing(perturbed, args.reference, ("steering",), frames[:30])
            out["perturbed_caught"] = not caught[0].ok
    print_table(
        ("nodes", "frames", "frames/s", "frame p50 ms", "floor p50 ms", "floor frames/s", "misses"),
        rows,
    )
    if args.reference:
        print(
            f"same code against the reference: {out['differing_fields']} differing field(s); "
            f"weights moved by 1e-3: {'caught' if out['perturbed_caught'] else 'NOT caught'}"
        )
    print("floor: the nodes' own processing of each frame (latency_ms), summed")
    return out
