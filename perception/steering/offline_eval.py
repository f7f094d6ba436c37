"""`rover eval recordings --model M SESSION...`: a steering model against the human, offline.

What a robot owner runs before trusting a model on the robot: the model sees every recorded
stereo pair the human drove (the command in force came from teleop: demonstrations, and the
take-overs of `rover drive`), and its steering is scored against the human's: mean absolute
error and sign agreement (on frames where the human steered at least `SIGN_DEADBAND`), the
same on the frames where the human steered hard (|steering| > 0.3), a timeline per session
with per-minute figures, and a contact sheet of the frames where the two disagree most (both
eyes, the two commands drawn on them). Writes report.json and report.html (with the pictures)
under --out; the last line printed is the flat JSON of the headline figures.
"""

from __future__ import annotations

import argparse
import heapq
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rover.errors import ConfigError, DataError
from rover.recording.reader import decode_jpeg, open_sessions

HARD_STEERING = 0.3  # the human steered hard: the frames a model most often gets wrong
SIGN_DEADBAND = 0.05  # below this the human went straight: no sign to agree with
HUMAN = "teleop"
SPREAD_FRAMES = 30  # contact sheet: frames of one session at least this far apart (1 s)
SPREAD_POOL = 8  # candidates kept per frame shown


@dataclass
class Scored:
    """One frame: who said what."""

    session: str
    index: int
    frame_seq: int
    t_s: float  # capture time since the session's first frame
    human: float
    model: float
    takeover: bool


@dataclass
class Worst:
    """The K frames of largest disagreement, with their JPEGs (a bounded heap)."""

    k: int
    heap: list = field(default_factory=list)

    def offer(self, frame: Scored, left: bytes, right: bytes) -> None:
        key = (abs(frame.human - frame.model), frame.session, frame.index)
        item = (key, frame, left, right)
        if len(self.heap) < self.k * SPREAD_POOL:
            heapq.heappush(self.heap, item)
        elif key > self.heap[0][0]:
            heapq.heapreplace(self.heap, item)

    def sorted(self) -> list[tuple[Scored, bytes, bytes]]:
        """The worst first, at most one per `SPREAD_FRAMES` of a session (not one moment k times)."""
        chosen: list[tuple[Scored, bytes, bytes]] = []
        for _, f, lj, rj in sorted(self.heap, key=lambda x: x[0], reverse=True):
            near = any(
                c.session == f.session and abs(c.index - f.index) < SPREAD_FRAMES
                for c, _, _ in chosen
            )
            if not near and len(chosen) < self.k:
                chosen.append((f, lj, rj))
        return chosen


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sessions", nargs="+", metavar="SESSION", help="session folders (or folders of them)"
    )
    p.add_argument("--model", required=True, help="steering checkpoint from `rover train steering`")
    p.add_argument(
        "--out", default="runs/eval-recordings", help="report folder (default: %(default)s)"
    )
    p.add_argument("--worst", type=int, default=12, help="frames on the contact sheet")
    p.add_argument(
        "--all-frames",
        action="store_true",
        help="score every frame, the autopilot's too (default: only where the human drove)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")


def figures(frames: list[Scored]) -> dict:
    """MAE and sign agreement over `frames`."""
    if not frames:
        return {"frames": 0, "steering_mae": None, "sign_agreement_pct": None, "signed_frames": 0}
    human = np.array([f.human for f in frames])
    model = np.array([f.model for f in frames])
    signed = np.abs(human) >= SIGN_DEADBAND
    agree = np.sign(human[signed]) == np.sign(model[signed])
    return {
        "frames": len(frames),
        "steering_mae": round(float(np.abs(human - model).mean()), 4),
        "sign_agreement_pct": round(100 * float(agree.mean()), 2) if signed.any() else None,
        "signed_frames": int(signed.sum()),
    }


