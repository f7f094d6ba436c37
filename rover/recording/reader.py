"""Reading API: time-synchronised stereo samples, with the command in force, across sessions.

    for sample in iter_samples(["recordings/"]):
        train_on(sample.left, sample.right, sample.steering)

A session is read twice, lazily: a first pass over everything but the image bytes pairs each
stereo frame with its command (cheap, cached), a second pass decodes the frames in recording
order. `decode=False` hands out the JPEG bytes instead, for decoding in DataLoader workers
(`decode_jpeg`).

"The command in force at that frame": the `control/command` whose `frame_seq` is the frame's seq
when there is one (lock-step/autopilot: the command computed from that frame), else the latest
`control/command` logged at or before the frame, else the latest `teleop/command`, else zero.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import NamedTuple

import cv2
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from mcap.records import Attachment, Channel, Message, Metadata

from rover.errors import DataError
from rover.recording import format as fmt
from rover.recording import segment as seg
from rover.recording.takeover import SpanBuilder, TakeoverSpan, TakeoverTracker, drive_mode
from rover.recording.trims import TrimSpan, load_trims
from rover.recording.writer import session_is_live

_PENDING_FRAMES = 256  # how far back a command's frame_seq may answer a frame


@dataclass(frozen=True)
class Sample:
    """One stereo pair and the command in force at that frame."""

    left: np.ndarray  # RGB uint8 HxWx3 (JPEG bytes when decode=False)
    right: np.ndarray
    steering: float  # the command in force at that frame, [-1, 1] (the driver's own: less
    throttle: float  # any perturbation the control node added, see rover.perturb)
    stamp_ns: int  # frame capture time (monotonic, from the message header)
    frame_seq: int
    session: str  # session folder name
    index: int  # position of the frame in its session (0-based)
    takeover: bool = False  # the human had taken over from the autopilot (HG-DAgger's label)
    perturbation: float = 0.0  # steering the control node added on top of the driver's
    source: str = ""  # who drove: teleop, expert, autopilot, ... (the command's source)


@dataclass(slots=True)
class FrameInfo:
    """What the first pass learns about one stereo frame."""

    index: int
    frame_seq: int
    stamp_ns: int
    log_time_ns: int
    steering: float = 0.0
    throttle: float = 0.0
    command: str = "none"  # "frame" (answered it), "control", "teleop" (latest), "none"
    stale: bool = False  # the control node had no live input: its command was not followed
    perturbation: float = 0.0
    paired: bool = False  # its right eye is in the file too
    trimmed: bool = False
    takeover: bool = False  # inside a take-over span (rover.recording.takeover)
    source: str = ""  # who gave the command in force: "teleop" (the human), the autopilot's name


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> RGB uint8 HxWx3 C-contiguous."""
    buf = np.frombuffer(data, np.uint8)
    if hasattr(cv2, "IMREAD_COLOR_RGB"):
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
    else:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        image = None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image is None:
        raise DataError("a frame's JPEG data is corrupt: run `rover recordings verify` on it")
    return image


class Session:
    """One recording session folder (several MCAP segments)."""

    def __init__(self, path: str | Path, partial_ok: bool = False):
        self.path = Path(path)
        self.name = self.path.name
        self.segments = _check_segments(self.path, partial_ok)
        self.partial_ok = partial_ok
        self._frames: list[FrameInfo] | None = None
        self._takeovers: list[TakeoverSpan] = []
        self._metadata: dict | None = None

    def __repr__(self) -> str:
        return f"Session({str(self.path)!r})"

    @property
    def trims(self) -> list[TrimSpan]:
        return load_trims(self.path)

    @property
    def metadata(self) -> dict:
        """Robot config, calibration, software version, camera size (from the first segment)."""
        if self._metadata is None:
            self._metadata = _read_metadata(self.segments[0], self.partial_ok)
        return self._metadata

    def frames(self) -> list[FrameInfo]:
        """Every stereo frame with its command and trim flag (first pass, cached)."""
        if self._frames is None:
            indexer = FrameIndexer(drive_mode(self.metadata["robot_config"]))
            for topic, msg in walk_session(self.segments, self.partial_ok):
                indexer.feed(topic, msg)
            self._frames, self._takeovers = indexer.frames(), indexer.takeovers()
        trims = self.trims
        for f in self._frames:
            f.trimmed = any(t.covers(f.stamp_ns) for t in trims)
        return self._frames

    def takeovers(self) -> list[TakeoverSpan]:
        """The spans where the human took over from the autopilot, in log time."""
        self.frames()
        return self._takeovers

    @property
    def takeover_s(self) -> float:
        """Seconds of take-over driving in the session."""
        return sum(t.seconds for t in self.takeovers())

    @property
    def stereo_pairs(self) -> int:
        return len(self.frames())

    @property
    def duration_s(self) -> float:
        """Capture time from the first to the last frame, plus one frame period."""
        frames = self.frames()
        if len(frames) < 2:
            return 0.0
        stamps = [f.stamp_ns for f in frames]
        period = median(np.diff(stamps[:10_000]).tolist())
        return (stamps[-1] - stamps[0] + period) / 1e9

    def __len__(self) -> int:
        """Number of stereo pairs after trims."""
        return sum(not f.trimmed for f in self.frames())

    def samples(self, honour_trims: bool = True, decode: bool = True) -> Iterator[Sample]:
        """Every stereo pair in recording order (skipping trimmed spans unless told not to)."""
        frames = self.frames()
        k = 0
        left: bytes | None = None
        for topic, msg in _image_messages(self.segments, self.partial_ok):
            if k >= len(frames):
                break
            info = frames[k]
            if (msg.sequence, msg.publish_time) != (info.frame_seq, info.stamp_ns):
                continue  # a re-sent duplicate, or an eye without its pair
            if topic == fmt.LEFT_TOPIC:
                wanted = not (honour_trims and info.trimmed)
                left = _jpeg(msg) if wanted else None
                continue
            k += 1
            if left is None:
                continue
            right = _jpeg(msg)
            yield Sample(
                left=decode_jpeg(left) if decode else left,
                right=decode_jpeg(right) if decode else right,
                steering=info.steering,
                throttle=info.throttle,
                stamp_ns=info.stamp_ns,
                frame_seq=info.frame_seq,
                session=self.name,
                index=info.index,
                takeover=info.takeover,
                perturbation=info.perturbation,
                source=info.source,
            )
            left = None


