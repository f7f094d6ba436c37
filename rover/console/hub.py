"""The console's view of the robot: latest preview, overlay and state, and the operator gate.

Plain logic on the node's event loop; it imports no bus. The remote node feeds it from the bus
and hands it a `publish` callback for the commands the gate lets through.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import time
from collections import deque
from collections.abc import Callable

from rover import messages as m
from rover.operators import OperatorGate, OperatorInput

FRAME_MAGIC = b"RVF1"


class ConsoleHub:
    """Shared by every console page (and the bridge): one gate, one preview stream."""

    def __init__(self, gate: OperatorGate, publish: Callable[[m.TeleopCommand], None]):
        self.gate = gate
        self.publish = publish
        self.preview: m.StereoPreview | None = None
        self.overlay: bytes = b""
        self.state: dict = {}
        self.health: m.StackHealth | None = None
        self.shown_latency_ms: deque[float] = deque(maxlen=2000)
        self._event = asyncio.Event()
        self._ids = itertools.count(1)

    def on_preview(self, preview: m.StereoPreview) -> None:
        self.preview = preview
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_frame(self, after_seq: int, timeout_s: float) -> m.StereoPreview | None:
        """The newest preview newer than `after_seq` (None when none came within the timeout)."""
        deadline = time.monotonic() + timeout_s
        while self.preview is None or self.preview.frame_seq <= after_seq:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except TimeoutError:
                return None
        return self.preview

    def frame_bytes(self, preview: m.StereoPreview) -> bytes:
        """One binary WebSocket message: magic, header length, JSON header, the JPEGs."""
        left, right = preview.left_jpeg.tobytes(), preview.right_jpeg.tobytes()
        header = json.dumps(
            {
                "seq": preview.frame_seq,
                "width": preview.width,
                "height": preview.height,
                "capture_wall_ms": preview.capture_wall_ns / 1e6,
                "sizes": [len(left), len(right), len(self.overlay)],
            }
        ).encode()
        return b"".join(
            (FRAME_MAGIC, struct.pack("<I", len(header)), header, left, right, self.overlay)
        )

    def join(self, prefix: str = "console") -> str:
        sid = f"{prefix}-{next(self._ids)}"
        self.gate.join(sid, sid)
        return sid

    def leave(self, sid: str) -> None:
        self.send_command(self.gate.leave(sid))

    def on_input(self, sid: str, raw: dict) -> None:
        kind = raw.get("type")
        if kind == "input":
            self.send_command(self.gate.command(sid, _input(raw), time.monotonic_ns()))
        elif kind == "estop":
            last = self.gate.sessions[sid].last if sid in self.gate.sessions else OperatorInput()
            self.send_command(self.gate.command(sid, OperatorInput(estop=True, record=last.record)))
        elif kind == "rearm":
            self.gate.rearm(sid)
        elif kind == "release":
            self.send_command(self.gate.release(sid))
        elif kind == "shown":
            self.shown_latency_ms.append(
                float(raw["shown_wall_ms"]) - float(raw["capture_wall_ms"])
            )

    def send_command(self, cmd: m.TeleopCommand | None) -> None:
        """Publish what the gate let through (None: nothing to publish)."""
        if cmd is not None:
            self.publish(cmd)

    def hud(self, sid: str) -> dict:
        """What the page's HUD shows, for this session."""
        health = self.health
        return {
            "type": "hud",
            "role": self.gate.role(sid),
            "driver": self.gate.driver_name(),
            "estop_latched": self.gate.estop_latched,
            **self.state,
            "health": {
                k: getattr(health, k)
                for k in (
                    "camera_hz",
                    "steering_hz",
                    "traversability_hz",
                    "control_hz",
                    "motor_hz",
                    "camera_drops",
                    "glass_to_motor_ms",
                    "recording",
                    "recording_paused",
                    "free_disk_mb",
                    "operators",
                )
            }
            if health
            else {},
        }


def _input(raw: dict) -> OperatorInput:
    def num(key: str) -> float:
        value = float(raw.get(key, 0.0))
        return max(-1.0, min(1.0, value)) if value == value else 0.0  # NaN -> 0

    return OperatorInput(
        steering=num("steering"),
        throttle=num("throttle"),
        deadman=bool(raw.get("deadman")),
        autopilot=bool(raw.get("autopilot")),
        estop=bool(raw.get("estop")),
        record=bool(raw.get("record")),
    )
