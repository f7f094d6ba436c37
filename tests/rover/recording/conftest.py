"""Synthetic sessions for the recording tests: numbered frames written by the real Recorder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rover import messages as m
from rover.recording.recorder import Recorder, RecorderConfig


@dataclass(frozen=True)
class Synthetic:
    """Frames whose brightness encodes their number, on a 30 Hz clock from T0."""

    H: int = 48
    W: int = 64
    PERIOD_NS: int = 33_333_333
    T0: int = 1_000_000_000_000

    def image(self, i: int, eye: int = 0) -> np.ndarray:
        """A smooth picture whose brightness encodes the frame number (survives JPEG)."""
        img = np.zeros((self.H, self.W, 3), np.uint8)
        img[:, :, 0] = (i * 7) % 200 + 20
        img[:, :, 1] = 100 + 50 * eye
        img[:, :, 2] = np.linspace(0, 255, self.W, dtype=np.uint8)
        return img

    def frame(self, i: int, seq: int | None = None, stamp: int | None = None) -> m.StereoImage:
        """Stereo frame i (both eyes stamped alike), at T0 + i periods unless `stamp` says."""
        stamp = self.T0 + i * self.PERIOD_NS if stamp is None else stamp
        return m.StereoImage(
            seq=i if seq is None else seq,
            stamp_ns=stamp,
            left=self.image(i, 0),
            right=self.image(i, 1),
            left_stamp_ns=stamp,
            right_stamp_ns=stamp,
        )

    def control(self, seq: int, steering: float, frame_seq: int = m.NO_FRAME) -> m.ControlCommand:
        """A control command at half throttle, answering `frame_seq`."""
        return m.ControlCommand(
            seq=seq, stamp_ns=self.T0, frame_seq=frame_seq, steering=steering, throttle=0.5
        )

    def record(
        self, path: Path, items, config: RecorderConfig | None = None, robot: dict | None = None
    ) -> Recorder:
        """Write (topic, message) items through a real Recorder; returns it, closed."""
        rec = Recorder(path, config or RecorderConfig(fsync=False), robot or {}, "test")
        for topic, msg in items:
            rec.submit(topic, msg)
        rec.close()
        return rec


@pytest.fixture(scope="session")
def synthetic() -> Synthetic:
    """Numbered frames, commands and the Recorder that writes them (see `Synthetic`)."""
    return Synthetic()
