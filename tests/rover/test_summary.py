"""What `rover drive` says when a run ends, and the exit codes it ends with: real processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rover.errors import EXIT_DATA, EXIT_USAGE
from rover.runspec import SimSpec
from rover.summary import RunSummary, run_line


def rover(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env_cmd = [sys.executable, "-m", "rover.cli", *args]
    return subprocess.run(env_cmd, capture_output=True, text=True, timeout=timeout)


def test_a_headless_sim_run_ends_with_a_summary_naming_its_files(tmp_path: Path, bus_cfg):
    """One run with every output: the summary quotes the run and names each file it wrote."""
    metrics, snap, rec = tmp_path / "run.json", tmp_path / "snap.png", tmp_path / "rec"
    result = rover(
        "drive", "--sim", "forest", "--seed", "3", "--lockstep", "--headless",
        "--duration", "2", "--namespace", bus_cfg.namespace, "--metrics-out", str(metrics),
        "--snapshot", str(snap), "--record", str(rec),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "motor controller lost" not in result.stderr  # the simulator's own shutdown: no news
    lines = result.stdout.splitlines()
    (run,) = [ln for ln in lines if ln.startswith("run: ")]
    assert run.startswith("run: forest seed 3: ") and " m driven, 0 collisions, goal " in run
    assert run.endswith("2.0 s simulated")
    assert f"metrics: {metrics}" in lines and metrics.is_file()
    assert f"trajectory picture: {metrics.with_suffix('.png')}" in lines
    assert f"window snapshot: {snap}" in lines and snap.is_file()
    (session,) = rec.iterdir()
    (recorded,) = [ln for ln in lines if ln.startswith("recorded ")]
    assert recorded == f"recorded 60 stereo pairs (2.0 s, {recorded.split(', ')[1]}, 0 frames " \
        f"lost) in {session}"  # fmt: skip


def test_without_metrics_out_the_summary_leaves_no_files_behind(tmp_path: Path):
    with RunSummary.prepare(SimSpec("forest")) as summary:
        metrics = summary.metrics_path
        assert metrics is not None  # the simulator writes there
        metrics.write_text('{"scenario": "forest", "seed": 1, "elapsed_s": 3.0}')
        assert summary.lines()[0].startswith("run: forest seed 1: 0.0 m driven")
        assert "--metrics-out PATH keeps" in summary.lines()[1]
    assert not metrics.parent.exists()


def test_the_run_line_says_when_the_vehicle_went_backwards():
    metrics = {"scenario": "forest", "seed": 2, "distance_m": 1.8, "collisions": 0}
    line = run_line(metrics | {"goal_progress": 0.0, "elapsed_s": 20.0, "net_forward_m": -1.8})
    assert line == (
        "run: forest seed 2: 1.8 m driven, 0 collisions, goal 0 %, 20.0 s simulated, "
        "ended 1.8 m behind the start"
    )


def test_the_run_line_says_when_the_goal_was_reached():
    metrics = {"scenario": "open", "seed": 7, "distance_m": 61.25, "collisions": 1}
    line = run_line(metrics | {"reached_goal": True, "elapsed_s": 40.0, "takeover_m": 2.5})
    assert line == (
        "run: open seed 7: 61.2 m driven, 1 collision, goal reached, 40.0 s simulated "
        "(safety driver 2.5 m)"
    )


def test_a_real_time_run_that_fell_behind_the_clock_says_so():
    metrics = {"scenario": "forest", "seed": 2, "distance_m": 1.8, "collisions": 0}
    line = run_line(metrics | {"elapsed_s": 11.8, "wall_s": 23.2, "lockstep": False})
    assert line.endswith("; in real time it kept 51 % of the clock (23.2 s)")
    assert "clock" not in run_line(metrics | {"elapsed_s": 11.8, "wall_s": 23.2, "lockstep": True})


def test_injected_faults_are_counted_in_the_summary(bus_cfg):
    result = rover(
        "drive", "--sim", "forest", "--lockstep", "--headless", "--duration", "2",
        "--namespace", bus_cfg.namespace, "--frame-drop", "0.2", "--serial-loss", "0.05",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("faults injected: ")]
    dropped, garbled = re.findall(r"(\d+) camera frames dropped .* (\d+) chunks of serial", line)[0]
    assert int(dropped) > 0 and int(garbled) > 0, line
    assert "(--frame-drop 0.2)" in line and "(--serial-loss 0.05)" in line
    quiet = rover(
        "drive", "--sim", "forest", "--lockstep", "--headless", "--duration", "1",
        "--namespace", bus_cfg.namespace,
    )  # fmt: skip
    assert "faults injected" not in quiet.stdout


def test_a_run_of_several_worlds_names_each_and_counts_the_goals():
    worlds = [
        {"scenario": "forest-repainted", "seed": 4, "reached_goal": True},
        {"scenario": "open", "seed": 75586, "goal_progress": 0.6},
    ]
    metrics = {"scenario": "forest-repainted,open", "seed": 75586, "goal_progress": 0.6}
    line = run_line(
        metrics
        | {"distance_m": 113.3, "collisions": 0, "elapsed_s": 60.0}
        | {"episodes": worlds, "goals_reached": 1}
    )
    assert line == (
        "run: 2 worlds (forest-repainted seed 4, open seed 75586): 113.3 m driven, "
        "0 collisions, goals 1 of 2, 60.0 s simulated"
    )


def test_problems_caught_up_front_exit_with_their_kind_of_code(tmp_path: Path):
    """An empty model file is a data problem (4); no --model on the robot is a usage problem
    (2), with a line that never mentions a --model the user did not type."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    up_front = rover("drive", "--sim", "forest", "--model", str(empty))
    assert up_front.returncode == EXIT_DATA
    assert "is empty (0 bytes)" in up_front.stderr
    bare = rover("drive")
    assert bare.returncode == EXIT_USAGE
    assert "needs --model" in bare.stderr and "expert is a simulator policy" not in bare.stderr


