"""ROS 2 bags: `rover recordings export --rosbag2` read back by rosbags' own reader, and
`rover recordings import` of a bag into a session the training reader takes.

Sessions are written by the real Recorder (test_recording.py's helpers); foreign bags by the
rosbags Writer, as another team's tools would write them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from ruamel.yaml import YAML

from drivers.calibration import StereoCalibration
from rover import messages as m
from rover import topics
from rover.recording import open_sessions
from rover.recording.cli import main as recordings_main
from rover.recording.reader import decode_jpeg, walk_session
from rover.recording.rosbag import typestore

STORE = typestore()


def teleop_items(synthetic, n: int):
    """Hand driving: frame i, then a command (no frame_seq) in force from the next frame on."""
    for i in range(n):
        yield topics.CAMERA_STEREO, synthetic.frame(i)
        cmd = m.ControlCommand(
            seq=i,
            stamp_ns=synthetic.T0 + i * synthetic.PERIOD_NS + 5_000_000,
            steering=round(i / n - 0.5, 4),
        )
        yield topics.CONTROL_COMMAND, cmd
        yield topics.MOTOR_STATE, m.MotorState(seq=i, stamp_ns=cmd.stamp_ns, connected=True)


def calibration(synthetic, path: Path) -> Path:
    k = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    p1 = np.hstack([k, np.zeros((3, 1))])
    p2 = p1.copy()
    p2[0, 3] = -50.0 * 0.1
    StereoCalibration(
        (synthetic.W, synthetic.H), k, np.zeros((1, 5)), k, np.zeros((1, 5)), np.eye(3), np.array([[-0.1], [0], [0]]),
        np.eye(3), np.eye(3), p1, p2, np.eye(4), 0.2,
    ).save(path)  # fmt: skip
    return path


@pytest.fixture
def session(tmp_path: Path, synthetic) -> Path:
    path = tmp_path / "2025-01-01_10-00-00"
    robot = {
        "camera": {
            "width": synthetic.W,
            "height": synthetic.H,
            "calibration": str(calibration(synthetic, tmp_path / "c.yaml")),
        }
    }
    synthetic.record(path, teleop_items(synthetic, 30), robot=robot)
    assert recordings_main(["trim", str(path), "--frames", "10:15"]) == 0
    return path


def read_bag(path: Path) -> dict[str, list]:
    """topic -> [(bag time, message)] through rosbags' reader."""
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, stamp, raw in reader.messages():
            out.setdefault(conn.topic, []).append((stamp, STORE.deserialize_cdr(raw, conn.msgtype)))
    return out


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_export_writes_a_humble_bag_with_the_sessions_frames_commands_and_tf(
    session, tmp_path, synthetic
):
    bag = tmp_path / "bag"
    assert recordings_main(["export", str(session), "--rosbag2", str(bag)]) == 0
    meta = YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    # what Humble's parser reads: version <= 8, every topic's QoS a YAML string (not a list)
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap"
    for t in meta["topics_with_message_count"]:
        assert isinstance(t["topic_metadata"]["offered_qos_profiles"], str)
    got = read_bag(bag)

    source = {}  # the recording's own images and commands, untrimmed ones
    (s,) = open_sessions([session])
    kept = {(f.frame_seq, f.stamp_ns) for f in s.frames() if not f.trimmed}
    offset = int(s.metadata["session"]["clock_offset_ns"])
    for topic, msg in walk_session(s.segments):
        if topic.startswith("/camera/") and (msg.sequence, msg.publish_time) in kept:
            source.setdefault(topic, []).append(CompressedImage.FromString(msg.data))
    assert len(kept) == 25
    for eye in ("left", "right"):
        images = got[f"/stereo/{eye}/image_raw/compressed"]
        want = source[f"/camera/{eye}/compressed"]
        assert len(images) == len(got[f"/stereo/{eye}/camera_info"]) == 25
        assert [stamp_ns(i) for _, i in images] == [p.timestamp.ToNanoseconds() for p in want]
        assert all(i.header.frame_id == f"{eye}_camera" for _, i in images)
        assert bytes(images[3][1].data) == want[3].data  # the JPEG copied, not re-encoded
    left = decode_jpeg(bytes(got["/stereo/left/image_raw/compressed"][12][1].data))
    np.testing.assert_array_equal(left, decode_jpeg(source["/camera/left/compressed"][12].data))
    assert (
        abs(float(left[:, :, 0].mean()) - float(synthetic.image(17)[:, :, 0].mean())) < 3
    )  # frame 17

    commands = got["/control/command"]
    trimmed = [t for t in s.trims][0]
    expected = [
        i
        for i in range(30)
        if not trimmed.covers(synthetic.T0 + i * synthetic.PERIOD_NS + 5_000_000)
    ]
    assert len(commands) == len(expected) == len(got["/motor/status"])
    assert stamp_ns(commands[0][1]) == synthetic.T0 + 5_000_000 + offset
    assert commands[-1][1].twist.angular.z == pytest.approx(29 / 30 - 0.5, abs=1e-4)

    info = got["/stereo/right/camera_info"][0][1]
    assert (info.width, info.height) == (synthetic.W, synthetic.H) and info.p[3] == pytest.approx(
        -5.0
    )
    ((_, tf),) = got["/tf_static"]
    pairs = [(t.header.frame_id, t.child_frame_id) for t in tf.transforms]
    assert pairs == [("base_link", "left_camera"), ("left_camera", "right_camera")]
    assert tf.transforms[1].transform.translation.x == pytest.approx(0.1)


