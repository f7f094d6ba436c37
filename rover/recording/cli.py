"""Inspect, verify, repair, trim and export recordings.

rover recordings list [ROOT...]              sessions with duration, pairs, size, status
rover recordings info SESSION [--json]       counts, rates, drops, gaps, pauses, steering histogram
rover recordings verify PATH... [--decode]   read every message; non-zero exit on damage
rover recordings recover PATH [--out DIR]    rebuild segments cut short by a crash
rover recordings trim SESSION --from S --to S | --frames A:B | --undo [ID] | --list
rover recordings export SESSION [--from S] [--to S] --mp4 FILE | --png DIR | --rosbag2 DIR
rover recordings import BAG --out DIR [--left T] [--right T] [--command T]   a ROS bag as a session
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from rover.errors import DataError, RoverError, run_command

DEFAULT_ROOT = "recordings"
SESSION_HELP = "a session folder (`rover recordings list` shows them), or one of its segments"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `rover recordings` verbs."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("list", help="sessions with duration, stereo pairs, size and status")
    p.add_argument(
        "roots",
        nargs="*",
        default=[DEFAULT_ROOT],
        metavar="ROOT",
        help=f"a folder of sessions, or a session (default: {DEFAULT_ROOT}/)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")

    p = sub.add_parser(
        "info",
        help="labels (live or stale), per-topic counts and rates, drops, gaps, paused spans, "
        "steering",
    )
    p.add_argument("session", metavar="SESSION", help=SESSION_HELP)
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")

    p = sub.add_parser("verify", help="read every message; exit non-zero on damage")
    p.add_argument("paths", nargs="+", metavar="PATH", help="session folders or segments")
    p.add_argument("--decode", action="store_true", help="also decode every JPEG (slower)")

    p = sub.add_parser("recover", help="rebuild the index of segments cut short by a crash")
    p.add_argument("path", metavar="PATH", help="a session folder or one segment")
    p.add_argument("--out", metavar="DIR", help="write a recovered copy here (default: in place)")

    p = sub.add_parser("trim", help="exclude a span from training (data kept), or undo it")
    p.add_argument("session", metavar="SESSION", help=SESSION_HELP)
    p.add_argument("--from", dest="from_s", type=float, metavar="S", help="start, seconds")
    p.add_argument("--to", dest="to_s", type=float, metavar="S", help="end, seconds")
    p.add_argument("--frames", metavar="A:B", help="frame indices A (included) to B (excluded)")
    p.add_argument(
        "--reason", default="", help="why (shown by info and trim --list; default: none)"
    )
    p.add_argument("--undo", nargs="?", const=-1, type=int, metavar="ID", help="remove a trim")
    p.add_argument("--list", action="store_true", help="show the session's trims")

    p = sub.add_parser("export", help="a span to MP4 and/or PNG frames with a steering overlay")
    p.add_argument("session", metavar="SESSION", help=SESSION_HELP)
    p.add_argument(
        "--from", dest="from_s", type=float, default=0.0, metavar="S", help="start, seconds"
    )
    p.add_argument(
        "--to",
        dest="to_s",
        type=float,
        default=None,
        metavar="S",
        help="end, seconds (default: the end)",
    )
    p.add_argument("--mp4", metavar="FILE", help="write an MP4 video")
    p.add_argument("--png", metavar="DIR", help="write one PNG per frame")
    p.add_argument("--no-overlay", action="store_true", help="the raw pair, no steering strip")
    p.add_argument(
        "--rosbag2", metavar="DIR", help="write a ROS 2 bag (MCAP, Humble-readable; docs/ros2.md)"
    )
    p.add_argument(
        "--traversability",
        action="store_true",
        help="with --rosbag2: recompute the traversability cost map of every pair into the bag",
    )
    _add_import(sub)
    for verb in sub._choices_actions:  # each verb's --help opens with its line of the list
        sub.choices[verb.dest].description = f"rover recordings {verb.dest}: {verb.help}."


def _add_import(sub) -> None:
    p = sub.add_parser("import", help="a ROS bag with two camera topics as a rover session")
    p.add_argument("bag", metavar="BAG", help="a rosbag2 folder (MCAP or SQLite) or a ROS 1 bag")
    p.add_argument("--out", required=True, metavar="DIR", help="the new session folder")
    p.add_argument("--left", metavar="TOPIC", help="left image topic (default: the one named left)")
    p.add_argument("--right", metavar="TOPIC", help="right image topic (default: named right)")
    p.add_argument(
        "--command",
        metavar="TOPIC",
        help="Twist/TwistStamped/AckermannDrive(Stamped) topic: the steering labels "
        "(default: /control/command, else the bag's only command topic)",
    )
    p.add_argument(
        "--steering-scale",
        type=float,
        metavar="X",
        help="the command's steering value meaning full lock (default 1: normalised)",
    )
    p.add_argument(
        "--throttle-scale",
        type=float,
        metavar="X",
        help="the command's speed meaning full throttle (default 1: normalised)",
    )
    p.add_argument(
        "--max-skew-ms",
        type=float,
        metavar="MS",
        help="pair left and right images whose stamps are this close (default 20)",
    )


def run(args: argparse.Namespace) -> int:
    """Run one verb; RoverError carries user errors up to the caller's one-line report."""
    return VERBS[args.verb](args)


