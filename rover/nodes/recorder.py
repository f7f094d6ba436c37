"""Recorder node: every recorded topic into crash-safe, time-split MCAP segments.

    python -m rover.nodes.recorder --namespace NS [--config F] --out SESSION_DIR

It takes every message (no conflation; a high-water mark of a few seconds), hands it to the
Recorder's bounded queue and goes straight back to the sockets: JPEG encoding and disk writes
happen on the Recorder's worker thread, so the recorder never slows the camera or control.
SIGINT/SIGTERM: drain what already arrived, write the counts and the index, exit 0. Restarted
into the same folder (the manager restarts a crashed node), it appends new segments.

The operator's record key pauses it: the teleop window's key on teleop/command and a remote
operator's record button on teleop/remote each say ``record_paused``; the recorder follows
whichever of them changed last (so a local window that never touched its key does not undo a
remote pause), and while paused nothing is written (a mark on /rover/pause says where). It says
what it does on recorder/status, twice a second and at once on each pause or resume, for the
HUDs.
"""

from __future__ import annotations

import logging
import time

import cv2

from rover import bus, topics
from rover import messages as m
from rover.node import Shutdown, node_argparser, node_config, run_main
from rover.ready import clear_ready, mark_ready
from rover.recording import format as fmt
from rover.recording.recorder import Recorder, RecorderConfig

log = logging.getLogger("rover.recorder")
# where an operator's record key (window, gamepad, remote console) says record_paused
RECORD_KEY_TOPICS = (topics.TELEOP_COMMAND, topics.TELEOP_REMOTE)
HWM_SECONDS = 5.0  # per-topic socket buffer, in seconds of the topic's nominal rate
FRAME_HWM = 300  # at most ~140 MB of raw 320x240 pairs: covers lock-step bursts too
REPORT_S = 10.0
STATUS_S = 1.0 / topics.RECORDER_STATUS.rate_hz
# ready once both arrive: a frame whose answering command was missed would lose its label
READY_TOPICS = {topics.CAMERA_STEREO, topics.CONTROL_COMMAND}


class RecorderNode:
    """Wires the bus to a Recorder: one every-message subscriber per recorded topic."""

    def __init__(self, recorder: Recorder, bus_cfg: topics.BusConfig):
        self.recorder = recorder
        self.bus_cfg = bus_cfg
        self.ready = False
        self.heard: set = set()
        clear_ready(bus_cfg, "recorder")
        self.status = bus.Publisher(topics.RECORDER_STATUS, bus_cfg)
        self.next_status = 0.0
        self._record_keys: dict[str, bool] = {}  # each key's topic: its last record_paused
        self.subs = [
            bus.Subscriber(
                t,
                bus_cfg,
                newest=False,
                hwm=FRAME_HWM if t.frames else max(100, int(t.rate_hz * HWM_SECONDS * 4)),
            )
            # the operator's commands first: a pause applies to what arrived with it
            for t in sorted(fmt.recorded_topics(), key=lambda t: t not in RECORD_KEY_TOPICS)
        ]

    def spin_once(self, timeout_ms: float = 100) -> int:
        """Move whatever arrived into the recorder; returns how many messages."""
        moved = 0
        for sub in bus.wait_any(self.subs, timeout_ms):
            for msg in sub.drain():
                if sub.topic in RECORD_KEY_TOPICS:
                    self._follow_record_key(sub.topic, msg)
                self.recorder.submit(sub.topic, msg)
                moved += 1
            if not self.ready and moved:
                self.heard.add(sub.topic)
                if self.heard >= READY_TOPICS:  # frames and commands both flow in
                    mark_ready(self.bus_cfg, "recorder")  # lock-step may start now
                    self.ready = True
            self.recorder.note_bus_stats(sub.topic, sub.stats.skipped, sub.stats.malformed)
        self.recorder.raise_if_failed()
        if time.monotonic() >= self.next_status:
            self.publish_status()
        return moved

    def _follow_record_key(self, topic: topics.Topic, cmd) -> None:
        """Pause or resume when an operator's record key changed (the latest change wins)."""
        before = self._record_keys.get(topic.name, False)
        self._record_keys[topic.name] = cmd.record_paused
        if cmd.record_paused == before:
            return
        if self.recorder.set_paused(cmd.record_paused, cmd.stamp_ns):
            verb = "paused" if cmd.record_paused else "resumed"
            log.info("recording %s by the record key (%s)", verb, cmd.operator or "operator")
            self.publish_status()  # the HUD changes at once, not at the next status tick

    def publish_status(self) -> None:
        """Say on recorder/status whether the recorder writes or is paused."""
        self.status.publish(
            m.RecorderStatus(
                paused=self.recorder.paused,
                frames_written=self.recorder.counts[topics.CAMERA_STEREO.name].written,
                paused_s=round(self.recorder.paused_s, 3),
                session=self.recorder.path.name,
            )
        )
        self.next_status = time.monotonic() + STATUS_S

    def close(self, drain_s: float = 0.5) -> None:
        deadline = time.monotonic() + drain_s  # what already arrived still goes in the file
        while self.spin_once(timeout_ms=0) and time.monotonic() < deadline:
            pass
        for sub in self.subs:
            sub.close()
        clear_ready(self.bus_cfg, "recorder")
        self.status.close()
        self.recorder.close()


def recorder_config(cfg) -> RecorderConfig:
    """The [recorder] section when the robot config has one, else the defaults."""
    return getattr(cfg, "recorder", None) or RecorderConfig()


def main() -> None:
    parser = node_argparser(__doc__)
    parser.add_argument("--out", required=True, metavar="SESSION_DIR", help="session folder")
    args = parser.parse_args()
    cfg, bus_cfg = node_config(args)
    cv2.setNumThreads(1)  # one JPEG at a time on the worker: leave the cores to the stack
    stop = Shutdown()
    recorder = Recorder(args.out, recorder_config(cfg), cfg.raw(), bus_cfg.namespace)
    node = RecorderNode(recorder, bus_cfg)
    log.info("recording to %s", recorder.path)
    started = time.monotonic()
    next_report = time.monotonic() + REPORT_S
    try:
        while not stop.requested:
            node.spin_once()
            if time.monotonic() >= next_report:
                frames = recorder.counts[topics.CAMERA_STEREO.name]
                log.info(
                    "frames received %d written %d skipped %d dropped %d",
                    frames.received,
                    frames.written,
                    frames.skipped,
                    frames.dropped,
                )
                next_report += REPORT_S
    finally:
        node.close()
    frames = recorder.counts[topics.CAMERA_STEREO.name]
    log.info(
        "stopped: %d frames written, %d skipped, %d dropped; cpu %.1f s over %.1f s",
        frames.written,
        frames.skipped,
        frames.dropped,
        time.process_time(),
        time.monotonic() - started,
    )


if __name__ == "__main__":
    run_main("recorder", main)
