"""The few lines `rover drive` and `rover teleop` print when a run ends: what it did, where its
files went.

In the simulator: distance, collisions, goal progress and simulated time (from the metrics the
simulator writes; into a temporary folder, removed afterwards, when the user gave no
``--metrics-out``); the metrics JSON, trajectory picture and snapshot by path; and for
``--record`` the session's stereo pairs, length, size and lost frames.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rover.runspec import SimSpec


@dataclass
class RunSummary:
    """Prepared before the stack starts (it picks where the metrics go), printed after it."""

    metrics_path: Path | None = None  # where the simulator writes the run's metrics
    keep_metrics: bool = True  # the user asked for them (--metrics-out)
    snapshot: str | None = None
    scratch: Path | None = None  # a temporary folder of ours, removed after the summary
    silent: bool = False  # a run started from code that reports on its own (a bench)

    @classmethod
    def prepare(cls, sim: SimSpec | None, summary: bool = True) -> RunSummary:
        """In the simulator, make sure the run's metrics are written (to a temporary folder
        when no --metrics-out was given: ``metrics_path``), so the summary can quote them."""
        if not summary:
            return cls(silent=True)
        if sim is None:
            return cls()
        check_output_paths(sim.snapshot, sim.metrics_out)
        if sim.metrics_out:
            return cls(Path(sim.metrics_out), True, sim.snapshot)
        scratch = Path(tempfile.mkdtemp(prefix="rover-run-"))
        return cls(scratch / "metrics.json", False, sim.snapshot, scratch)

    def lines(self, record_dir: str | None = None) -> list[str]:
        """The summary's lines (empty when there is nothing to say)."""
        out = []
        metrics = self._metrics()
        if metrics is not None:
            out.append(run_line(metrics))
            if metrics.get("injected"):
                out.append(faults_line(metrics["injected"]))
            if not self.keep_metrics:
                out.append("(--metrics-out PATH keeps the metrics JSON and a trajectory picture)")
            else:
                picture = self.metrics_path.with_suffix(".png")
                out.append(f"metrics: {self.metrics_path}")
                if picture.is_file():
                    out.append(f"trajectory picture: {picture}")
        if self.snapshot and Path(self.snapshot).is_file():
            out.append(f"window snapshot: {self.snapshot}")
        if record_dir is not None:
            out.append(recording_line(record_dir))
        return out

    def _metrics(self) -> dict | None:
        """The simulator's figures; None when it wrote none or never started simulating."""
        if self.metrics_path is None or not self.metrics_path.is_file():
            return None
        metrics = json.loads(self.metrics_path.read_text())
        return metrics if metrics.get("elapsed_s") else None

    def report(self, record_dir: str | None = None) -> None:
        """Print the summary."""
        if not self.silent:
            for line in self.lines(record_dir):
                print(line, flush=True)

    def __enter__(self) -> RunSummary:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.scratch is not None:  # our temporary metrics, whatever happened
            shutil.rmtree(self.scratch, ignore_errors=True)


def check_output_paths(snapshot: str | None, metrics_out: str | None) -> None:
    """Fail before the run, not after it: a snapshot is a .png in a folder that exists; the
    metrics JSON must not end in .png (its trajectory picture goes beside it under that name).
    DataError, as the simulator node raises for the same problems."""
    from rover.errors import DataError

    if snapshot is not None:
        path = Path(snapshot)
        if path.suffix.lower() != ".png":
            raise DataError(f"snapshot {path}: the file name must end in .png")
        if not path.parent.is_dir():
            raise DataError(f"snapshot {path}: folder {path.parent} does not exist; create it")
    if metrics_out is not None and Path(metrics_out).suffix.lower() == ".png":
        raise DataError(
            f"--metrics-out {metrics_out}: the trajectory picture is written beside the JSON "
            "as .png; name the metrics file .json"
        )


