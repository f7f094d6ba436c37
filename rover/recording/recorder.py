"""The recorder's logic: takes bus messages without ever blocking, writes them on a thread.

`Recorder.submit` is called from the receive loop: a full queue drops the message and counts
it; while paused (`set_paused`: the operator's record key) nothing is queued, only counted. A
worker thread JPEG-encodes the frames (cv2 releases the GIL) and writes them through a
SessionWriter, which finishes a chunk and fsyncs every `flush_s` (so a SIGKILL or a power cut
loses at most about that much) and starts a new segment every `segment_s`. Nothing here imports
the bus: tests and tools drive it directly.
"""

from __future__ import annotations

import errno
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rover import messages as m
from rover import topics
from rover.errors import ConfigError, DataError, DeviceError
from rover.recording import format as fmt
from rover.recording.labels import LabelTally
from rover.recording.takeover import TakeoverTracker, drive_mode, mark_json
from rover.recording.writer import RecorderConfig, SessionWriter

__all__ = ["Recorder", "RecorderConfig", "TopicCounts"]
_STOP = object()
_PAUSE = object()


@dataclass
class TopicCounts:
    """What happened to one topic's messages (stereo: frames)."""

    received: int = 0  # handed to the recorder
    written: int = 0  # in the file
    skipped: int = 0  # seq gaps seen by the subscriber: lost before reaching the recorder
    dropped: int = 0  # the recorder's queue was full
    malformed: int = 0
    paused: int = 0  # not written: the operator had paused the recording


