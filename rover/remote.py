"""What a remote operator sees of the robot: plain logic shared by the bridge and the console.

`PreviewEncoder` turns camera frames into JPEG pairs at no more than `max_hz` (one encode per
frame, shared by every operator), stamped with the capture's wall-clock time: monotonic stamps
never leave the robot. `HealthTracker` keeps what the HUD shows: rates, drops, glass-to-motor
latency, recording state and free disk.
"""

from __future__ import annotations

import ipaddress
import shutil
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from rover import messages as m
from rover.errors import ConfigError

# the bridge's two ports: PORT carries what operators see (PUB), PORT+1 what they send (ROUTER)
COMMAND_PORT_OFFSET = 1
ROLE = b"rover/role"  # bridge -> operator: b"driver" | b"viewer" | b"refused"
HELLO = b"rover/hello"
RELEASE = b"rover/release"
REARM = b"rover/rearm"
PING = b"rover/ping"  # operator -> bridge -> operator: RTT on the operator's own clock
SESSION_TIMEOUT_S = 3.0  # a bridge session silent this long has left


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port whose next one is free too (a --listen link uses both), for tests and benches."""
    import socket

    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind((host, 0))
            port = a.getsockname()[1]
            try:
                b.bind((host, port + COMMAND_PORT_OFFSET))
            except OSError:
                continue
            return port
    raise OSError("no two free consecutive ports")


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` -> (host, port); one line naming the fix when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"address {text!r}: write HOST:PORT (e.g. 0.0.0.0:8765) or PORT")
    return host, int(port)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def require_foxglove_loopback(host: str) -> None:
    """The Foxglove protocol has no authentication: its server never leaves loopback."""
    if not is_loopback(host):
        raise ConfigError(
            f"--foxglove {host}: the Foxglove protocol has no authentication, so it stays on "
            "loopback; from a laptop use `ssh -L PORT:127.0.0.1:PORT ROBOT` (or the console)"
        )


def wall_ns(stamp_ns: int) -> int:
    """A CLOCK_MONOTONIC stamp of this machine as wall-clock nanoseconds since the epoch."""
    return stamp_ns + time.time_ns() - time.monotonic_ns()


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encode failed")
    return buf.tobytes()


def overlay_jpeg(cost: np.ndarray, quality: int = 70) -> bytes:
    """A traversability cost map (0 free .. 255 blocked) as a colour JPEG for the overlay."""
    lut = np.zeros((256, 1, 3), np.uint8)
    ramp = np.arange(256, dtype=np.float32) / 255.0
    lut[:, 0, 2] = (255 * ramp).astype(np.uint8)  # red where blocked (BGR)
    lut[:, 0, 1] = (255 * (1 - ramp)).astype(np.uint8)  # green where free
    colour = cv2.LUT(cv2.cvtColor(np.ascontiguousarray(cost, np.uint8), cv2.COLOR_GRAY2BGR), lut)
    return encode_jpeg(cv2.cvtColor(colour, cv2.COLOR_BGR2RGB), quality)


class PreviewEncoder:
    """Camera frames -> StereoPreview at no more than `max_hz`."""

    def __init__(self, max_hz: float = 15.0, quality: int = 70):
        self.period_ns = int(1e9 / max_hz) if max_hz > 0 else 0
        self.quality = quality
        self._last_ns = 0
        self.latest: m.StereoPreview | None = None

    def offer(self, frame: m.StereoImage, now_ns: int) -> m.StereoPreview | None:
        """A new preview when this frame is due, else None."""
        # 0.8 of a period: a 30 Hz camera under a 15 Hz cap gives every second frame, not every third
        if self._last_ns and now_ns - self._last_ns < 0.8 * self.period_ns:
            return None
        self._last_ns = now_ns
        left, right = (encode_jpeg(eye, self.quality) for eye in (frame.left, frame.right))
        h, w = frame.left.shape[:2]
        self.latest = m.StereoPreview(
            frame_seq=frame.seq,
            left_jpeg=np.frombuffer(left, np.uint8),
            right_jpeg=np.frombuffer(right, np.uint8),
            width=w,
            height=h,
            capture_wall_ns=wall_ns(frame.stamp_ns),
        )
        return self.latest


@dataclass
class _Rate:
    arrivals: deque

    def add(self, now_ns: int) -> None:
        self.arrivals.append(now_ns)
        while self.arrivals and now_ns - self.arrivals[0] > 2_000_000_000:
            self.arrivals.popleft()

    def hz(self, now_ns: int) -> float:
        recent = [t for t in self.arrivals if now_ns - t <= 2_000_000_000]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / ((recent[-1] - recent[0]) / 1e9 or 1.0)


class HealthTracker:
    """Rates, drops, glass-to-motor latency, recording and disk: the HUD's robot side."""

    def __init__(self, disk_path: str = ".", recording: bool = False):
        self.disk_path = disk_path
        self.recording = recording
        self.recording_paused = False  # the record key paused the recorder (recorder/status)
        self.rates = {k: _Rate(deque()) for k in ("camera", "steering", "trav", "control", "motor")}
        self.camera_drops = 0
        self._frame_stamps: dict[int, int] = {}
        self.glass_to_motor_ms = 0.0

    def on_frame(self, frame: m.StereoImage, skipped: int, now_ns: int) -> None:
        self.rates["camera"].add(now_ns)
        self.camera_drops = skipped
        self._frame_stamps[frame.seq] = frame.stamp_ns
        if len(self._frame_stamps) > 120:
            self._frame_stamps.pop(next(iter(self._frame_stamps)))

    def on_message(self, kind: str, msg: m.Message, now_ns: int) -> None:
        self.rates[kind].add(now_ns)
        if kind == "control" and msg.frame_seq in self._frame_stamps:
            # both stamps are this machine's CLOCK_MONOTONIC: valid on the robot only
            self.glass_to_motor_ms = (msg.stamp_ns - self._frame_stamps[msg.frame_seq]) / 1e6

    def snapshot(self, now_ns: int, operators: int, driver: str) -> m.StackHealth:
        try:
            free_mb = shutil.disk_usage(self.disk_path).free / 1e6
        except OSError:
            free_mb = 0.0
        hz = {k: round(r.hz(now_ns), 1) for k, r in self.rates.items()}
        return m.StackHealth(
            camera_hz=hz["camera"],
            steering_hz=hz["steering"],
            traversability_hz=hz["trav"],
            control_hz=hz["control"],
            motor_hz=hz["motor"],
            camera_drops=self.camera_drops,
            glass_to_motor_ms=round(self.glass_to_motor_ms, 2),
            recording=self.recording,
            recording_paused=self.recording_paused,
            free_disk_mb=round(free_mb, 1),
            operators=operators,
            driver=driver,
            wall_ns=time.time_ns(),
        )