def _list(args: argparse.Namespace) -> int:
    from rover.bench.common import print_table
    from rover.recording.tools import list_sessions

    rows = list_sessions(args.roots)
    if args.json:
        print(json.dumps({"sessions": rows}))
        return 0
    if not rows:
        print(f"no sessions in {', '.join(args.roots)}")
        return 0
    print_table(
        ("session", "duration", "pairs", "size", "segments", "trims", "status"),
        [
            (
                r["session"],
                duration_text(r["duration_s"]),
                str(r["stereo_pairs"]),
                size_text(r["size_bytes"]),
                str(r["segments"]),
                str(r["trims"]),
                r["status"] + _status_note(r),
            )
            for r in rows
        ],
    )
    print(
        "status: ok when the files are whole and the frames labelled by live commands (as "
        "`rover recordings info SESSION` says, with the details)"
    )
    if any(not r["labels_checked"] for r in rows):
        print(
            "(*: recorded before the recorder counted labels: the files are ok, "
            "`rover recordings info` checks the labels)"
        )
    return 0


def _status_note(row: dict) -> str:
    if row["status"] == "damaged":
        return ": run recover"
    if row["status"] == "stale":
        return ": labels from stale commands"
    return "*" if row["status"] == "ok" and not row["labels_checked"] else ""


def _info(args: argparse.Namespace) -> int:
    from rover.recording.tools import session_info

    info = session_info(args.session)
    if args.json:
        print(json.dumps(info))
        return 0
    _print_info(info)
    return 0