class Recorder:
    """Takes bus messages without blocking; a worker thread encodes and writes them."""

    def __init__(
        self,
        session_dir: str | Path,
        config: RecorderConfig | None = None,
        robot_config: dict | None = None,
        namespace: str = "",
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ):
        self.config = config or RecorderConfig()
        self.clock_ns = clock_ns
        self.session = SessionWriter(
            Path(session_dir), self.config, robot_config, namespace, labels=LabelTally()
        )
        self.counts = {t.name: TopicCounts() for t in fmt.recorded_topics()}
        self.channels = {t.name: fmt.channel_topic(t) for t in fmt.recorded_topics()}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued_frames = 0
        self._queued_messages = 0
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.takeover = TakeoverTracker(drive_mode(robot_config or {}))
        self.paused = False
        self._paused_ns = 0  # paused time before the current pause
        self._paused_since_ns = 0
        self.session.open_segment(clock_ns())
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.session.dir

    def submit(self, topic: topics.Topic, msg: m.Message) -> bool:
        """Queue a message for writing; False (and counted) when the queue is full."""
        self.raise_if_failed()
        counts = self.counts[topic.name]
        counts.received += 1
        if self.paused:
            counts.paused += 1
            return False
        frames = topic is topics.CAMERA_STEREO
        with self._lock:
            if (
                frames
                and self._queued_frames >= self.config.queue_frames
                or (not frames and self._queued_messages >= self.config.queue_messages)
            ):
                counts.dropped += 1
                return False
            if frames:
                self._queued_frames += 1
            else:
                self._queued_messages += 1
        self._queue.put((topic, msg, time.time_ns()))
        return True

    def set_paused(self, paused: bool, stamp_ns: int) -> bool:
        """Pause or resume writing at the key press stamped `stamp_ns`; True when it changed.
        The mark goes through the queue, after every message submitted before it."""
        if paused == self.paused:
            return False
        now = self.clock_ns()
        if paused:
            self._paused_since_ns = now
        else:
            self._paused_ns += now - self._paused_since_ns
        self.paused = paused
        self._queue.put((_PAUSE, paused, stamp_ns))
        return True

    @property
    def paused_s(self) -> float:
        """Seconds spent paused so far."""
        current = self.clock_ns() - self._paused_since_ns if self.paused else 0
        return (self._paused_ns + current) / 1e9

    def note_bus_stats(self, topic: topics.Topic, skipped: int, malformed: int) -> None:
        """Record the subscriber's own counts (seq gaps, malformed) for `topic`."""
        counts = self.counts[topic.name]
        counts.skipped, counts.malformed = skipped, malformed

    def queued(self) -> tuple[int, int]:
        """(frames, other messages) waiting for the worker."""
        return self._queued_frames, self._queued_messages

    def raise_if_failed(self) -> None:
        """Re-raise, in the caller's thread, an error that stopped the worker."""
        if self.error is None:
            return
        converted = _as_rover_error(self.error, self.path)
        if converted is self.error:
            raise self.error
        raise converted from self.error

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, the final counts and the index; release the session."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
        self.session.release()
        self.raise_if_failed()

    def _run(self) -> None:
        try:
            self._loop()
            self.session.close_segment(self.counts, final=True)
        except BaseException as exc:  # handed to the receive loop by raise_if_failed
            self.error = exc

    def _loop(self) -> None:
        cfg = self.config
        flush_ns, segment_ns = int(cfg.flush_s * 1e9), int(cfg.segment_s * 1e9)
        next_flush = next_stats = self.clock_ns()
        while True:
            wait_s = max(0.0, (min(next_flush, next_stats) - self.clock_ns()) / 1e9)
            try:
                item = self._queue.get(timeout=wait_s)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._write_stats()
                return
            if item is not None and item[0] is _PAUSE:
                self._write_pause(*item[1:])
            elif item is not None:
                self._write(*item)
            now = self.clock_ns()
            if now >= next_stats:
                self._write_stats()
                next_stats = now + 1_000_000_000
            if now - self.session.segment.started_ns >= segment_ns:
                self.session.close_segment(self.counts, final=False)
                self.session.open_segment(now)
                next_flush = now + flush_ns
            elif now >= next_flush:
                self.session.flush()
                next_flush = now + flush_ns

    def _write_pause(self, paused: bool, stamp_ns: int) -> None:
        data = json.dumps({"paused": paused}).encode()
        self.session.write_json(fmt.PAUSE_TOPIC, data, time.time_ns(), stamp_ns, 0)

    def _write(self, topic: topics.Topic, msg: m.Message, log_time_ns: int) -> None:
        if topic is topics.CAMERA_STEREO:
            self.session.write_stereo(msg, log_time_ns, self.config.jpeg_quality)
            with self._lock:
                self._queued_frames -= 1
        else:
            data = fmt.message_json(msg)
            self.session.write_json(
                self.channels[topic.name], data, log_time_ns, msg.stamp_ns, msg.seq
            )
            if topic is topics.CONTROL_COMMAND:
                self._mark_takeover(msg, log_time_ns)
            with self._lock:
                self._queued_messages -= 1
        self.counts[topic.name].written += 1

    def _mark_takeover(self, cmd: m.ControlCommand, log_time_ns: int) -> None:
        """A mark on /rover/takeover where the human takes over from the autopilot or hands back."""
        started = self.takeover.update(cmd.source)
        if started is not None:
            data = mark_json(started, cmd.source, cmd.frame_seq)
            self.session.write_json(fmt.TAKEOVER_TOPIC, data, log_time_ns, cmd.stamp_ns, cmd.seq)

    def _write_stats(self) -> None:
        data = json.dumps(
            {
                "topics": {name: c.__dict__ for name, c in self.counts.items()},
                "queued_frames": self._queued_frames,
                "segment": self.session.segment.index,
            }
        ).encode()
        now = self.clock_ns()
        self.session.write_json(fmt.STATS_TOPIC, data, time.time_ns(), now, 0)


def _as_rover_error(exc: BaseException, path: Path) -> Exception:
    if isinstance(exc, DataError | ConfigError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DeviceError(f"disk full while recording to {path}: free space or record elsewhere")
    if isinstance(exc, OSError):
        return DeviceError(f"cannot write the recording in {path} ({exc.strerror}): check the disk")
    return exc
