"""Crash-safe MCAP writing: one session folder, time-split segments, frequent fsyncs.

`SessionWriter` owns the files: it opens a segment with its schemas, channels, metadata and
attachments, writes JPEG stereo frames and JSON messages, finishes a chunk and fsyncs on
`flush()`, and closes a segment with its counts and index. The threading and the queue are in
recorder.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from mcap.writer import CompressionType, Writer
from mcap_protobuf.schema import register_schema

from rover import messages as m
from rover import topics
from rover.errors import ConfigError, DataError
from rover.recording import format as fmt
from rover.recording import takeover

_COMPRESSIONS = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": None}


@dataclass(frozen=True)
class RecorderConfig:
    """The [recorder] section: segment length, flush period, JPEG quality, queue bounds."""

    segment_s: float = 60.0
    flush_s: float = 0.5  # the most a SIGKILL or power cut may lose
    jpeg_quality: int = 90
    queue_frames: int = 150  # stereo frames waiting for the worker: 5 s at 30 Hz, ~70 MB
    queue_messages: int = 5000  # everything else waiting
    fsync: bool = True
    compression: str = "zstd"  # of each chunk: JPEG barely shrinks, the JSON channels do
    chunk_kb: int = 1024

    @classmethod
    def from_dict(cls, raw: dict) -> RecorderConfig:
        """Build from the [recorder] table; ConfigError names the bad key."""
        from rover.config import dataclass_from_dict

        cfg = dataclass_from_dict(cls, raw, "recorder")
        for key in ("segment_s", "flush_s"):
            if getattr(cfg, key) <= 0:
                raise ConfigError(f"[recorder] {key} = {getattr(cfg, key)}: must be > 0 seconds")
        if not 1 <= cfg.jpeg_quality <= 100:
            raise ConfigError(f"[recorder] jpeg_quality = {cfg.jpeg_quality}: use 1-100")
        if cfg.queue_frames < 1 or cfg.queue_messages < 1 or cfg.chunk_kb < 1:
            raise ConfigError("[recorder] queue_frames, queue_messages, chunk_kb must be >= 1")
        if cfg.compression not in _COMPRESSIONS:
            raise ConfigError(
                f"[recorder] compression = {cfg.compression!r}: use {sorted(_COMPRESSIONS)}"
            )
        return cfg


@dataclass
class _Segment:
    index: int
    path: Path
    file: object
    mcap: Writer
    channels: dict[str, int]
    started_ns: int
    frames: int = 0  # images per eye
    pairs: int = 0  # distinct captures
    first_stamp_ns: int = 0
    last_stamp_ns: int = 0
    written: dict[str, int] = field(default_factory=dict)


class SessionWriter:
    """Writes one session folder as time-split MCAP segments; not thread-safe (one worker)."""

    def __init__(
        self,
        session_dir: Path,
        config: RecorderConfig,
        robot_config: dict | None = None,
        namespace: str = "",
        labels=None,
    ):
        self.dir = Path(session_dir)
        self.config = config
        self.robot_config = robot_config or {}
        self.namespace = namespace
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot create the session folder {self.dir} ({exc.strerror}): "
                "choose another folder to record into"
            ) from None
        self._lock = _take_lock(self.dir)
        existing = [fmt.segment_index(p) for p in fmt.segment_paths(self.dir)]
        self._next_index = max(existing, default=-1) + 1  # a restarted recorder appends
        self.clock_offset_ns = fmt.clock_offset_ns()
        self.segment: _Segment | None = None
        # rover.recording.labels.LabelTally (given by its callers: it reads with the reader,
        # which imports this module): each segment's label counts, for `rover recordings list`
        self.labels = labels

    def open_segment(self, now_ns: int) -> None:
        """Start the next segment file, with schemas, channels, metadata and attachments."""
        path = self.dir / fmt.segment_name(self._next_index)
        self._next_index += 1
        file = open(path, "xb")  # noqa: SIM115 -- open for the segment's life; never overwrite
        writer = Writer(
            file,
            chunk_size=self.config.chunk_kb * 1024,
            compression=_COMPRESSIONS[self.config.compression] or CompressionType.NONE,
        )
        version = fmt.software_version()
        writer.start(profile="", library=f"{fmt.LIBRARY}/{version['rover']}")
        image_schema = register_schema(writer, CompressedImage)
        channels = {
            t: writer.register_channel(t, "protobuf", image_schema) for t in fmt.IMAGE_TOPICS
        }
        for topic in fmt.recorded_topics():
            if topic is topics.CAMERA_STEREO:
                continue
            schema = writer.register_schema(
                f"rover.{topic.msg_type.__name__}", "jsonschema", fmt.json_schema(topic.msg_type)
            )
            channels[fmt.channel_topic(topic)] = writer.register_channel(
                fmt.channel_topic(topic), "json", schema
            )
        stats = writer.register_schema("rover.RecorderStats", "jsonschema", fmt.stats_schema())
        channels[fmt.STATS_TOPIC] = writer.register_channel(fmt.STATS_TOPIC, "json", stats)
        marks = writer.register_schema("rover.Takeover", "jsonschema", takeover.mark_schema())
        channels[fmt.TAKEOVER_TOPIC] = writer.register_channel(fmt.TAKEOVER_TOPIC, "json", marks)
        pauses = writer.register_schema("rover.RecordPause", "jsonschema", fmt.pause_schema())
        channels[fmt.PAUSE_TOPIC] = writer.register_channel(fmt.PAUSE_TOPIC, "json", pauses)
        self.segment = _Segment(self._next_index - 1, path, file, writer, channels, now_ns)
        writer.add_metadata(fmt.META_SESSION, self._session_metadata())
        writer.add_metadata(fmt.META_CONFIG, fmt.flatten_config(self.robot_config))
        self._attach_calibration(writer)
        self.flush()
        fsync_dir(self.dir)  # the new file's name must survive a power cut too

    def _session_metadata(self) -> dict[str, str]:
        camera = self.robot_config.get("camera", {})
        version = fmt.software_version()
        return {
            "session": self.dir.name,
            "segment": str(self.segment.index),
            "namespace": self.namespace,
            "host": socket.gethostname(),
            "rover_version": version["rover"],
            "git": version["git"],
            "format": version["format"],
            "started_unix_ns": str(time.time_ns()),
            "clock_offset_ns": str(self.clock_offset_ns),
            "camera_width": str(camera.get("width", "")),
            "camera_height": str(camera.get("height", "")),
            "calibration": str(camera.get("calibration") or ""),
            "log_time": "wall clock when received (ns since the epoch)",
            "publish_time": "capture stamp, CLOCK_MONOTONIC ns (add clock_offset_ns for wall)",
        }

    def _attach_calibration(self, writer: Writer) -> None:
        calib = self.robot_config.get("camera", {}).get("calibration")
        if not calib:
            return
        try:
            data = Path(calib).read_bytes()
        except OSError as exc:
            raise DataError(
                f"calibration file {calib} is unreadable ({exc.strerror}): fix [camera] calibration"
            ) from None
        now = time.time_ns()
        writer.add_attachment(now, now, Path(calib).name, "application/yaml", data)

    def write_stereo(self, msg: m.StereoImage, log_time_ns: int, jpeg_quality: int) -> None:
        """JPEG-encode both eyes and write them as foxglove.CompressedImage."""
        jpegs = []
        for image in (msg.left, msg.right):
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise DataError(f"JPEG encoding failed for a {image.shape} frame")
            jpegs.append(jpeg.tobytes())
        stamps = (msg.left_stamp_ns or msg.stamp_ns, msg.right_stamp_ns or msg.stamp_ns)
        self.write_stereo_jpeg(msg.seq, msg.stamp_ns, stamps, jpegs, log_time_ns)

    def write_stereo_jpeg(
        self, seq: int, stamp_ns: int, eye_stamps_ns, jpegs, log_time_ns: int
    ) -> None:
        """Write a stereo frame already JPEG-encoded (left, right), e.g. imported from a bag."""
        seg = self.segment
        for topic, jpeg, stamp in zip(fmt.IMAGE_TOPICS, jpegs, eye_stamps_ns, strict=True):
            pb = CompressedImage(frame_id=topic.split("/")[2], data=jpeg, format="jpeg")
            pb.timestamp.FromNanoseconds(stamp + self.clock_offset_ns)
            seg.mcap.add_message(
                seg.channels[topic],
                log_time=log_time_ns,
                data=pb.SerializeToString(),
                publish_time=stamp_ns,
                sequence=seq & 0xFFFFFFFF,
            )
            if self.labels is not None:
                self.labels.feed(topic, log_time_ns, seq, stamp_ns, b"")
        seg.frames += 1
        seg.pairs += stamp_ns != seg.last_stamp_ns  # a re-sent capture counts once
        seg.first_stamp_ns = seg.first_stamp_ns or stamp_ns
        seg.last_stamp_ns = stamp_ns

    def write_json(self, channel: str, data: bytes, log_time_ns: int, stamp_ns: int, seq: int):
        """Write one JSON message on `channel`."""
        seg = self.segment
        seg.mcap.add_message(
            seg.channels[channel],
            log_time=log_time_ns,
            data=data,
            publish_time=stamp_ns,
            sequence=seq & 0xFFFFFFFF,
        )
        if self.labels is not None:
            self.labels.feed(channel, log_time_ns, seq, stamp_ns, data)

    def flush(self) -> None:
        """Finish the chunk in progress and push it to the disk."""
        seg = self.segment
        seg.mcap.flush()
        if self.config.fsync:
            os.fsync(seg.file.fileno())

    def close_segment(self, counts: dict, final: bool) -> None:
        """Write the segment's counts (and the totals when `final`), index and footer."""
        seg = self.segment
        seg.mcap.flush()  # the last chunk first, so the counts follow every message
        seg.mcap.add_metadata(
            fmt.META_SEGMENT,
            {
                "index": str(seg.index),
                "pairs": str(seg.pairs),
                "frames": str(seg.frames),
                "first_stamp_ns": str(seg.first_stamp_ns),
                "last_stamp_ns": str(seg.last_stamp_ns),
                "closed_unix_ns": str(time.time_ns()),
                "counts": _counts_json(counts),
            }
            | self._label_counts(),
        )
        if final:
            seg.mcap.add_metadata(fmt.META_COUNTS, {"counts": _counts_json(counts)})
        seg.mcap.finish()
        seg.file.flush()
        if self.config.fsync:
            os.fsync(seg.file.fileno())
        seg.file.close()
        self.segment = None

    def _label_counts(self) -> dict[str, str]:
        if self.labels is None:
            return {}
        return {"labels": json.dumps(self.labels.segment_counts(), sort_keys=True)}

    def release(self) -> None:
        """Give up the session lock; a clean stop leaves no lock file behind (a crash does,
        unlocked: `session_is_live` then reads the session as finished)."""
        Path(self._lock.name).unlink(missing_ok=True)  # while held: no other recorder races
        self._lock.close()


def _counts_json(counts: dict) -> str:
    return json.dumps({name: c.__dict__ for name, c in counts.items()}, sort_keys=True)


def _take_lock(session_dir: Path):
    path = session_dir / fmt.LOCK_FILE
    lock = open(path, "a+")  # noqa: SIM115 -- held (flock) until the recorder releases it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip() or "?"
        lock.close()
        raise DataError(
            f"{session_dir} is being recorded by another recorder (pid {pid}): "
            "give another --out folder or stop that one"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def session_is_live(session_dir: Path) -> bool:
    """True while a recorder holds the session's lock (a crashed one holds none)."""
    path = Path(session_dir) / fmt.LOCK_FILE
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a new or renamed file) survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
