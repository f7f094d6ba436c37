"""`rover recordings info` says what a user must know before training on a session: whether
its frames are labelled by commands the vehicle followed, start-up apart from real gaps, why
command channels run above their nominal rate; a clean stop leaves no lock file behind."""

from __future__ import annotations

import json
from pathlib import Path

from rover import messages as m
from rover import topics
from rover.recording import format as fmt
from rover.recording.cli import main as recordings_main


def stale_control(synthetic, seq: int, frame_seq: int) -> m.ControlCommand:
    """What the control node sends when no live input reached it: zero, marked stale."""
    return m.ControlCommand(
        seq=seq, stamp_ns=synthetic.T0, frame_seq=frame_seq, source="none:stale", stale=True
    )


def live_control(synthetic, seq: int, frame_seq: int) -> m.ControlCommand:
    return m.ControlCommand(
        seq=seq,
        stamp_ns=synthetic.T0,
        frame_seq=frame_seq,
        steering=0.3,
        throttle=0.5,
        source="expert",
    )


def lockstep(synthetic, n: int, command, startup: int = 0):
    """Frame i then the command that answers it; the first ``startup`` frames come slowly (the
    simulator re-sends its first frame until the whole stack answers)."""
    for i in range(n):
        stamp = synthetic.T0 + i * synthetic.PERIOD_NS + min(i, startup) * 3 * synthetic.PERIOD_NS
        yield topics.CAMERA_STEREO, synthetic.frame(i, stamp=stamp)
        yield topics.CONTROL_COMMAND, command(synthetic, i, i)


def info_of(path: Path, capsys, *extra: str) -> str:
    assert recordings_main(["info", str(path), *extra]) == 0
    return capsys.readouterr().out


def test_a_recording_labelled_by_stale_commands_is_not_ok(tmp_path: Path, capsys, synthetic):
    synthetic.record(tmp_path / "ruined", lockstep(synthetic, 40, stale_control))
    info = json.loads(info_of(tmp_path / "ruined", capsys, "--json"))
    assert info["status"] == "stale"
    assert info["stale_label_frames"] == 40 and info["live_labels_pct"] == 0.0
    assert info["control_sources"] == {"none:stale": 40}
    text = info_of(tmp_path / "ruined", capsys)
    assert "(stale, 1 segment(s))" in text
    assert "none:stale 100 %" in text and "did not follow these labels" in text


def test_a_recording_labelled_by_live_commands_is_ok(tmp_path: Path, capsys, synthetic):
    synthetic.record(tmp_path / "good", lockstep(synthetic, 40, live_control))
    text = info_of(tmp_path / "good", capsys)
    assert "(ok, 1 segment(s))" in text
    assert "100.0 % of frames labelled by live commands" in text


def test_start_up_is_reported_apart_from_gaps(tmp_path: Path, capsys, synthetic):
    synthetic.record(tmp_path / "s", lockstep(synthetic, 40, live_control, startup=5))
    info = json.loads(info_of(tmp_path / "s", capsys, "--json"))
    assert info["gaps"] == [] and info["startup_gaps"] == 5
    text = info_of(tmp_path / "s", capsys)
    assert "start-up" in text and "normal" in text and "\ngaps " not in text


def test_command_channels_show_their_nominal_rate(tmp_path: Path, capsys, synthetic):
    synthetic.record(tmp_path / "s", lockstep(synthetic, 10, live_control))
    info = json.loads(info_of(tmp_path / "s", capsys, "--json"))
    nominal = {t["topic"]: t["nominal_hz"] for t in info["topics"]}
    assert nominal[fmt.LEFT_TOPIC] == topics.CAMERA_STEREO.rate_hz
    assert nominal["/control/command"] == topics.CONTROL_COMMAND.rate_hz
    assert "nominal Hz" in info_of(tmp_path / "s", capsys)


def test_a_clean_stop_leaves_no_lock_file(tmp_path: Path, synthetic):
    synthetic.record(tmp_path / "s", lockstep(synthetic, 5, live_control))
    assert not (tmp_path / "s" / fmt.LOCK_FILE).exists()
    assert fmt.segment_paths(tmp_path / "s")