def per_minute(frames: list[Scored]) -> list[dict]:
    """Per session and minute of capture time: frames, mean human and model steering, MAE."""
    buckets: dict[tuple[str, int], list[Scored]] = {}
    for f in frames:
        buckets.setdefault((f.session, int(f.t_s // 60)), []).append(f)
    rows = []
    for (session, minute), group in buckets.items():
        h = np.array([f.human for f in group])
        m = np.array([f.model for f in group])
        rows.append(
            {
                "session": session,
                "minute": minute,
                "frames": len(group),
                "human_mean": round(float(h.mean()), 4),
                "model_mean": round(float(m.mean()), 4),
                "steering_mae": round(float(np.abs(h - m).mean()), 4),
            }
        )
    return rows


def score_sessions(paths: list[str], model: str, device: str, all_frames: bool, worst_k: int):
    """Run the model on every frame the human drove; returns (scored frames, worst, counts)."""
    from tqdm import tqdm

    from perception.infer import SteeringPredictor

    sessions = open_sessions(paths)
    worst = Worst(worst_k)
    scored: list[Scored] = []
    counts = {"sessions": len(sessions), "frames_seen": 0, "takeover_s": 0.0}
    for session in sessions:
        predictor = SteeringPredictor(model, device=device)  # fresh memory per session
        infos = session.frames()
        counts["takeover_s"] += session.takeover_s
        t0 = infos[0].stamp_ns if infos else 0
        for sample in tqdm(
            session.samples(decode=False),
            total=len(session),
            desc=session.name,
            leave=False,
            disable=None,
        ):
            counts["frames_seen"] += 1
            info = infos[sample.index]
            if not all_frames and info.source != HUMAN:
                continue
            left, right = decode_jpeg(sample.left), decode_jpeg(sample.right)
            pred = predictor.predict(left, right, sample.stamp_ns)
            frame = Scored(
                session.name,
                sample.index,
                sample.frame_seq,
                (sample.stamp_ns - t0) / 1e9,
                sample.steering,
                pred.steering,
                sample.takeover,
            )
            scored.append(frame)
            worst.offer(frame, sample.left, sample.right)
    return scored, worst, counts


def build_report(scored: list[Scored], counts: dict, model: str, all_frames: bool) -> dict:
    """The JSON report: overall, hard frames, take-over frames, per minute."""
    hard = [f for f in scored if abs(f.human) > HARD_STEERING]
    return {
        "model": str(model),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "frames_scored": "all" if all_frames else "human",
        "sessions": counts["sessions"],
        "frames_seen": counts["frames_seen"],
        "takeover_s": round(counts["takeover_s"], 2),
        "hard_threshold": HARD_STEERING,
        "sign_deadband": SIGN_DEADBAND,
        "overall": figures(scored),
        "hard": figures(hard),
        "takeover": figures([f for f in scored if f.takeover]),
        "per_minute": per_minute(scored),
    }


def flat(report: dict) -> dict:
    """The headline figures as one flat JSON object."""
    o, h = report["overall"], report["hard"]
    return {
        "frames": o["frames"],
        "steering_mae": o["steering_mae"],
        "sign_agreement_pct": o["sign_agreement_pct"],
        "hard_frames": h["frames"],
        "hard_steering_mae": h["steering_mae"],
        "hard_sign_agreement_pct": h["sign_agreement_pct"],
        "takeover_s": report["takeover_s"],
    }


def run(args: argparse.Namespace) -> int:
    from perception.steering.offline_report import contact_sheet, timelines, write_html

    if args.worst < 0:
        raise ConfigError(f"--worst {args.worst}: give 0 or more frames")
    if not Path(args.model).is_file():
        raise ConfigError(f"--model {args.model} is not a file: give a steering checkpoint")
    scored, worst, counts = score_sessions(
        args.sessions, args.model, args.device, args.all_frames, args.worst
    )
    if not scored:
        raise DataError(
            f"no frame of {counts['frames_seen']} was driven by the human (a `rover drive` "
            "session without take-overs?): give sessions recorded with `rover teleop`, or "
            "--all-frames to score the autopilot's frames too"
        )
    out = Path(args.out) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(scored, counts, args.model, args.all_frames)
    report["worst"] = [
        {
            "session": f.session,
            "index": f.index,
            "frame_seq": f.frame_seq,
            "human": round(f.human, 4),
            "model": round(f.model, 4),
        }
        for f, _, _ in worst.sorted()
    ]
    driver = "recorded command" if args.all_frames else "human"
    report["timeline_png"] = [str(p.name) for p in timelines(scored, out, driver)]
    sheet = contact_sheet(worst.sorted(), out / "worst.png")
    report["contact_sheet_png"] = sheet.name if sheet else None
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_html(report, out / "report.html")
    _print(report, out)
    print(json.dumps(flat(report)))
    return 0


def _print(report: dict, out: Path) -> None:
    o, h, t = report["overall"], report["hard"], report["takeover"]
    print(
        f"{o['frames']} frames scored ({report['frames_scored']} frames of "
        f"{report['frames_seen']}; {report['takeover_s']:.1f} s of take-overs)"
    )
    for label, f in (("all", o), (f"|human| > {HARD_STEERING}", h), ("take-overs", t)):
        if f["frames"]:
            sign = f["sign_agreement_pct"]
            print(
                f"  {label:<16} {f['frames']:>6} frames  MAE {f['steering_mae']:.3f}  "
                f"sign agreement {'-' if sign is None else f'{sign:.1f} %'}"
            )
    print(f"report: {out / 'report.html'}")
