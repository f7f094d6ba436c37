"""Process replay: the committed reference session through the real node processes.

tests/fixtures/replay/session is 6 s of `rover drive --sim forest` with the bundled steering
CNN and traversability (lock-step, recorded); tests/fixtures/replay/reference holds the answers
of steering, traversability and control to each of its frames (regenerate: `make
replay-reference`). A change that moves any node's answer fails here with the diff.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rover.replay.diff import diff_node, format_report

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "replay"
SESSION = FIXTURES / "session"
REFERENCE = FIXTURES / "reference"
FRAMES = 180


def rover(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rover.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_reference_session_replays_with_zero_differing_fields(tmp_path: Path):
    out = rover(
        "replay",
        str(SESSION),
        "--out",
        str(tmp_path),
        "--no-frames",
        "--diff",
        str(REFERENCE),
        "--json",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    figures = last_json(out.stdout)
    assert figures["differing_fields"] == 0 and figures["ok"]
    for node in ("steering", "traversability", "control"):
        assert figures[f"{node}_answers"] == FRAMES, node
        assert figures[f"{node}_misses"] == 0
        assert figures[f"{node}_ok"]
    # every node's answers, cost maps included, make a session the recordings verbs accept
    replayed = next(tmp_path.iterdir())
    verify = rover("recordings", "verify", str(replayed))
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_a_perturbed_model_is_caught_and_named(tmp_path: Path):
    import torch

    from perception.steering.bundled import bundled_model_path

    raw = torch.load(bundled_model_path(), weights_only=True)
    raw["state_dict"] = {
        k: v + 1e-3 if v.is_floating_point() else v for k, v in raw["state_dict"].items()
    }
    model = tmp_path / "steering.pt"  # the bundled file's name: the answers' source is the same
    torch.save(raw, model)
    out = rover(
        "replay",
        str(SESSION),
        "--nodes",
        "steering",
        "--model",
        str(model),
        "--limit",
        "40",
        "--out",
        str(tmp_path / "out"),
        "--diff",
        str(REFERENCE),
        "--json",
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    assert "differs from the reference in: steering" in out.stdout
    steering_line = next(line for line in out.stdout.splitlines() if line.startswith("steering"))
    assert "DIFFERS" in steering_line
    figures = last_json(out.stdout)
    assert not figures["steering_ok"] and figures["steering_steering_max_abs"] > 0
    # the output is a session like any other: the recordings verbs read it
    replayed = next((tmp_path / "out").iterdir())
    verify = rover("recordings", "verify", str(replayed))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    info = rover("recordings", "info", str(replayed), "--json")
    assert json.loads(info.stdout)["stereo_pairs"] == 40


def test_diff_names_the_first_differing_frame_and_the_missing_ones():
    ours = {0: {"steering": 0.1, "throttle": 0.5, "source": "cnn", "stamp_ns": 1}}
    ours[1] = {**ours[0], "steering": 0.4}
    ours[3] = {**ours[0]}
    theirs = {0: {**ours[0]}, 1: {**ours[0]}, 2: {**ours[0]}, 3: {**ours[0], "source": "x"}}
    diff = diff_node("steering", ours, theirs, [0, 1, 2, 3], {})
    assert not diff.ok and diff.missing == [2]
    by = {f.name: f for f in diff.fields}
    assert by["steering"].first_frame == 1 and by["steering"].max_abs == pytest.approx(0.3)
    assert by["steering"].mean_abs == pytest.approx(0.1)
    assert by["source"].differing == 1 and by["source"].first_frame == 3
    assert by["throttle"].ok
    loose = diff_node("steering", ours, theirs, [0, 1, 3], {"steering": 0.5, "source": 1})
    assert loose.ok
    report = "\n".join(format_report([diff], []))
    assert "DIFFERS" in report and "first at frame 1" in report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "steering,planner"], "--nodes"),
        (["--model", "no-such.pt"], "--model no-such.pt is not a file"),
        (["--tolerance", "steering"], "--tolerance"),
    ],
)
def test_bad_arguments_give_one_line(args, message):
    out = rover("replay", str(SESSION), *args, timeout=60)
    assert out.returncode != 0 and message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_folder_that_is_no_session_gives_one_line(tmp_path: Path):
    out = rover("replay", str(tmp_path), timeout=60)
    assert out.returncode != 0 and "segment" in out.stderr and "Traceback" not in out.stderr
