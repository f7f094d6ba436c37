"""`rover recordings import BAG --out DIR`: a ROS bag with two camera topics as a rover session.

Any bag `rosbags` reads (rosbag2 MCAP or SQLite from any distro, ROS 1 bags too): the left and
right image topics (sensor_msgs/msg/CompressedImage, copied when JPEG, or sensor_msgs/msg/Image,
encoded once) are paired by header stamp; a command topic (geometry_msgs Twist/TwistStamped:
steering = angular.z, throttle = linear.x; ackermann_msgs AckermannDrive(Stamped): steering =
steering_angle, throttle = speed; each divided by its --*-scale and clipped to [-1, 1]) becomes
the session's control/command, the steering label `rover train steering` learns from.

Capture stamps are the bag's header stamps shifted so the session starts at 1 s; the session's
clock offset turns them back into the bag's wall-clock times. The session is written beside DIR
and renamed into place when complete.
"""

from __future__ import annotations

import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rover import messages as m
from rover import topics
from rover.errors import DataError, RoverError
from rover.recording import format as fmt
from rover.recording.labels import LabelTally
from rover.recording.recorder import TopicCounts
from rover.recording.writer import RecorderConfig, SessionWriter

IMAGE_TYPES = ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image")
TWIST_TYPES = ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist")
ACKERMANN_TYPES = ("ackermann_msgs/msg/AckermannDriveStamped", "ackermann_msgs/msg/AckermannDrive")
COMMAND_TYPES = TWIST_TYPES + ACKERMANN_TYPES
START_NS = 1_000_000_000  # the imported session's first capture stamp
JPEG_QUALITY = 90
HOLD_NS = 200_000_000  # how late a command may arrive after the frame it precedes
_MAX_WAITING = 300  # images of one eye waiting for the other


@dataclass(frozen=True)
class ImportOptions:
    """Which topics to read and how commands map onto rover's normalised steering/throttle."""

    left: str | None = None  # default: the image topic whose name has "left"
    right: str | None = None
    command: str | None = None  # default: the one command-typed topic, if there is one
    steering_scale: float = 1.0  # a command's steering value that means full lock
    throttle_scale: float = 1.0  # a command's speed value that means full throttle
    max_skew_ms: float = 20.0  # left and right header stamps further apart do not pair


@dataclass
class ImportResult:
    """What import wrote."""

    path: Path
    pairs: int
    commands: int
    unpaired: int
    topics: tuple[str, str, str | None]


