"""`rover eval recordings`: the bundled model against a driver on a recorded session.

The session is written by the real Recorder from simulator frames: the autopilot drives the
first second, then the "human" (the simulator's expert, through teleop) takes over.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception.steering.bundled import bundled_model_path
from rover import messages as m
from rover import topics
from rover.cli import main as rover_main
from rover.recording.recorder import Recorder, RecorderConfig

AUTOPILOT_FRAMES, HUMAN_FRAMES = 30, 60


@pytest.fixture(scope="module")
def takeover_session(tmp_path_factory) -> Path:
    from sim.expert import Expert
    from sim.simulation import Simulation

    path = tmp_path_factory.mktemp("rec") / "session"
    robot = {"control": {"autopilot_without_teleop": True}}
    rec = Recorder(path, RecorderConfig(fsync=False), robot, "test")
    sim, expert = Simulation("forest"), Expert()
    stamp, period = 10**12, int(sim.dt_s * 1e9)
    for i in range(AUTOPILOT_FRAMES + HUMAN_FRAMES):
        left, right, _ = sim.render()
        rec.submit(
            topics.CAMERA_STEREO, m.StereoImage(seq=i, stamp_ns=stamp, left=left, right=right)
        )
        steering, throttle = expert.act(sim.observation())
        human = i >= AUTOPILOT_FRAMES
        cmd = m.ControlCommand(
            seq=i,
            stamp_ns=stamp,
            frame_seq=m.NO_FRAME if human else i,
            steering=steering,
            throttle=throttle,
            source="teleop" if human else "cnn:steering",
        )
        rec.submit(topics.CONTROL_COMMAND, cmd)
        sim.step(steering, throttle)
        stamp += period
    rec.close()
    return path


@pytest.mark.slow
def test_scores_the_human_frames_and_writes_json_html_and_pictures(
    takeover_session: Path, tmp_path: Path, capsys
):
    model = str(bundled_model_path())
    code = rover_main(
        [
            "eval",
            "recordings",
            "--model",
            model,
            str(takeover_session),
            "--out",
            str(tmp_path),
            "--worst",
            "4",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    figures = json.loads(printed.strip().splitlines()[-1])
    # frame i is logged before the command sent for it: the first take-over frame still has
    # the autopilot's command in force
    assert figures["frames"] == HUMAN_FRAMES - 1
    assert 0 <= figures["steering_mae"] < 0.5 and figures["takeover_s"] > 0
    out = next(tmp_path.iterdir())
    report = json.loads((out / "report.json").read_text())
    assert report["takeover"]["frames"] == HUMAN_FRAMES - 1
    assert report["per_minute"][0]["frames"] == HUMAN_FRAMES - 1
    worst = report["worst"]  # the worst first, one per second of the session at most
    assert 1 <= len(worst) <= 2
    gaps = [abs(w["human"] - w["model"]) for w in worst]
    assert gaps == sorted(gaps, reverse=True)
    assert all(abs(a["index"] - b["index"]) >= 30 for a, b in zip(worst, worst[1:], strict=False))
    page = (out / "report.html").read_text()
    for picture in [*report["timeline_png"], report["contact_sheet_png"]]:
        assert (out / picture).stat().st_size > 1000 and picture in page


def test_bad_model_or_folder_gives_one_line(tmp_path: Path, capsys):
    model = str(bundled_model_path())
    code = rover_main(
        [
            "eval",
            "recordings",
            "--model",
            "missing.pt",
            str(takeover_session),
            "--out",
            str(tmp_path),
        ]
    )
    assert code != 0 and "--model missing.pt is not a file" in capsys.readouterr().err
    code = rover_main(
        ["eval", "recordings", "--model", model, str(tmp_path), "--out", str(tmp_path)]
    )
    assert code != 0 and "holds no recordings" in capsys.readouterr().err