def _print_info(info: dict) -> None:
    from rover.bench.common import print_table

    print(f"session   {info['session']}  ({info['status']}, {info['segments']} segment(s))")
    print(f"labels    {_labels_line(info)}")
    print(
        f"duration  {duration_text(info['duration_s'])} of capture time, recorded over "
        f"{duration_text(info['wall_s'])} of wall time"
    )
    print(
        f"pairs     {info['stereo_pairs']} stereo pairs, {info['training_pairs']} for training "
        f"({len(info['trims'])} trim(s))"
    )
    print(f"drops     {info['dropped_frames']} frame(s); camera restarts {info['camera_restarts']}")
    if info["pauses"]:
        spans = ", ".join(f"{p['length_s']:.1f} s at {p['at_s']:.1f} s" for p in info["pauses"][:5])
        print(
            f"paused    {info['paused_s']:.1f} s in {len(info['pauses'])} span(s) by the record "
            f"key ({spans}); {info['paused_frames']} frame(s) not recorded"
        )
    for f in info.get("faults", []):
        state = "still active at the end" if f["active"] else "recovered"
        print(f"fault     {f['node']} {f['fault']}: {f['count']} time(s), {state}")
    print(
        f"takeover  {info['takeover_s']:.1f} s in {info['takeovers']} span(s), "
        f"{info['takeover_frames']} frame(s): the human took over from the autopilot"
    )
    print(f"size      {size_text(info['size_bytes'])}, {size_text(info['bytes_per_min'])}/min")
    sw = info["software"]
    print(f"software  rover {sw.get('rover_version')} ({sw.get('git')}), format {sw.get('format')}")
    if info.get("startup_gaps"):
        print(
            f"start-up  {info['startup_s']:.2f} s until frames came at the steady rate "
            f"({info['startup_gaps']} slow interval(s) while the stack started: normal)"
        )
    if info["gaps"]:
        shown = ", ".join(f"{g['length_s']:.2f} s at {g['at_s']:.1f} s" for g in info["gaps"][:5])
        print(f"gaps      {len(info['gaps'])} after start-up: {shown}")
    print()
    print_table(
        ("channel", "messages", "rate Hz", "nominal Hz", "seq gaps", "restarts"),
        [
            (
                t["topic"],
                str(t["messages"]),
                f"{t['rate_hz']:.1f}",
                "-" if t.get("nominal_hz") is None else f"{t['nominal_hz']:g}",
                str(t["seq_gaps"]),
                str(t["restarts"]),
            )
            for t in info["topics"]
        ],
    )
    speedup = info["duration_s"] / info["wall_s"] if info["wall_s"] > 0 else 1.0
    fast = [t["topic"] for t in info["topics"] if t["topic"] in FORWARDED and _above(t)]
    if speedup > 1.2:  # lock-step: the simulator ran as fast as the stack answered
        print(
            f"(captured {speedup:.1f}x faster than real time, in lock-step: rates are per "
            "wall-clock second)"
        )
    elif fast:
        print(
            f"({' and '.join(fast)} above nominal: the control node sends at its fixed rate "
            "and also forwards each new input at once, and the motor controller answers each)"
        )
    hist = info["steering_histogram"]
    peak = max(hist["counts"]) or 1
    print("\nsteering (command in force at each frame)")
    for lo, count in zip(hist["edges"], hist["counts"], strict=False):
        print(f"  {lo:+.1f} {'#' * round(40 * count / peak):<40} {count}")
    for t in info["trims"]:
        print(f"trim {t['id']}: {t['start_s']:.2f}-{t['end_s']:.2f} s {t['reason']}")
    for r in info["recovered"]:
        print(f"recovered segment: kept {r['messages']} messages, lost {r['lost_bytes']} bytes")


FORWARDED = ("/control/command", "/motor/state")  # sent at a fixed rate and on each input


def _above(topic: dict) -> bool:
    return bool(topic.get("nominal_hz")) and topic["rate_hz"] > 1.1 * topic["nominal_hz"]


def _labels_line(info: dict) -> str:
    """Whether the frames' steering labels are commands the vehicle followed."""
    pct = info.get("live_labels_pct", 100.0)
    line = f"{pct:.1f} % of frames labelled by live commands"
    if info.get("stale_label_frames"):
        line += f", {info['stale_label_frames']} by stale ones"
    if info.get("unlabelled_frames"):
        line += f", {info['unlabelled_frames']} before the first command (start-up)"
    if info["status"] == "stale":
        sources = info.get("control_sources") or {}
        total = sum(sources.values()) or 1
        top = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in list(sources.items())[:3])
        line += (
            f"\n          control source: {top}. The vehicle did not follow these labels "
            "(no live input reached the control node): record again, or trim the stale spans"
        )
    return line


