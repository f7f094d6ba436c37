"""Take-overs in recordings: marked while recording, read back as spans and per-frame labels.

The unit half drives the real Recorder (worker thread, MCAP) with the commands a control node
sends; the end-to-end half records `rover drive --sim --record` while an operator, a real
ZeroMQ publisher on teleop/command, takes over and hands back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from rover import bus, topics
from rover import messages as m
from rover.ready import all_ready
from rover.recording import format as fmt
from rover.recording.cli import main as recordings_main
from rover.recording.reader import Session
from rover.recording.recorder import Recorder, RecorderConfig

T0 = 1_000_000_000_000
PERIOD_NS = 33_333_333


def _frame(i: int) -> m.StereoImage:
    img = np.full((24, 32, 3), 40 + i, np.uint8)
    stamp = T0 + i * PERIOD_NS
    return m.StereoImage(seq=i, stamp_ns=stamp, left=img, right=img)


def _drive(path: Path, sources: list[str], drive_mode: bool = True) -> None:
    """Frame i, then the command control sent for it, from `sources[i]`."""
    robot = {"control": {"autopilot_without_teleop": drive_mode}}
    rec = Recorder(path, RecorderConfig(fsync=False), robot, "test")
    for i, source in enumerate(sources):
        rec.submit(topics.CAMERA_STEREO, _frame(i))
        answers = i if source != "teleop" else m.NO_FRAME
        cmd = m.ControlCommand(seq=i, stamp_ns=T0, frame_seq=answers, steering=0.1, source=source)
        rec.submit(topics.CONTROL_COMMAND, cmd)
    rec.close()


def test_a_takeover_is_marked_and_read_back_as_a_span_and_labels(tmp_path: Path, capsys):
    sources = ["cnn:steering"] * 5 + ["teleop"] * 6 + ["cnn:steering"] * 4
    _drive(tmp_path / "s", sources)
    session = Session(tmp_path / "s")
    spans = session.takeovers()
    assert len(spans) == 1 and spans[0].seconds > 0
    labels = [s.takeover for s in session.samples()]
    # frame i is logged before its command: frames 6..11 follow a human command
    assert labels == [False] * 6 + [True] * 6 + [False] * 3
    with open(session.segments[0], "rb") as f:
        marks = [
            json.loads(msg.data)["takeover"]
            for _, ch, msg in make_reader(f).iter_messages()
            if ch.topic == fmt.TAKEOVER_TOPIC
        ]
    assert marks == [True, False]
    assert recordings_main(["info", str(tmp_path / "s"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["takeovers"] == 1 and info["takeover_frames"] == 6
    assert info["takeover_s"] == pytest.approx(spans[0].seconds, abs=1e-3)
    assert recordings_main(["info", str(tmp_path / "s")]) == 0
    assert "takeover" in capsys.readouterr().out


def test_demonstrations_are_not_takeovers_until_the_autopilot_drove(tmp_path: Path):
    # `rover teleop`: the human drives first (demonstrations), then hands to the autopilot
    # and takes over again: only that last span is a take-over; a stale input ends it
    # `rover teleop`'s autopilot with no model ("autopilot:stale") never drove: no take-over
    sources = ["teleop"] * 2 + ["autopilot:stale"] * 2 + ["teleop"] * 2
    sources += ["autopilot:stale", "cnn:steering"] * 2 + ["teleop"] * 3
    sources += ["teleop:stale"] * 2
    _drive(tmp_path / "s", sources, drive_mode=False)
    session = Session(tmp_path / "s")
    assert len(session.takeovers()) == 1
    assert [s.index for s in session.samples() if s.takeover] == [11, 12, 13]


def _operator(bus_cfg, takeover_s: float):
    """Autopilot on; once recording and the autopilot drives, take over for `takeover_s` (from
    the first command control sent for the human); hand back."""
    teleop = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
    commands = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=10_000)
    took_over = 0.0
    phase = "autopilot"
    deadline = time.monotonic() + 120
    try:
        while phase != "done" and time.monotonic() < deadline:
            autopilot = phase != "takeover"
            teleop.publish(
                m.TeleopCommand(steering=0.6, throttle=0.4, deadman=True, autopilot=autopilot)
            )
            cmd = commands.receive(timeout_ms=20)  # paces the 50 Hz operator too
            if cmd is None:
                continue
            recording = all_ready(bus_cfg, ["recorder"])
            if phase == "autopilot" and recording and cmd.source.startswith("expert"):
                phase = "takeover"
            elif phase == "takeover" and cmd.source == "teleop":
                took_over = took_over or time.monotonic()
                phase = "handback" if time.monotonic() - took_over >= takeover_s else phase
            elif phase == "handback" and cmd.source.startswith("expert"):
                phase = "done"
    finally:
        teleop.close()
        commands.close()
    return phase


@pytest.mark.slow
def test_rover_drive_record_marks_the_operators_takeover(tmp_path: Path, bus_cfg):
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    cmd = [sys.executable, "-m", "rover.cli", "drive", "--sim", "open", "--model", "expert"]
    cmd += ["--headless", "--duration", "8", "--record", str(tmp_path)]
    cmd += ["--namespace", bus_cfg.namespace]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        phase = _operator(bus_cfg, takeover_s=0.6)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert phase == "done"
    session = Session(next(p for p in tmp_path.iterdir() if p.is_dir()))
    spans = session.takeovers()
    assert len(spans) == 1
    assert 0.5 < spans[0].seconds < 3.0  # the operator drove 0.6 s
    assert any(s.takeover for s in session.samples(decode=False))