@pytest.mark.slow
def test_a_node_exits_the_same_code_as_the_cli_would(tmp_path: Path, bus_cfg):
    """A model file that is no checkpoint, found by the steering node (not a zip archive),
    exits 4 as the CLI's own up-front check of an empty one does, not the generic 1."""
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a model")
    from_node = rover(
        "drive", "--sim", "forest", "--model", str(garbage), "--headless", "--lockstep",
        "--duration", "1", "--namespace", bus_cfg.namespace,
    )  # fmt: skip
    assert from_node.returncode == EXIT_DATA, from_node.stderr
    assert "not a zip archive" in from_node.stderr and "run: " not in from_node.stdout


def test_old_node_logs_of_failed_runs_are_pruned(tmp_path: Path):
    """Failed runs keep their node logs, but only the newest few pile up in the temp folder;
    a young folder (a run or test may still read it) is never touched."""
    import os
    import time

    from rover.manager import KEEP_LOG_MIN_AGE_S, prune_kept_logs

    old = time.time() - KEEP_LOG_MIN_AGE_S - 60
    folders = [tmp_path / f"rover-ns{i}-logs-x" for i in range(5)]
    for i, folder in enumerate(folders):
        folder.mkdir()
        os.utime(folder, (old + i, old + i))  # folder 4 is the newest
    young = tmp_path / "rover-fresh-logs-y"
    young.mkdir()
    removed = prune_kept_logs(tmp_path, keep=2)
    assert sorted(removed) == sorted(folders[:4])  # the newest two are the young one and 4
    assert young.is_dir() and folders[4].is_dir()


@pytest.mark.parametrize(
    "flag, value, needle",
    [
        ("--snapshot", "shot.jpg", "must end in .png"),
        ("--snapshot", "nofolder/shot.png", "does not exist; create it"),
        ("--metrics-out", "run.png", "name the metrics file .json"),
    ],
)
def test_bad_output_paths_fail_before_the_run(tmp_path: Path, flag, value, needle):
    from rover.errors import DataError

    spec = SimSpec("forest", **{flag.lstrip("-").replace("-", "_"): str(tmp_path / value)})
    with pytest.raises(DataError, match=needle):
        RunSummary.prepare(spec)