def _verify(args: argparse.Namespace) -> int:
    from rover.recording.tools import verify

    bad = []
    for path in args.paths:
        for check in verify(path, decode=args.decode):
            state = "live, still being written" if check.live else "ok"
            if check.problems:
                bad.append(check)
                continue
            resent = f", {check.resent} re-sent at start-up" if check.resent else ""
            print(
                f"{check.path}: {state}, {check.messages} messages, "
                f"{check.pairs - check.resent} stereo pairs{resent}"
            )
    if bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more damaged segment(s))" if len(bad) > 1 else ""
        raise DataError(
            f"{first.path}: {first.problems[0]}{more}: "
            f"run `rover recordings recover {first.path.parent}`"
        )
    return 0


def _recover(args: argparse.Namespace) -> int:
    from rover.recording.recover import recover

    for r in recover(args.path, args.out):
        if r.rebuilt:
            lost = (
                f"dropped a torn tail of {size_text(r.lost_bytes)}"
                if r.lost_bytes
                else "no torn tail"
            )
            print(
                f"{r.path.name}: rebuilt, kept {r.messages} messages ({r.pairs} pairs), "
                f"{lost} ({r.reason})"
            )
        else:
            print(f"{r.path.name}: intact")
    return 0


def _trim(args: argparse.Namespace) -> int:
    from rover.recording.tools import resolve, trim, untrim
    from rover.recording.trims import load_trims

    if args.undo is not None:
        span = untrim(args.session, None if args.undo == -1 else args.undo)
        print(f"removed trim {span.id}: {span.start_s:.2f}-{span.end_s:.2f} s")
        return 0
    if args.list or (args.from_s is None and args.to_s is None and args.frames is None):
        for s in load_trims(resolve(args.session)[0]):
            print(f"{s.id}: {s.start_s:.2f}-{s.end_s:.2f} s  {s.reason}")
        return 0
    frames = None
    if args.frames is not None:
        a, sep, b = args.frames.partition(":")
        if not sep or not a.isdigit() or not b.isdigit():
            raise RoverError(f"--frames {args.frames!r}: write A:B, e.g. --frames 300:450")
        frames = (int(a), int(b))
    span = trim(args.session, args.from_s, args.to_s, frames, args.reason)
    print(
        f"trim {span.id}: {span.start_s:.2f}-{span.end_s:.2f} s excluded from training "
        f"(undo: rover recordings trim {args.session} --undo {span.id})"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from rover.recording.export import export

    if args.rosbag2:
        from rover.recording.rosbag import export_rosbag2

        bag = export_rosbag2(
            args.session, args.rosbag2, args.from_s, args.to_s, args.traversability
        )
        print(
            f"exported {bag.frames} stereo pairs, {sum(bag.counts.values())} messages to {bag.path}"
        )
        if not (args.mp4 or args.png):
            return 0
    result = export(
        args.session, args.mp4, args.png, args.from_s, args.to_s, overlay=not args.no_overlay
    )
    where = " and ".join(str(p) for p in (result.mp4, result.png_dir) if p is not None)
    print(f"exported {result.frames} frames to {where}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from rover.recording.rosbag_import import ImportOptions, import_bag

    given = {k: getattr(args, k) for k in ("steering_scale", "throttle_scale", "max_skew_ms")}
    opts = ImportOptions(args.left, args.right, args.command)
    opts = replace(opts, **{k: v for k, v in given.items() if v is not None})
    r = import_bag(args.bag, args.out, opts)
    left, right, command = r.topics
    labels = f"{r.commands} commands from {command}" if command else "no commands (no labels)"
    print(
        f"imported {r.pairs} stereo pairs ({left} + {right}; {r.unpaired} unpaired) and "
        f"{labels} to {r.path}"
    )
    return 0


VERBS = {
    "list": _list,
    "info": _info,
    "verify": _verify,
    "recover": _recover,
    "trim": _trim,
    "export": _export,
    "import": _import,
}


def duration_text(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}" if minutes else f"{secs:.1f} s"


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def main(argv: list[str] | None = None) -> int:
    """`python -m rover.recording.cli VERB ...`: the same as `rover recordings VERB ...`."""
    parser = argparse.ArgumentParser(prog="rover recordings", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_command("rover", lambda: run(args))
    except BrokenPipeError:  # `... | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
