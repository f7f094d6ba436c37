"""ROS 2 Humble messages built from rover's values (rosbags' typestore classes), for the bag
export in rosbag.py."""

from __future__ import annotations

import json
import math

import numpy as np

BASE_FRAME = "base_link"
JPEG_FORMAT = "bgr8; jpeg compressed bgr8"  # what image_transport's compressed plugin writes
TYPES = {
    "image": "sensor_msgs/msg/CompressedImage",
    "info": "sensor_msgs/msg/CameraInfo",
    "twist": "geometry_msgs/msg/TwistStamped",
    "diag": "diagnostic_msgs/msg/DiagnosticArray",
    "odom": "nav_msgs/msg/Odometry",
    "raw": "sensor_msgs/msg/Image",
    "tf": "tf2_msgs/msg/TFMessage",
}


class RosMessages:
    """Builds Humble messages from rover's values."""

    def __init__(self, store):
        self.t = store.types

    def header(self, stamp_ns: int, frame_id: str):
        time = self.t["builtin_interfaces/msg/Time"](
            sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)
        )
        return self.t["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def image(self, stamp_ns: int, frame_id: str, jpeg: bytes):
        data = np.frombuffer(jpeg, np.uint8)
        return self.t[TYPES["image"]](self.header(stamp_ns, frame_id), JPEG_FORMAT, data)

    def vector(self, x: float = 0.0, y: float = 0.0, z: float = 0.0):
        return self.t["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z))

    def twist(self, stamp_ns: int, steering: float, throttle: float):
        twist = self.t["geometry_msgs/msg/Twist"](self.vector(throttle), self.vector(z=steering))
        return self.t[TYPES["twist"]](self.header(stamp_ns, BASE_FRAME), twist)

    def camera_info(self, stamp_ns: int, frame_id: str, eye: dict):
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](0, 0, 0, 0, False)
        return self.t[TYPES["info"]](
            self.header(stamp_ns, frame_id),
            eye["height"],
            eye["width"],
            eye["model"],
            *(np.asarray(eye[k], np.float64).ravel() for k in ("d", "k", "r", "p")),
            0,
            0,
            roi,
        )

    def transform(self, stamp_ns: int, parent: str, child: str, xyz, quat):
        q = self.t["geometry_msgs/msg/Quaternion"](*(float(v) for v in quat))
        tf = self.t["geometry_msgs/msg/Transform"](self.vector(*xyz), q)
        return self.t["geometry_msgs/msg/TransformStamped"](
            self.header(stamp_ns, parent), child, tf
        )

    def status(self, stamp_ns: int, state: dict):
        kv = self.t["diagnostic_msgs/msg/KeyValue"]
        keys = [k for k in state if k not in ("seq", "stamp_ns", "frame_seq")]
        values = [kv(k, json.dumps(state[k])) for k in keys]
        problems = [
            name
            for name, bad in (
                ("disconnected", not state.get("connected", True)),
                ("e-stop", state.get("estop")),
                ("watchdog tripped", state.get("watchdog_tripped")),
            )
            if bad
        ]
        level = np.uint8(1 if problems else 0)  # WARN / OK
        status = self.t["diagnostic_msgs/msg/DiagnosticStatus"](
            level, "rover: motor controller", ", ".join(problems) or "ok", "mcu", values
        )
        return self.t[TYPES["diag"]](self.header(stamp_ns, BASE_FRAME), [status])

    def odometry(self, stamp_ns: int, truth: dict):
        yaw = float(truth.get("yaw_rad", 0.0))
        point = self.t["geometry_msgs/msg/Point"](truth.get("x_m", 0.0), truth.get("y_m", 0.0), 0.0)
        q = self.t["geometry_msgs/msg/Quaternion"](0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
        pose = self.t["geometry_msgs/msg/PoseWithCovariance"](
            self.t["geometry_msgs/msg/Pose"](point, q), np.zeros(36)
        )
        speed = self.vector(truth.get("speed_mps", 0.0))
        twist = self.t["geometry_msgs/msg/TwistWithCovariance"](
            self.t["geometry_msgs/msg/Twist"](speed, self.vector()), np.zeros(36)
        )
        return self.t[TYPES["odom"]](self.header(stamp_ns, "odom"), BASE_FRAME, pose, twist)

    def mono8(self, stamp_ns: int, frame_id: str, cost: np.ndarray):
        h, w = cost.shape
        return self.t[TYPES["raw"]](
            self.header(stamp_ns, frame_id), h, w, "mono8", 0, w, cost.ravel()
        )