def run_line(metrics: dict) -> str:
    """``run: forest seed 2: 28.0 m driven, 0 collisions, goal 45 %, 15.0 s simulated``; a run
    of several worlds names each and counts the goals reached."""
    collisions = metrics.get("collisions", 0)
    goal = (
        "goal reached"
        if metrics.get("reached_goal")
        else (f"goal {100 * metrics.get('goal_progress', 0.0):.0f} %")
    )
    where = f"{metrics.get('scenario')} seed {metrics.get('seed')}"
    episodes = metrics.get("episodes") or []
    if len(episodes) > 1:  # world after world: the totals; seed and goal are per world
        worlds = ", ".join(f"{e.get('scenario')} seed {e.get('seed')}" for e in episodes)
        if len(episodes) > 3:  # twenty worlds do not fit a line: their families
            worlds = ", ".join(dict.fromkeys(str(e.get("scenario")) for e in episodes))
        where = f"{len(episodes)} worlds ({worlds})"
        goal = f"goals {metrics.get('goals_reached', 0)} of {len(episodes)}"
    line = (
        f"run: {where}: "
        f"{metrics.get('distance_m', 0.0):.1f} m driven, {collisions} "
        f"collision{'' if collisions == 1 else 's'}, {goal}, "
        f"{metrics.get('elapsed_s', 0.0):.1f} s simulated"
    )
    if (metrics.get("net_forward_m") or 0.0) < -0.5:  # goal progress stops at 0 %
        line += f", ended {-metrics['net_forward_m']:.1f} m behind the start"
    if metrics.get("takeover_m"):
        line += f" (safety driver {metrics['takeover_m']:.1f} m)"
    wall_s, sim_s = metrics.get("wall_s") or 0.0, metrics.get("elapsed_s") or 0.0
    if metrics.get("lockstep") is False and wall_s > 0 and sim_s < 0.9 * wall_s:
        # a real-time run that fell behind the clock (a loaded machine skips ticks)
        line += f"; in real time it kept {100 * sim_s / wall_s:.0f} % of the clock ({wall_s:.1f} s)"
    return line


def faults_line(injected: dict) -> str:
    """``faults injected: 9 frames dropped (--frame-drop 0.1), ...``: what the flags did."""
    parts = []
    if injected.get("frame_drop"):
        parts.append(
            f"{injected['dropped_frames']} camera frames dropped (--frame-drop "
            f"{injected['frame_drop']:g})"
        )
    if injected.get("serial_loss"):
        parts.append(
            f"{injected['garbled_chunks']} chunks of serial data garbled (--serial-loss "
            f"{injected['serial_loss']:g})"
        )
    if injected.get("camera_latency_ms"):
        parts.append(f"every frame delayed {injected['camera_latency_ms']:g} ms")
    return "faults injected: " + ", ".join(parts)


def recording_line(record_dir: str) -> str:
    """``recorded 450 stereo pairs (15.0 s, 20.7 MB, 0 frames lost) in DIR`` (and how many
    frames were left out while the record key had paused it)."""
    from rover.errors import RoverError
    from rover.recording.cli import duration_text, size_text
    from rover.recording.tools import recording_summary

    try:
        row = recording_summary(record_dir)
    except (RoverError, ValueError):
        return f"recording: nothing readable in {record_dir}"
    lost = row["dropped_frames"]
    lost_text = "" if lost is None else f", {lost} frame{'' if lost == 1 else 's'} lost"
    if row.get("paused_frames"):  # the record key: left out on purpose, not lost
        lost_text += f", {row['paused_frames']} left out while paused"
    status = "" if row["status"] == "ok" else f" [{row['status']}]"
    if row["status"] == "stale":  # say what it means: the frames' labels never drove
        status = (
            " [stale: the frames are labelled by commands no live input drove; "
            f"`rover recordings info {record_dir}` says where]"
        )
    return (
        f"recorded {row['stereo_pairs']} stereo pairs ({duration_text(row['duration_s'])}, "
        f"{size_text(row['size_bytes'])}{lost_text}) in {record_dir}{status}"
    )
