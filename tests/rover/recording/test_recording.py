"""Recording format, reading API, trims and the `rover recordings` verbs, on real files.

Sessions are written by the real Recorder (worker thread, JPEG, MCAP) from messages made here;
the node and the SIGKILL crash are in test_recording_node.py.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.writer import Writer
from mcap_protobuf.decoder import DecoderFactory

from rover import messages as m
from rover import topics
from rover.errors import DataError
from rover.recording import format as fmt
from rover.recording import iter_samples, open_sessions
from rover.recording.cli import main as recordings_main
from rover.recording.recorder import Recorder, RecorderConfig


def autopilot_items(synthetic, n: int):
    """Lock-step-like traffic: frame i, then the command computed from it."""
    for i in range(n):
        yield topics.CAMERA_STEREO, synthetic.frame(i)
        yield topics.CONTROL_COMMAND, synthetic.control(i, round(i / n, 4), frame_seq=i)


@pytest.fixture
def session(tmp_path: Path, synthetic) -> Path:
    path = tmp_path / "2025-01-01_10-00-00"
    synthetic.record(
        path,
        autopilot_items(synthetic, 60),
        robot={"camera": {"width": synthetic.W, "height": synthetic.H}},
    )
    return path


def brightness(rgb: np.ndarray) -> float:
    return float(rgb[:, :, 0].mean())


def test_samples_round_trip_images_commands_and_stamps(session: Path, synthetic):
    (s,) = open_sessions([session])
    samples = list(s.samples())
    assert len(s) == s.stereo_pairs == len(samples) == 60
    assert s.duration_s == pytest.approx(60 * synthetic.PERIOD_NS / 1e9)
    for i, sample in enumerate(samples):
        assert sample.left.shape == (synthetic.H, synthetic.W, 3) and sample.left.dtype == np.uint8
        assert sample.left.flags.c_contiguous
        assert (
            abs(brightness(sample.left) - brightness(synthetic.image(i))) < 3
        )  # right frame, RGB order
        assert sample.right[:, :, 1].mean() == pytest.approx(150, abs=3)
        assert sample.steering == pytest.approx(i / 60, abs=1e-4)
        assert (sample.stamp_ns, sample.frame_seq, sample.index) == (
            synthetic.T0 + i * synthetic.PERIOD_NS,
            i,
            i,
        )
        assert sample.session == session.name
    assert s.metadata["camera"] == {"width": synthetic.W, "height": synthetic.H}
    assert s.metadata["software"]["rover_version"]


def test_command_in_force_rules(tmp_path: Path, synthetic):
    teleop = m.TeleopCommand(seq=0, stamp_ns=synthetic.T0, steering=-0.7, throttle=0.2)
    items = [
        (topics.CAMERA_STEREO, synthetic.frame(0)),  # nothing logged before it: zero
        (topics.TELEOP_COMMAND, teleop),
        (topics.CAMERA_STEREO, synthetic.frame(1)),  # only teleop so far
        (topics.CONTROL_COMMAND, synthetic.control(0, 0.1)),
        (topics.CAMERA_STEREO, synthetic.frame(2)),  # latest control/command before it
        (topics.CONTROL_COMMAND, synthetic.control(1, 0.3)),
        (topics.CONTROL_COMMAND, synthetic.control(2, 0.9, frame_seq=3)),  # overtook its frame
        (topics.CAMERA_STEREO, synthetic.frame(3)),
        (topics.CAMERA_STEREO, synthetic.frame(4)),
        (topics.CONTROL_COMMAND, synthetic.control(3, 0.4)),
        (topics.CONTROL_COMMAND, synthetic.control(4, -0.5, frame_seq=4)),  # answers frame 4
        (
            topics.CONTROL_COMMAND,
            synthetic.control(5, 0.8, frame_seq=4),
        ),  # a repeat: first answer wins
    ]
    synthetic.record(tmp_path / "s", items)
    got = [(round(x.steering, 3), x.frame_seq) for x in iter_samples([tmp_path / "s"])]
    assert got == [(0.0, 0), (-0.7, 1), (0.1, 2), (0.9, 3), (-0.5, 4)]


def test_resent_capture_counts_once(tmp_path: Path, synthetic):
    """The simulator re-sends its first frame (new seq, same stamp) until the stack answers."""
    items = [
        (topics.CAMERA_STEREO, synthetic.frame(0, seq=k, stamp=synthetic.T0)) for k in range(3)
    ]
    items += [(topics.CONTROL_COMMAND, synthetic.control(0, 0.25, frame_seq=2))]
    items += [(topics.CAMERA_STEREO, synthetic.frame(i, seq=i + 2)) for i in range(1, 4)]
    synthetic.record(tmp_path / "s", items)
    (s,) = open_sessions([tmp_path / "s"])
    samples = list(s.samples())
    assert s.stereo_pairs == 4 and [x.frame_seq for x in samples] == [2, 3, 4, 5]
    assert samples[0].steering == 0.25


def test_plain_mcap_reader_sees_foxglove_images_and_json(session: Path, synthetic):
    path = fmt.segment_paths(session)[0]
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        images = [
            (schema.name, schema.encoding, decoded)
            for schema, _, _, decoded in reader.iter_decoded_messages(topics=[fmt.LEFT_TOPIC])
        ]
    assert len(images) == 60
    name, encoding, first = images[0]
    assert (name, encoding, first.format, first.frame_id) == (
        "foxglove.CompressedImage",
        "protobuf",
        "jpeg",
        "left",
    )
    decoded = cv2.imdecode(np.frombuffer(first.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (synthetic.H, synthetic.W, 3)
    with open(path, "rb") as f:
        reader = make_reader(f)
        commands = [
            (channel.message_encoding, json.loads(message.data))
            for _, channel, message in reader.iter_messages(topics=["/control/command"])
        ]
        metadata = {r.name for r in reader.iter_metadata()}
    assert commands[5] == ("json", pytest.approx(commands[5][1])) and commands[5][1]["seq"] == 5
    assert {fmt.META_SESSION, fmt.META_CONFIG, fmt.META_SEGMENT, fmt.META_COUNTS} <= metadata


def test_config_calibration_and_counts_are_in_the_recording(tmp_path: Path, synthetic):
    calib = tmp_path / "calib.yaml"
    calib.write_text("baseline_m: 0.12\n")
    robot = {
        "camera": {"width": synthetic.W, "height": synthetic.H, "calibration": str(calib)},
        "motor": {"baud": 1},
    }
    rec = synthetic.record(tmp_path / "s", autopilot_items(synthetic, 5), robot=robot)
    (s,) = open_sessions([tmp_path / "s"])
    assert s.metadata["robot_config"]["motor"] == {"baud": 1}
    assert s.metadata["calibration"] == "baseline_m: 0.12\n"
    counts = rec.counts["camera/stereo"]
    assert (counts.received, counts.written, counts.dropped) == (5, 5, 0)
    info = _info_json(tmp_path / "s")
    assert info["recorder_counts"]["camera/stereo"]["written"] == 5


def test_segments_split_by_time_and_read_as_one_session(tmp_path: Path, synthetic):
    ticks = itertools.count(0, 50_000_000)  # every look at the clock: 50 ms later
    rec = Recorder(
        tmp_path / "s", RecorderConfig(segment_s=1.0, fsync=False), {}, clock_ns=lambda: next(ticks)
    )
    for i in range(40):
        rec.submit(topics.CAMERA_STEREO, synthetic.frame(i))
        rec.submit(topics.CONTROL_COMMAND, synthetic.control(i, 0.0, frame_seq=i))
    rec.close()
    (s,) = open_sessions([tmp_path / "s"])
    assert len(s.segments) >= 3
    assert [x.frame_seq for x in s.samples(decode=False)] == list(range(40))


def test_full_queue_drops_are_counted_never_blocking(tmp_path: Path, synthetic):
    big = np.zeros((480, 640, 3), np.uint8)
    rec = Recorder(tmp_path / "s", RecorderConfig(queue_frames=2, fsync=False), {})
    accepted = [
        rec.submit(
            topics.CAMERA_STEREO,
            m.StereoImage(
                seq=i, stamp_ns=synthetic.T0 + i * synthetic.PERIOD_NS, left=big, right=big
            ),
        )
        for i in range(200)
    ]
    rec.close()
    c = rec.counts["camera/stereo"]
    assert c.dropped == accepted.count(False) > 0
    assert c.received == 200 and c.written == c.dropped + c.written - c.dropped == 200 - c.dropped
    info = _info_json(tmp_path / "s")
    assert info["stereo_pairs"] == c.written and info["dropped_frames"] == c.dropped


def test_restarted_recorder_appends_and_a_second_one_is_refused(tmp_path: Path, synthetic):
    path = tmp_path / "s"
    rec = Recorder(path, RecorderConfig(fsync=False), {})
    with pytest.raises(DataError, match="being recorded by another recorder"):
        Recorder(path, RecorderConfig(fsync=False), {})
    rec.submit(topics.CAMERA_STEREO, synthetic.frame(0))
    rec.close()
    synthetic.record(path, [(topics.CAMERA_STEREO, synthetic.frame(1))])
    assert [p.name for p in fmt.segment_paths(path)] == ["segment-0000.mcap", "segment-0001.mcap"]
    assert open_sessions([path])[0].stereo_pairs == 2


def test_open_sessions_takes_a_folder_of_sessions(tmp_path: Path, synthetic):
    for name in ("b", "a"):
        synthetic.record(tmp_path / "all" / name, autopilot_items(synthetic, 3))
    assert [s.name for s in open_sessions([tmp_path / "all"])] == ["a", "b"]
    assert len(list(iter_samples([tmp_path / "all"]))) == 6
    with pytest.raises(DataError, match="holds no recordings"):
        open_sessions([tmp_path])
    with pytest.raises(DataError, match="does not exist"):
        open_sessions([tmp_path / "nope"])


def test_new_session_dir_is_readable_and_unique(tmp_path: Path):
    from datetime import datetime

    when = datetime(2025, 3, 4, 5, 6, 7)
    first = fmt.new_session_dir(tmp_path, when)
    second = fmt.new_session_dir(tmp_path, when)
    assert (first.name, second.name) == ("2025-03-04_05-06-07", "2025-03-04_05-06-07-2")


# --- trims --------------------------------------------------------------------------------


def test_trims_are_honoured_by_the_reading_api_and_undone(session: Path, capsys):
    assert recordings_main(["trim", str(session), "--from", "0.5", "--to", "1.0"]) == 0
    assert recordings_main(["trim", str(session), "--frames", "50:60", "--reason", "crash"]) == 0
    (s,) = open_sessions([session])
    kept = [x.index for x in s.samples()]
    expected = [i for i in range(60) if not (15 <= i <= 30 or i >= 50)]
    assert kept == expected and len(s) == len(expected)
    assert len(list(s.samples(honour_trims=False))) == 60
    assert len(list(iter_samples([session], honour_trims=True))) == len(expected)
    assert recordings_main(["trim", str(session), "--undo"]) == 0  # the newest: frames 50:60
    assert len(open_sessions([session])[0]) == 60 - 16
    assert recordings_main(["trim", str(session), "--undo", "1"]) == 0
    assert len(open_sessions([session])[0]) == 60
    assert not list(session.glob(".trims-*"))  # atomic writes leave no temp file
    out = capsys.readouterr().out
    assert "excluded from training" in out and "removed trim 2" in out


# --- the verbs ----------------------------------------------------------------------------


def _info_json(path: Path) -> dict:
    from rover.recording.tools import session_info

    return session_info(path)


def test_info_json_reports_what_users_need(session: Path, capsys):
    assert recordings_main(["info", str(session), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["stereo_pairs"] == 60 and info["dropped_frames"] == 0
    assert info["duration_s"] == pytest.approx(2.0, abs=1e-3)
    assert sum(info["steering_histogram"]["counts"]) == 60
    assert {t["topic"] for t in info["topics"]} >= {fmt.LEFT_TOPIC, "/control/command"}
    assert info["command_source"] == {"frame": 60}


def test_info_reports_drops_and_gaps(tmp_path: Path, synthetic):
    items = [(topics.CAMERA_STEREO, synthetic.frame(i)) for i in range(10) if i not in (4, 5, 6)]
    synthetic.record(tmp_path / "s", items)
    info = _info_json(tmp_path / "s")
    assert info["dropped_frames"] == 3 and info["stereo_pairs"] == 7
    assert info["gaps"] == [{"at_s": pytest.approx(0.1, abs=1e-3), "length_s": 0.133}]


def test_list_and_verify_a_good_session(session: Path, capsys):
    assert recordings_main(["list", str(session.parent), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["sessions"]
    assert (row["session"], row["stereo_pairs"], row["status"]) == (session.name, 60, "ok")
    assert row["duration_s"] == pytest.approx(2.0, abs=0.01)
    assert recordings_main(["verify", str(session), "--decode"]) == 0
    assert "ok, " in capsys.readouterr().out


def truncate(path: Path, keep_bytes: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(keep_bytes)


def test_torn_segment_verify_fails_and_recover_keeps_the_readable_part(
    tmp_path: Path, capsys, synthetic
):
    session = tmp_path / "s"
    synthetic.record(
        session, autopilot_items(synthetic, 60), RecorderConfig(chunk_kb=4, fsync=False)
    )  # many chunks
    seg_path = fmt.segment_paths(session)[0]
    truncate(seg_path, seg_path.stat().st_size * 2 // 3)
    assert recordings_main(["verify", str(session)]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0] and "recover" in err[0]
    with pytest.raises(DataError, match="recover"):
        open_sessions([session])[0].frames()
    for verb in ("info", "trim", "export"):
        assert recordings_main([verb, str(session), *VERB_ARGS[verb]]) == 4
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has no index" in err[0] and "recover" in err[0], err
    assert recordings_main(["list", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sessions"][0]["status"] == "damaged"
    copy = session.parent / "copy"
    assert recordings_main(["recover", str(session), "--out", str(copy)]) == 0
    assert recordings_main(["recover", str(session)]) == 0
    assert "rebuilt" in capsys.readouterr().out
    assert recordings_main(["list", str(tmp_path), "--json"]) == 0
    rows = {r["session"]: r for r in json.loads(capsys.readouterr().out)["sessions"]}
    assert rows["s"]["status"] == rows["copy"]["status"] == "ok"
    assert (
        rows["s"]["duration_s"] > 0.5 and rows["s"]["stereo_pairs"] == rows["copy"]["stereo_pairs"]
    )
    for path in (session, copy):
        assert recordings_main(["verify", str(path)]) == 0
        seqs = [x.frame_seq for x in open_sessions([path])[0].samples()]
        assert 20 <= len(seqs) < 60 and seqs == list(range(len(seqs)))


def test_export_mp4_and_png_with_steering_overlay(session: Path, tmp_path: Path, capsys, synthetic):
    mp4, png = tmp_path / "out.mp4", tmp_path / "png"
    argv = ["export", str(session), "--from", "0.5", "--to", "1.0", "--mp4", str(mp4)]
    assert recordings_main([*argv, "--png", str(png)]) == 0
    pngs = sorted(png.glob("*.png"))
    assert len(pngs) == 15 and pngs[0].name == "frame-000015.png"
    video = cv2.VideoCapture(str(mp4))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == 15
    first = cv2.imread(str(pngs[0]))
    assert first.shape == (
        synthetic.H + 36,
        2 * synthetic.W,
        3,
    )  # both eyes side by side over the strip
    strip = first[synthetic.H :]
    assert strip.max() > 200  # the steering bar and its text are drawn
    assert "exported 15 frames" in capsys.readouterr().out


# --- corrupt and foreign input: one clear line from every verb ------------------------------


def _foreign_mcap(path: Path) -> None:
    with open(path, "wb") as f:
        w = Writer(f)
        w.start(profile="", library="someone-else/1.0")
        w.finish()


BAD_INPUTS = {
    "text": lambda p: p.write_text("hello, not a recording\n"),
    "empty": lambda p: p.write_bytes(b""),
    "png": lambda p: p.write_bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1]),
    "corrupt": lambda p: p.write_bytes(bytes([137, 77, 67, 65, 80, 48, 13, 10]) + os.urandom(64)),
    "foreign_mcap": _foreign_mcap,
}
VERB_ARGS = {
    "list": [],
    "info": [],
    "verify": [],
    "recover": [],
    "trim": ["--from", "0", "--to", "1"],
    "export": ["--mp4", "x.mp4"],
}


@pytest.mark.parametrize("as_folder", [False, True], ids=["file", "in-session"])
@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_corrupt_or_foreign_file_gives_one_clear_line_for_every_verb(
    tmp_path: Path, capsys, kind: str, as_folder: bool
):
    folder = tmp_path / "s"
    folder.mkdir()
    bad = folder / "segment-0000.mcap"
    BAD_INPUTS[kind](bad)
    target = folder if as_folder else bad
    for verb, extra in VERB_ARGS.items():
        code = recordings_main([verb, str(target), *extra])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code != 0, (verb, out)
        assert len(lines) == 1 and lines[0].startswith("rover: error: "), (verb, err)
        assert str(bad) in lines[0] and ("not" in lines[0] or "corrupt" in lines[0]), lines[0]