def _jpeg(msg: Message) -> bytes:
    return CompressedImage.FromString(msg.data).data


def open_sessions(paths: Sequence[str | Path]) -> list[Session]:
    """Each path: a session folder, or a folder of session folders; DataError on bad input."""
    if isinstance(paths, str | Path):
        paths = [paths]
    sessions: list[Session] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(f"{path} does not exist: give a session folder or a folder of them")
        if path.is_file():
            seg.read_header(path)  # a foreign file says so; a segment means its session
            sessions.append(Session(path.parent))
        elif fmt.segment_paths(path):
            sessions.append(Session(path))
        else:
            found = sorted(p for p in path.iterdir() if p.is_dir() and fmt.segment_paths(p))
            if not found:
                raise DataError(
                    f"{path} holds no recordings (no segment-NNNN.mcap files): "
                    "give a session folder or a folder of session folders"
                )
            sessions += [Session(p) for p in found]
    return sessions


def iter_samples(
    paths: Sequence[str | Path], honour_trims: bool = True, decode: bool = True
) -> Iterator[Sample]:
    """Samples of every session under `paths`, session after session."""
    for session in open_sessions(paths):
        yield from session.samples(honour_trims=honour_trims, decode=decode)


def _check_segments(path: Path, partial_ok: bool) -> list[Path]:
    if not path.is_dir():
        raise DataError(f"{path} is not a session folder: give a folder of segment-NNNN.mcap")
    segments = fmt.segment_paths(path)
    if not segments:
        raise DataError(f"{path} holds no segment-NNNN.mcap files: it is not a rover session")
    live = session_is_live(path)
    for p in segments:
        seg.read_header(p)
        if partial_ok or seg.is_complete(p):
            continue
        if live and p == segments[-1]:
            raise DataError(
                f"{path} is being recorded right now: read it once the recorder has stopped"
            )
        raise DataError(
            f"{p} has no index (the recorder was killed or lost power): "
            f"run `rover recordings recover {path}`"
        )
    return segments


