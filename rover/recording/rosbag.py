"""`rover recordings export --rosbag2`: a session as a ROS 2 bag that Humble and later play.

The bag is rosbag2 with MCAP storage, written by the pure-Python `rosbags` package (no ROS
install), message definitions from ROS 2 Humble, metadata version 8 with each topic's QoS as a
YAML string: the layout Humble's parser reads (version 9 writes QoS as a list, which Humble
rejects: ros2/rosbag2#1895). Topics and the TF tree are listed in docs/ros2.md:

    /stereo/{left,right}/image_raw/compressed  sensor_msgs/msg/CompressedImage  the JPEG bytes
    /stereo/{left,right}/camera_info           sensor_msgs/msg/CameraInfo       per frame
    /control/command, /teleop/command,
    /perception/steering, /motor/state         geometry_msgs/msg/TwistStamped   see COMMANDS
    /motor/status                              diagnostic_msgs/msg/DiagnosticArray
    /sim/truth                                 nav_msgs/msg/Odometry            (simulator)
    /perception/traversability/cost            sensor_msgs/msg/Image mono8      (--traversability)
    /tf_static                                 tf2_msgs/msg/TFMessage           base_link tree

Header stamps are wall-clock capture times (the recording's CLOCK_MONOTONIC stamps plus its
clock offset); the bag's own timestamps are the wall clock when the recorder received each
message. Trimmed spans are left out. The bag is written beside OUT and renamed into place, so
a failure leaves nothing half-written. The messages are built in ros_messages.py; import is
in rosbag_import.py.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage as PbImage

from rover.errors import DataError, RoverError
from rover.recording import format as fmt
from rover.recording.reader import Session, decode_jpeg, walk_session
from rover.recording.ros_messages import BASE_FRAME, TYPES, RosMessages
from rover.recording.tools import resolve

ROSBAG_VERSION = 8  # what ROS 2 Humble's rosbag2 reads (it rejects version 9's QoS lists)
LEFT_FRAME, RIGHT_FRAME = "left_camera", "right_camera"
IMAGE_TOPICS = {
    fmt.LEFT_TOPIC: ("/stereo/left/image_raw/compressed", "/stereo/left/camera_info", LEFT_FRAME),
    fmt.RIGHT_TOPIC: (
        "/stereo/right/image_raw/compressed",
        "/stereo/right/camera_info",
        RIGHT_FRAME,
    ),
}
# normalised steering/throttle in [-1, 1] as a Twist: angular.z = steering (positive turns
# left, as REP 103's positive yaw), linear.x = throttle (positive forward); not m/s or rad/s
COMMANDS = ("/control/command", "/teleop/command", "/perception/steering", "/motor/state")
TRAVERSABILITY_TOPIC = "/perception/traversability/cost"


def typestore():
    """Message definitions of ROS 2 Humble."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


@dataclass
class BagExport:
    """What export wrote: the bag folder and messages per topic."""

    path: Path
    frames: int
    counts: dict[str, int]


def camera_model(session: Session, size: tuple[int, int]) -> tuple[dict, dict, dict]:
    """(left CameraInfo fields, right fields, rig pose) from the session's calibration, else
    from its stereo geometry (the simulator's pinhole rig when nothing was recorded)."""
    from perception.stereo import StereoGeometry

    meta = session.metadata
    geom, _ = StereoGeometry.from_metadata(meta)
    width, height = size
    rig = {"height_m": geom.height_m, "pitch_rad": geom.pitch_rad, "R": np.eye(3)}
    rig["T"] = np.array([-geom.baseline_m, 0.0, 0.0])
    if meta.get("calibration"):
        from drivers.calibration import StereoCalibration

        calib = StereoCalibration.from_yaml(meta["calibration"], "the recorded calibration")
        width, height = calib.image_size
        rig |= {"R": np.asarray(calib.R, float), "T": np.asarray(calib.T, float).ravel()}
        eyes = [
            (calib.K1, calib.D1, calib.R1, calib.P1),
            (calib.K2, calib.D2, calib.R2, calib.P2),
        ]
    else:  # a pinhole rig; scaled when the images are not the size it describes
        sx, sy = width / geom.width_px, height / geom.height_px
        fx, fy, cx, cy = geom.fx_px * sx, geom.fy_px * sy, geom.cx_px * sx, geom.cy_px * sy
        k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        p_left = np.hstack([k, np.zeros((3, 1))])
        p_right = p_left.copy()
        p_right[0, 3] = -fx * geom.baseline_m
        eyes = [(k, np.zeros(5), np.eye(3), p_left), (k, np.zeros(5), np.eye(3), p_right)]
    infos = []
    for k, d, r, p in eyes:
        d = np.asarray(d, float).ravel()
        d = np.pad(d, (0, 5 - len(d))) if len(d) < 5 else d
        model = "plumb_bob" if len(d) == 5 else "rational_polynomial"
        infos.append({"width": width, "height": height, "model": model, "d": d, "k": k})
        infos[-1] |= {"r": r, "p": p}
    return infos[0], infos[1], rig