def test_import_of_an_exported_bag_gives_back_the_same_pairs_and_labels(session, tmp_path):
    bag, back = tmp_path / "bag", tmp_path / "imported"
    assert recordings_main(["export", str(session), "--rosbag2", str(bag)]) == 0
    assert recordings_main(["import", str(bag), "--out", str(back)]) == 0
    (a,), (b,) = open_sessions([session]), open_sessions([back])
    want, got = list(a.samples(decode=False)), list(b.samples(decode=False))
    assert len(got) == len(want) == 25
    assert [g.left for g in got] == [w.left for w in want]  # JPEG bytes through and back
    assert [g.steering for g in got] == pytest.approx([w.steering for w in want])


def write_foreign_bag(synthetic, path: Path, n: int) -> None:
    """Another team's bag: raw rgb8 images under their own names, Twist commands in rad/s."""
    t = STORE.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {
            topic: w.add_connection(topic, ty, typestore=STORE)
            for topic, ty in (
                ("/front/cam0/image", "sensor_msgs/msg/Image"),
                ("/front/cam1/image", "sensor_msgs/msg/Image"),
                ("/cmd_vel", "geometry_msgs/msg/Twist"),
            )
        }
        for i in range(n):
            stamp = 1_700_000_000_000_000_000 + i * synthetic.PERIOD_NS
            header = t["std_msgs/msg/Header"](
                t["builtin_interfaces/msg/Time"](stamp // 10**9, stamp % 10**9), "cam"
            )
            for eye, topic in enumerate(("/front/cam0/image", "/front/cam1/image")):
                img = synthetic.image(i, eye)
                msg = t["sensor_msgs/msg/Image"](
                    header, synthetic.H, synthetic.W, "rgb8", 0, synthetic.W * 3, img.ravel()
                )
                w.write(conns[topic], stamp + eye * 1000, STORE.serialize_cdr(msg, msg.__msgtype__))
            vec = t["geometry_msgs/msg/Vector3"]
            twist = t["geometry_msgs/msg/Twist"](vec(1.0, 0.0, 0.0), vec(0.0, 0.0, 0.2 * (i % 3)))
            w.write(conns["/cmd_vel"], stamp + 2000, STORE.serialize_cdr(twist, twist.__msgtype__))


def test_import_takes_named_raw_image_topics_and_scales_the_commands(tmp_path, capsys, synthetic):
    bag, out = tmp_path / "foreign", tmp_path / "session"
    write_foreign_bag(synthetic, bag, 12)
    # cam0/cam1: no "left"/"right" in the names; the error names the topics and the flag
    assert recordings_main(["import", str(bag), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--left TOPIC" in err[0] and "/front/cam0/image" in err[0]
    assert not out.exists()
    argv = ["import", str(bag), "--out", str(out), "--left", "/front/cam0/image"]
    argv += ["--right", "/front/cam1/image", "--steering-scale", "0.4", "--throttle-scale", "2"]
    assert recordings_main(argv) == 0
    (s,) = open_sessions([out])
    samples = list(s.samples())
    assert len(samples) == 12
    # /cmd_vel is the bag's one command topic: a Twist without a header, at bag time
    assert [x.steering for x in samples[1:]] == pytest.approx([0.5 * (i % 3) for i in range(11)])
    assert samples[5].throttle == pytest.approx(0.5)
    for i, x in enumerate(samples):
        assert abs(float(x.left[:, :, 0].mean()) - float(synthetic.image(i)[:, :, 0].mean())) < 3
        assert x.right[:, :, 1].mean() == pytest.approx(150, abs=3)


def test_export_can_add_the_recomputed_traversability_map(tmp_path, synthetic):
    path = tmp_path / "2025-01-01_11-00-00"
    robot = {
        "camera": {
            "width": synthetic.W,
            "height": synthetic.H,
            "calibration": str(calibration(synthetic, tmp_path / "c.yaml")),
        }
    }
    robot["traversability"] = {"model": "", "map_width_px": 16, "map_height_px": 12}  # stereo
    synthetic.record(path, teleop_items(synthetic, 4), robot=robot)
    bag = tmp_path / "bag"
    assert recordings_main(["export", str(path), "--rosbag2", str(bag), "--traversability"]) == 0
    maps = read_bag(bag)["/perception/traversability/cost"]
    assert len(maps) == 4
    cost = maps[0][1]
    assert (cost.encoding, cost.width, cost.height, cost.header.frame_id) == (
        "mono8",
        16,
        12,
        "left_camera",
    )
    assert len(cost.data) == 16 * 12