def import_bag(bag: str | Path, out: str | Path, opts: ImportOptions = ImportOptions()):
    """Write the stereo pairs (and commands) of `bag` as the rover session folder `out`."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.rosbag2 import ReaderError

    from rover.recording.rosbag import typestore

    bag, out = Path(bag), Path(out)
    if not bag.exists():
        raise DataError(f"{bag} does not exist: give a rosbag2 folder (or a ROS 1 .bag file)")
    if out.exists():
        raise RoverError(f"{out} already exists: give a new folder for the session")
    if opts.steering_scale <= 0 or opts.throttle_scale <= 0 or opts.max_skew_ms <= 0:
        raise RoverError("--steering-scale, --throttle-scale and --max-skew-ms must be > 0")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        reader = AnyReader([bag], default_typestore=typestore())
        reader.open()
    except (AnyReaderError, ReaderError, OSError) as exc:
        raise DataError(
            f"{bag} is not a readable ROS bag ({exc}): give a rosbag2 folder with its "
            "metadata.yaml (`ros2 bag reindex` rebuilds a lost one) or a ROS 1 .bag file"
        ) from None
    try:
        chosen = choose_topics(reader, opts)
        result = _Importer(reader, chosen, opts).run(staging)
        staging.rename(out)
    except (AnyReaderError, ReaderError) as exc:
        raise DataError(f"{bag} is damaged ({exc}): nothing was imported") from None
    finally:
        reader.close()
        shutil.rmtree(staging, ignore_errors=True)
    result.path = out
    return result


def choose_topics(reader, opts: ImportOptions) -> tuple[str, str, str | None]:
    """(left, right, command or None): the ones named, else the defaults; DataError listing
    what the bag has when a choice is missing or ambiguous."""
    types = {c.topic: c.msgtype for c in reader.connections}
    images = sorted(t for t, ty in types.items() if ty in IMAGE_TYPES)
    listing = ", ".join(f"{t} ({types[t]})" for t in sorted(types)) or "no topics"
    picked = []
    for side, given in (("left", opts.left), ("right", opts.right)):
        if given is None:
            named = [t for t in images if side in t.lower() and "depth" not in t.lower()]
            if len(named) != 1:
                raise DataError(
                    f"cannot tell the {side} camera among the bag's image topics "
                    f"({', '.join(images) or 'none'}): name it with --{side} TOPIC"
                )
            given = named[0]
        if types.get(given) not in IMAGE_TYPES:
            raise DataError(f"--{side} {given} is not an image topic of the bag: it has {listing}")
        picked.append(given)
    command = opts.command
    if command is None:
        candidates = [t for t, ty in types.items() if ty in COMMAND_TYPES]
        command = "/control/command" if "/control/command" in candidates else None
        command = candidates[0] if command is None and len(candidates) == 1 else command
    elif types.get(command) not in COMMAND_TYPES:
        raise DataError(
            f"--command {command} is not a Twist/TwistStamped/AckermannDrive(Stamped) topic "
            f"of the bag: it has {listing}"
        )
    return picked[0], picked[1], command


def _stamp(msg, bag_time_ns: int) -> int:
    header = getattr(msg, "header", None)
    if header is None:
        return bag_time_ns
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _jpeg(msg) -> tuple[bytes, tuple[int, int]]:
    """JPEG bytes of an image message (copied when already JPEG) and its (width, height)."""
    if hasattr(msg, "format"):  # CompressedImage
        data = bytes(msg.data)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"an image in format {msg.format!r} does not decode: is it an image?")
        if data[:2] == b"\xff\xd8":
            return data, (image.shape[1], image.shape[0])
        bgr = image
    else:  # sensor_msgs/msg/Image
        bgr = _raw_to_bgr(msg)
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError(f"JPEG encoding failed for a {bgr.shape} image")
    return jpeg.tobytes(), (bgr.shape[1], bgr.shape[0])


def _raw_to_bgr(msg) -> np.ndarray:
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
    if msg.encoding not in channels:
        raise DataError(
            f"image encoding {msg.encoding!r} is not supported: use rgb8, bgr8, mono8, rgba8 "
            "or bgra8 images (or compressed ones)"
        )
    c = channels[msg.encoding]
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)
    image = np.ascontiguousarray(rows[:, : msg.width * c].reshape(msg.height, msg.width, c))
    convert = {
        "rgb8": cv2.COLOR_RGB2BGR,
        "mono8": cv2.COLOR_GRAY2BGR,
        "rgba8": cv2.COLOR_RGBA2BGR,
        "bgra8": cv2.COLOR_BGRA2BGR,
    }
    return cv2.cvtColor(image, convert[msg.encoding]) if msg.encoding in convert else image


def _command(msg, msgtype: str, opts: ImportOptions) -> tuple[float, float]:
    if msgtype in TWIST_TYPES:
        twist = getattr(msg, "twist", msg)
        steering, throttle = twist.angular.z, twist.linear.x
    else:
        drive = getattr(msg, "drive", msg)
        steering, throttle = drive.steering_angle, drive.speed
    return (
        float(np.clip(steering / opts.steering_scale, -1, 1)),
        float(np.clip(throttle / opts.throttle_scale, -1, 1)),
    )


class _Importer:
    """One pass over the bag in time order: pairs eyes by stamp, writes frames and commands."""

    def __init__(self, reader, chosen: tuple[str, str, str | None], opts: ImportOptions):
        self.reader, self.opts = reader, opts
        self.left, self.right, self.command = chosen
        self.tolerance_ns = int(opts.max_skew_ms * 1e6)
        self.queues: dict[str, deque] = {self.left: deque(), self.right: deque()}
        self.commands: deque = deque()
        self.held: deque = deque()  # pairs waiting for the commands stamped before them
        self.writer: SessionWriter | None = None
        self.config = RecorderConfig(fsync=False)
        self.counts = {t.name: TopicCounts() for t in fmt.recorded_topics()}
        self.pairs = self.unpaired = self.written_commands = 0
        self.segment_start_ns = 0

    def run(self, staging: Path) -> ImportResult:
        from tqdm import tqdm

        wanted = [c for c in self.reader.connections if c.topic in (*self.queues, self.command)]
        total = sum(c.msgcount for c in wanted if c.topic == self.left) or None
        try:
            with tqdm(total=total, desc="importing", unit="frame", disable=None) as bar:
                for conn, bag_ns, raw in self.reader.messages(connections=wanted):
                    msg = self.reader.deserialize(raw, conn.msgtype)
                    if conn.topic == self.command:
                        self.commands.append((_stamp(msg, bag_ns), bag_ns, msg, conn.msgtype))
                    else:
                        self.queues[conn.topic].append((_stamp(msg, bag_ns), bag_ns, msg))
                        self._pair()
                    before = self.pairs
                    self._drain(staging, bag_ns - HOLD_NS)
                    bar.update(self.pairs - before)
                self._drain(staging, None)
            self.unpaired += sum(len(q) for q in self.queues.values())
            if self.writer is None:
                raise DataError(
                    f"no stereo pairs: no {self.left} image is within {self.opts.max_skew_ms:g} ms "
                    f"of a {self.right} one (raise --max-skew-ms, or check the topics)"
                )
            self._flush_commands(None)
            self.writer.close_segment(self.counts, final=True)
        finally:
            if self.writer is not None:
                self.writer.release()
        return ImportResult(
            staging,
            self.pairs,
            self.written_commands,
            self.unpaired,
            (self.left, self.right, self.command),
        )

    def _pair(self) -> None:
        left, right = self.queues[self.left], self.queues[self.right]
        while left and right:
            skew = left[0][0] - right[0][0]
            if abs(skew) <= self.tolerance_ns:
                self.held.append((left.popleft(), right.popleft()))
            else:
                (left if skew < 0 else right).popleft()  # the older eye has no partner
                self.unpaired += 1
        for queue in (left, right):  # one eye missing for a while: do not hold its images
            while len(queue) > _MAX_WAITING:
                queue.popleft()
                self.unpaired += 1

    def _drain(self, staging: Path, until_bag_ns: int | None) -> None:
        """Write the pairs received before `until_bag_ns` (all when None): a command stamped
        before a frame may arrive a little after it, and must be written before it."""
        while self.held and (until_bag_ns is None or self.held[0][0][1] <= until_bag_ns):
            self._write_pair(staging, *self.held.popleft())

    def _open(self, staging: Path, first_ns: int, size: tuple[int, int]) -> None:
        robot = {"camera": {"width": size[0], "height": size[1]}}
        self.writer = SessionWriter(staging, self.config, robot, "import", labels=LabelTally())
        self.writer.clock_offset_ns = first_ns - START_NS
        self.writer.open_segment(START_NS)
        self.segment_start_ns = START_NS

    def _write_pair(self, staging: Path, left, right) -> None:
        (left_jpeg, size), (right_jpeg, _) = _jpeg(left[2]), _jpeg(right[2])
        if self.writer is None:
            self._open(staging, left[0], size)
        offset = self.writer.clock_offset_ns
        stamp = left[0] - offset
        if stamp - self.segment_start_ns >= self.config.segment_s * 1e9:
            self.writer.close_segment(self.counts, final=False)
            self.writer.open_segment(stamp)
            self.segment_start_ns = stamp
        self._flush_commands(left[0])
        eyes = (stamp, right[0] - offset)
        self.writer.write_stereo_jpeg(self.pairs, stamp, eyes, (left_jpeg, right_jpeg), left[1])
        self.counts[topics.CAMERA_STEREO.name].written += 1
        self.pairs += 1

    def _flush_commands(self, until_ns: int | None) -> None:
        """Write the commands stamped up to `until_ns` (all when None), before that frame."""
        offset = self.writer.clock_offset_ns
        while self.commands and (until_ns is None or self.commands[0][0] <= until_ns):
            stamp, bag_ns, msg, msgtype = self.commands.popleft()
            if stamp - offset < 0:
                continue  # before the first frame: nothing to label
            steering, throttle = _command(msg, msgtype, self.opts)
            cmd = m.ControlCommand(
                seq=self.written_commands,
                stamp_ns=stamp - offset,
                steering=steering,
                throttle=throttle,
                source="import",
            )
            self.writer.write_json(
                fmt.CONTROL_TOPIC, fmt.message_json(cmd), bag_ns, cmd.stamp_ns, cmd.seq
            )
            self.counts[topics.CONTROL_COMMAND.name].written += 1
            self.written_commands += 1