def quaternion(rot: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix."""
    rvec, _ = cv2.Rodrigues(np.asarray(rot, np.float64))
    angle = float(np.linalg.norm(rvec))
    if angle < 1e-12:
        return (0.0, 0.0, 0.0, 1.0)
    axis = rvec.ravel() / angle
    s = math.sin(angle / 2)
    return (axis[0] * s, axis[1] * s, axis[2] * s, math.cos(angle / 2))


def tf_tree(msgs: RosMessages, stamp_ns: int, rig: dict):
    """base_link -> left_camera (optical: x right, y down, z forward, at the camera's height,
    pitched down), left_camera -> right_camera (the calibration's R, T)."""
    p = rig["pitch_rad"]
    base_to_optical = np.array(
        [[0.0, -math.sin(p), math.cos(p)], [-1.0, 0.0, 0.0], [0.0, -math.cos(p), -math.sin(p)]]
    )
    baseline = float(np.linalg.norm(rig["T"]))
    left = msgs.transform(
        stamp_ns,
        BASE_FRAME,
        LEFT_FRAME,
        (0.0, baseline / 2, rig["height_m"]),
        quaternion(base_to_optical),
    )
    rot_t = rig["R"].T  # right-camera points -> left-camera points
    right = msgs.transform(stamp_ns, LEFT_FRAME, RIGHT_FRAME, -rot_t @ rig["T"], quaternion(rot_t))
    return msgs.t[TYPES["tf"]]([left, right])


def _qos(transient: bool = False):
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    forever = QosTime(9223372036, 854775807)  # "infinite", as Humble's recorder writes it
    durability = QosDurability.TRANSIENT_LOCAL if transient else QosDurability.VOLATILE
    return [
        Qos(
            QosHistory.KEEP_LAST,
            1 if transient else 10,
            QosReliability.RELIABLE,
            durability,
            forever,
            forever,
            QosLiveliness.AUTOMATIC,
            forever,
            False,
        )
    ]


class _Bag:
    """A rosbags Writer with connections made on first use and counts per topic."""

    def __init__(self, path: Path, store, session: str):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.store = store
        self.writer = Writer(path, version=ROSBAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self.writer.set_custom_data("rover.session", session)
        self.writer.open()
        self.connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msgtype: str, log_time_ns: int, msg, transient=False) -> None:
        conn = self.connections.get(topic)
        if conn is None:
            conn = self.writer.add_connection(
                topic, msgtype, typestore=self.store, offered_qos_profiles=_qos(transient)
            )
            self.connections[topic] = conn
        self.writer.write(conn, log_time_ns, self.store.serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        self.writer.close()


def export_rosbag2(
    path: str | Path,
    out: str | Path,
    from_s: float = 0.0,
    to_s: float | None = None,
    traversability: bool = False,
) -> BagExport:
    """Write session `path` (frames [from_s, to_s), trims left out) as a rosbag2 folder `out`."""
    session = Session(resolve(path)[0])
    frames = session.frames()
    if not frames:
        raise DataError(f"{session.path} has no frames to export")
    out = Path(out)
    if out.exists():
        raise RoverError(f"{out} already exists: give a new folder for the bag")
    first = frames[0].stamp_ns
    end_s = session.duration_s if to_s is None else to_s
    if not 0 <= from_s < end_s:
        raise RoverError(f"--from {from_s} --to {end_s}: give 0 <= FROM < TO (seconds)")
    lo, hi = first + round(from_s * 1e9), first + round(end_s * 1e9)
    trims = session.trims
    wanted = [f for f in frames if lo <= f.stamp_ns < hi and not f.trimmed]
    if not wanted:
        raise RoverError(f"no untrimmed frames between {from_s} s and {end_s} s of {session.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial")  # the bag's file is named after its folder
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        counts = _ExportPass(session, wanted, (lo, hi), trims, traversability).run(
            staging / out.name
        )
        (staging / out.name).rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BagExport(out, len(wanted), counts)


class _ExportPass:
    """One pass over the session's messages in file order, writing the bag as it goes."""

    def __init__(self, session: Session, frames, window, trims, traversability: bool):
        self.session = session
        self.frames = {(f.frame_seq, f.stamp_ns) for f in frames}
        self.window, self.trims = window, trims
        offset = session.metadata["session"].get("clock_offset_ns")
        self.offset_ns = int(offset) if offset else 0
        self.store = typestore()
        self.msgs = RosMessages(self.store)
        self.pending: dict[str, tuple] = {}
        self.cameras: tuple[dict, dict, dict] | None = None
        self.trav = None
        if traversability:
            from perception.stereo import StereoGeometry
            from perception.traversability.pipeline import TraversabilityPipeline

            cfg = _traversability_config(session.metadata)
            geom, _ = StereoGeometry.from_metadata(session.metadata)
            self.trav = (TraversabilityPipeline.from_config(cfg, geom), cfg)

    def run(self, tmp: Path) -> dict[str, int]:
        from tqdm import tqdm

        self.bag = _Bag(tmp, self.store, self.session.name)
        try:
            with tqdm(total=len(self.frames), desc="rosbag2", unit="frame", disable=None) as bar:
                self.bar = bar
                for topic, msg in walk_session(self.session.segments):
                    self._one(topic, msg)
        finally:
            self.bag.close()
        return dict(self.bag.counts)

    def _kept(self, stamp_ns: int) -> bool:
        lo, hi = self.window
        return lo <= stamp_ns < hi and not any(t.covers(stamp_ns) for t in self.trims)

    def _one(self, topic: str, msg) -> None:
        if topic in IMAGE_TOPICS:
            if (msg.sequence, msg.publish_time) in self.frames:
                self._image(topic, msg)
            return
        if topic not in (*COMMANDS, "/sim/truth"):
            return
        if not self._kept(msg.publish_time):
            return
        value = json.loads(msg.data)
        stamp = value["stamp_ns"] + self.offset_ns
        if topic in COMMANDS:
            twist = self.msgs.twist(stamp, value["steering"], value["throttle"])
            self._write(topic, TYPES["twist"], msg.log_time, twist)
        if topic == "/motor/state":
            status = self.msgs.status(stamp, value)
            self._write("/motor/status", TYPES["diag"], msg.log_time, status)
        elif topic == "/sim/truth":
            self._write(topic, TYPES["odom"], msg.log_time, self.msgs.odometry(stamp, value))

    def _image(self, topic: str, msg) -> None:
        pb = PbImage.FromString(msg.data)
        if topic == fmt.LEFT_TOPIC:
            self.pending = {"left": (msg, pb)}
            return
        if "left" not in self.pending:
            return
        left = self.pending.pop("left")
        if self.cameras is None:
            h, w = decode_jpeg(left[1].data).shape[:2]
            self.cameras = camera_model(self.session, (w, h))
            tf = tf_tree(self.msgs, left[1].timestamp.ToNanoseconds(), self.cameras[2])
            self._write("/tf_static", TYPES["tf"], left[0].log_time, tf, transient=True)
        for eye, (raw, image), camera in zip(
            IMAGE_TOPICS, (left, (msg, pb)), self.cameras[:2], strict=True
        ):
            image_topic, info_topic, frame_id = IMAGE_TOPICS[eye]
            stamp = image.timestamp.ToNanoseconds()
            jpeg = self.msgs.image(stamp, frame_id, image.data)
            self._write(image_topic, TYPES["image"], raw.log_time, jpeg)
            info = self.msgs.camera_info(stamp, frame_id, camera)
            self._write(info_topic, TYPES["info"], raw.log_time, info)
        if self.trav is not None:
            self._traversability(left[0], left[1], pb)
        self.bar.update()

    def _traversability(self, left_msg, left_pb, right_pb) -> None:
        pipe, cfg = self.trav
        result = pipe.process(decode_jpeg(left_pb.data), decode_jpeg(right_pb.data))
        cost = result.cost_map(cfg.map_width_px, cfg.map_height_px)
        image = self.msgs.mono8(left_pb.timestamp.ToNanoseconds(), LEFT_FRAME, cost)
        self._write(TRAVERSABILITY_TOPIC, TYPES["raw"], left_msg.log_time, image)

    def _write(self, topic, msgtype, log_time, msg, transient=False) -> None:
        self.bag.write(topic, msgtype, log_time, msg, transient)


def _traversability_config(metadata: dict):
    from perception.traversability.pipeline import TraversabilityConfig

    raw = (metadata.get("robot_config") or {}).get("traversability") or {}
    return TraversabilityConfig.from_dict(raw)
