"""Feed a recorded session through the real node processes in lock-step and diff their answers.

    rover replay SESSION [--nodes steering,traversability,control] [--model M] [--out DIR]
                 [--diff [REFERENCE]] [--update-reference DIR]

The answers are written as a new session under --out (every `rover recordings` verb and
Foxglove read it). --diff compares them, node by node and field by field, with the session's
own recorded answers (no REFERENCE) or with another session (a reference replay: then every
field must be equal); exit 1 when a node differs beyond its tolerances.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from rover.errors import ConfigError, DataError
from rover.recording.format import new_session_dir
from rover.recording.reader import Session
from rover.replay import diff as d
from rover.replay.answers import read_answers, session_replay_meta
from rover.replay.runner import ReplayNodes, ReplayResult, replay_session
from rover.replay.stack import NODE_MODULES

RECORDED = "recorded"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", help="a recorded session folder")
    p.add_argument(
        "--nodes",
        default="steering,traversability,control",
        help="nodes to replay, comma-separated (default: steering,traversability,control)",
    )
    p.add_argument("--model", default=None, help="steering checkpoint (default: the bundled one)")
    p.add_argument(
        "--out", default="recordings/replays", help="write the answers as a new session under DIR"
    )
    p.add_argument(
        "--diff",
        nargs="?",
        const=RECORDED,
        default=None,
        metavar="REFERENCE",
        help="compare with the session's recorded answers, or with a REFERENCE session",
    )
    p.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="[NODE.]FIELD=VALUE",
        help="allow this absolute difference, e.g. control.throttle=0.01 (repeatable)",
    )
    p.add_argument(
        "--update-reference",
        metavar="DIR",
        help="write the answers (no frames) to DIR, replacing it: the reference a later --diff DIR"
        " checks",
    )
    p.add_argument("--no-frames", action="store_true", help="write the answers only")
    p.add_argument("--timeout-ms", type=float, default=2000.0, help="a node's longest answer")
    p.add_argument("--limit", type=int, default=None, help="replay only the first N frames")
    p.add_argument("--config", default=None, help="robot TOML (default: the recorded config)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one value of the recorded config (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")


def parse_nodes(text: str) -> tuple[str, ...]:
    nodes = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in nodes if n not in NODE_MODULES]
    if not nodes or unknown:
        raise ConfigError(
            f"--nodes {text!r}: choose from {', '.join(NODE_MODULES)} (comma-separated)"
        )
    return tuple(n for n in NODE_MODULES if n in nodes)  # the graph's order


def parse_tolerances(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ConfigError(
                f"--tolerance {item!r}: write [NODE.]FIELD=NUMBER, e.g. steering=0.01"
            )
    return out


def _model(args, nodes: tuple[str, ...]) -> str | None:
    if "steering" not in nodes:
        return None
    if args.model is None:
        from perception.steering.bundled import bundled_model_path

        path = bundled_model_path()
        if path is None:
            raise ConfigError("no bundled steering model in this checkout: give --model M")
        return str(path)
    if not Path(args.model).is_file():
        raise ConfigError(f"--model {args.model} is not a file: give a steering checkpoint")
    return args.model


def _out_dir(args) -> tuple[Path, bool]:
    """Where the answers go, and whether that is a temporary folder."""
    if args.update_reference:
        ref = Path(args.update_reference)
        if ref.exists() and session_replay_meta_or_none(ref) is None:
            raise DataError(
                f"{ref} exists and is not a replay reference: choose another folder or remove it"
            )
        tmp = Path(
            tempfile.mkdtemp(
                prefix="rover-reference-", dir=ref.parent if ref.parent.exists() else None
            )
        )
        return tmp / "reference", True
    return new_session_dir(args.out), False


def session_replay_meta_or_none(path: Path) -> dict | None:
    try:
        return session_replay_meta(path)
    except DataError:
        return None


def _replace_reference(result: ReplayResult, out: Path, target: Path) -> Path:
    """Move a complete replay's answers over the reference; refuse one with misses."""
    missed = sum(result.misses.values())
    if missed:
        raise DataError(
            f"the replay missed {missed} answer(s) (a node slower than --timeout-ms): "
            f"the reference {target} is unchanged; run it again, or raise --timeout-ms"
        )
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(out), str(target))
    return target


def run(args: argparse.Namespace) -> int:
    nodes = parse_nodes(args.nodes)
    tolerances = parse_tolerances(args.tolerance)
    Session(args.session).frames()  # a bad session fails here, before any node starts
    reference = None if args.diff in (None, RECORDED) else Path(args.diff)
    if reference is not None:
        Session(reference)
    spec = ReplayNodes(nodes, _model(args, nodes), tuple(args.set), args.config)
    out, temporary = _out_dir(args)
    frames_out = not (args.no_frames or args.update_reference)
    scratch = out.parent if temporary else None
    try:
        result = replay_session(args.session, spec, out, args.timeout_ms, frames_out, args.limit)
        if temporary:
            out = _replace_reference(result, out, Path(args.update_reference))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)  # interrupted or refused: no debris
    _print_run(result, out, nodes)
    if spec.model is not None:
        bundled = " (the bundled one; --model M for another)" if args.model is None else ""
        print(f"steering model: {spec.model}{bundled}")
    figures = _figures(result)
    code = 1 if any(result.misses.values()) else 0
    if args.diff is not None:
        diffs, skipped = _diff(args, out, reference, nodes, tolerances)
        for line in d.format_report(diffs, skipped):
            print(line)
        figures.update(d.diff_json(diffs))
        if not all(x.ok for x in diffs):
            moved = [x.node for x in diffs if not x.ok]
            print(f"replay differs from the reference in: {', '.join(moved)}")
            code = 1
    if args.json:
        print(json.dumps(figures))
    return code


def _diff(args, out: Path, reference: Path | None, nodes, tolerances):
    frames = [f.frame_seq for f in Session(args.session).frames()]
    if args.limit is not None:
        frames = frames[: args.limit]
    ref_path = reference or Path(args.session)
    exact = reference is not None and session_replay_meta(reference) is not None
    tol = {**(d.EXACT if exact else d.RECORDED), **tolerances}
    theirs = read_answers(ref_path, nodes)
    ours = read_answers(out, nodes)
    skipped = [n for n in nodes if not theirs.get(n)]
    print(
        f"diff against {'the reference replay' if exact else 'the recorded answers'} in "
        f"{ref_path} ({len(frames)} frames)"
    )
    return d.diff_answers(ours, theirs, list(nodes), frames, tol), skipped


def _print_run(result: ReplayResult, out: Path, nodes) -> None:
    fps = result.frames / result.wall_s if result.wall_s else 0.0
    print(
        f"replayed {result.frames} frames through {', '.join(nodes)} in {result.wall_s:.1f} s "
        f"({fps:.1f} frames/s)"
    )
    for node in nodes:
        miss = result.misses[node]
        print(f"  {node:<15} {result.answers[node]} answers" + (f", {miss} missed" if miss else ""))
    if result.stalls:
        print(f"  {result.stalls} gap(s) between frames over 1 s: control may have gone stale")
    print(f"answers written to {out}")


def _figures(result: ReplayResult) -> dict:
    fps = result.frames / result.wall_s if result.wall_s else 0.0
    out = {"frames": result.frames, "frames_per_s": round(fps, 2), "stalls": result.stalls}
    for node, n in result.answers.items():
        out[f"{node}_answers"] = n
        out[f"{node}_misses"] = result.misses[node]
    return out