def walk_session(
    segments: list[Path],
    partial_ok: bool = False,
    on_record: Callable[[Path, object], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    states: list[seg.WalkState] | None = None,
) -> Iterator[tuple[str, Message]]:
    """(channel topic, message) of every message of the segments, in file order.

    `on_record` sees the other records (metadata, attachments); `states` collects each
    segment's WalkState (damage, completeness) when given.
    """
    for path in segments:
        channels: dict[int, str] = {}
        state = seg.WalkState(path)
        if states is not None:
            states.append(state)
        for record in seg.walk(path, state, tolerant=partial_ok, on_bytes=on_bytes):
            if isinstance(record, Message):
                topic = channels.get(record.channel_id)
                if topic is None:
                    raise DataError(f"{path}: a message on an unknown channel: run verify")
                yield topic, record
            elif isinstance(record, Channel):
                channels[record.id] = record.topic
            elif on_record is not None:
                on_record(path, record)


def _image_messages(segments: list[Path], partial_ok: bool) -> Iterator[tuple[str, Message]]:
    return (
        (topic, msg)
        for topic, msg in walk_session(segments, partial_ok)
        if topic in fmt.IMAGE_TOPICS
    )


class Label(NamedTuple):
    """What a logged command says of the frames it labels."""

    steering: float  # the driver's own: the perturbation the control node added taken off
    throttle: float
    perturbation: float
    stale: bool  # the control node had no live input: its command was not followed
    source: str  # who gave it: "teleop" (the human), else the control node's source


class FrameIndexer:
    """First pass: frames, paired eyes, and the command in force at each frame."""

    def __init__(self, drive_mode: bool = False) -> None:
        self._frames: list[FrameInfo] = []
        self._tracker = TakeoverTracker(drive_mode)  # for sessions recorded without marks
        self._derived, self._marked = SpanBuilder(), SpanBuilder()
        self._marks = False
        self.duplicates = 0  # captures re-sent with the same stamp, counted once
        self._pending: OrderedDict[int, FrameInfo] = OrderedDict()
        self._early: OrderedDict[int, Label] = OrderedDict()
        self._latest: dict[str, Label | None] = {
            fmt.CONTROL_TOPIC: None,
            fmt.TELEOP_TOPIC: None,
        }

    def feed(self, topic: str, msg: Message) -> None:
        """Take one message, in file order."""
        self._derived.last_log_ns = self._marked.last_log_ns = msg.log_time
        if topic == fmt.TAKEOVER_TOPIC:
            self._marks = True
            self._marked.event(msg.log_time, bool(json.loads(msg.data)["takeover"]))
        elif topic == fmt.LEFT_TOPIC:
            self._on_left(msg)
        elif topic == fmt.RIGHT_TOPIC:
            last = self._frames[-1] if self._frames else None
            if last is not None and (last.frame_seq, last.stamp_ns) == (
                msg.sequence,
                msg.publish_time,
            ):
                last.paired = True
        elif topic in self._latest:
            cmd = json.loads(msg.data)
            label = _command(cmd, topic)
            self._latest[topic] = label
            if topic != fmt.CONTROL_TOPIC:
                return
            change = self._tracker.update(str(cmd.get("source", "")))
            if change is not None:
                self._derived.event(msg.log_time, change)
            frame_seq = cmd.get("frame_seq", -1)
            answered = self._pending.pop(frame_seq, None)
            if answered is not None:
                _label(answered, label, "frame")
            elif frame_seq >= 0 and frame_seq not in self._early:
                # a small command can overtake its (large) frame between two sockets
                self._early[frame_seq] = label
                if len(self._early) > _PENDING_FRAMES:
                    self._early.popitem(last=False)

    def _on_left(self, msg: Message) -> None:
        if self._frames and self._frames[-1].stamp_ns == msg.publish_time:
            # the same capture re-sent (the simulator repeats its first frame until the stack
            # answers): keep the newest copy, the one the stack answered
            dropped = self._frames.pop()
            self._pending.pop(dropped.frame_seq, None)
            self.duplicates += 1
        info = FrameInfo(len(self._frames), msg.sequence, msg.publish_time, msg.log_time)
        source = fmt.CONTROL_TOPIC if self._latest[fmt.CONTROL_TOPIC] else fmt.TELEOP_TOPIC
        latest = self._latest[source]
        if latest:
            _label(info, latest, source.split("/")[1])
        self._frames.append(info)
        early = self._early.pop(msg.sequence, None)
        if early is not None:
            _label(info, early, "frame")
            return
        self._pending[msg.sequence] = info
        if len(self._pending) > _PENDING_FRAMES:
            self._pending.popitem(last=False)

    def frames(self) -> list[FrameInfo]:
        """The complete pairs (a torn tail may split the last one), indexed from 0."""
        complete = [f for f in self._frames if f.paired]
        spans = self.takeovers()
        for i, f in enumerate(complete):
            f.index = i
            f.takeover = any(t.covers(f.log_time_ns) for t in spans)
        return complete

    def takeovers(self) -> list[TakeoverSpan]:
        """Take-over spans: from the recorder's marks, else derived from control's sources."""
        return (self._marked if self._marks else self._derived).result()


def _command(cmd: dict, topic: str) -> Label:
    """A logged command as the label of the frames it answers."""
    offset = float(cmd.get("perturbation", 0.0))  # absent in older recordings
    source = str(cmd.get("source", "")) if topic == fmt.CONTROL_TOPIC else "teleop"
    steering = float(cmd["steering"]) - offset  # the driver's own, not what the motors got
    return Label(steering, float(cmd["throttle"]), offset, bool(cmd.get("stale")), source)


def _label(info: FrameInfo, label: Label, command: str) -> None:
    info.steering, info.throttle, info.perturbation, info.stale, info.source = label
    info.command = command


def _read_metadata(path: Path, partial_ok: bool) -> dict:
    meta: dict = {"session": {}, "robot_config": {}, "software": {}, "camera": {}}
    attachments: dict[str, bytes] = {}
    for record in seg.walk(path, tolerant=partial_ok):
        if isinstance(record, Metadata) and record.name == fmt.META_SESSION:
            meta["session"] = dict(record.metadata)
        elif isinstance(record, Metadata) and record.name == fmt.META_CONFIG:
            meta["robot_config"] = fmt.unflatten_config(record.metadata)
        elif isinstance(record, Attachment):
            attachments[record.name] = record.data
        elif isinstance(record, Message):
            break  # metadata and attachments come first in a segment
    s = meta["session"]
    meta["software"] = {k: s.get(k, "") for k in ("rover_version", "git", "format")}
    meta["camera"] = {
        "width": int(s["camera_width"]) if s.get("camera_width") else None,
        "height": int(s["camera_height"]) if s.get("camera_height") else None,
    }
    calib_name = Path(s.get("calibration", "")).name
    meta["calibration"] = (
        attachments[calib_name].decode(errors="replace") if calib_name in attachments else None
    )
    return meta
