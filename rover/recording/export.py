"""`rover recordings export`: a span of a session as MP4 video and/or PNG frames.

Each output frame shows both eyes side by side above a strip with the command in force: a
steering bar (centre = straight, left/right of it = steering), the throttle, the frame index
and time, and TRIMMED on frames excluded from training.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from rover.errors import DataError, RoverError
from rover.recording.reader import Sample, Session, decode_jpeg
from rover.recording.tools import resolve

STRIP_PX = 36
_GREEN = (60, 200, 60)  # BGR
_RED = (40, 40, 230)
_WHITE = (255, 255, 255)


@dataclass
class ExportResult:
    """What export wrote."""

    frames: int
    mp4: Path | None
    png_dir: Path | None


def export(
    path: str | Path,
    mp4: str | Path | None = None,
    png_dir: str | Path | None = None,
    from_s: float = 0.0,
    to_s: float | None = None,
    overlay: bool = True,
) -> ExportResult:
    """Write frames [from_s, to_s) (seconds from the first frame) to `mp4` and/or `png_dir`."""
    if mp4 is None and png_dir is None:
        raise RoverError("export needs --mp4 FILE and/or --png DIR")
    session = Session(resolve(path)[0])
    frames = session.frames()
    if not frames:
        raise DataError(f"{session.path} has no frames to export")
    first = frames[0].stamp_ns
    end_s = session.duration_s if to_s is None else to_s
    if not 0 <= from_s < end_s:
        raise RoverError(f"--from {from_s} --to {end_s}: give 0 <= FROM < TO (seconds)")
    chosen = [f for f in frames if from_s <= round((f.stamp_ns - first) / 1e9, 3) < end_s]
    if not chosen:
        raise RoverError(f"no frames between {from_s} s and {end_s} s of {session.name}")
    trimmed = {f.index for f in chosen if f.trimmed}
    wanted = {f.index for f in chosen}
    fps = len(frames) / session.duration_s if session.duration_s else 30.0
    png = Path(png_dir) if png_dir is not None else None
    if png is not None:
        png.mkdir(parents=True, exist_ok=True)
    video = _Video(Path(mp4), fps) if mp4 is not None else None
    written = 0
    from tqdm import tqdm

    try:
        samples = session.samples(honour_trims=False, decode=False)  # decode only the span
        last = max(wanted)
        with tqdm(total=len(chosen), desc="exporting", unit="frame", disable=None) as bar:
            for jpeg in samples:
                if jpeg.index not in wanted:
                    if jpeg.index > last:
                        break
                    continue
                sample = replace(jpeg, left=decode_jpeg(jpeg.left), right=decode_jpeg(jpeg.right))
                image = compose(
                    sample, (sample.stamp_ns - first) / 1e9, sample.index in trimmed, overlay
                )
                if video is not None:
                    video.write(image)
                if png is not None:
                    cv2.imwrite(str(png / f"frame-{sample.index:06d}.png"), image)
                written += 1
                bar.update()
        if video is not None:
            video.close()
    finally:
        if video is not None:
            video.discard()
    return ExportResult(written, Path(mp4) if mp4 else None, png)


def compose(sample: Sample, time_s: float, trimmed: bool, overlay: bool = True) -> np.ndarray:
    """Both eyes side by side (BGR for OpenCV), with the steering strip under them."""
    pair = np.hstack([sample.left, sample.right])[:, :, ::-1]
    if not overlay:
        return np.ascontiguousarray(pair)
    h, w = pair.shape[:2]
    strip = np.zeros((STRIP_PX, w, 3), np.uint8)
    centre, half = w // 2, w // 2 - 4
    tip = int(round(centre + float(np.clip(sample.steering, -1, 1)) * half))
    cv2.rectangle(strip, (min(centre, tip), 4), (max(centre, tip), 14), _GREEN, -1)
    cv2.line(strip, (centre, 0), (centre, 18), _WHITE, 1)
    text = (
        f"steer {sample.steering:+.2f}  throttle {sample.throttle:+.2f}  "
        f"#{sample.index}  {time_s:7.2f} s"
    )
    cv2.putText(strip, text, (6, 31), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _WHITE, 1, cv2.LINE_AA)
    if trimmed:
        cv2.putText(strip, "TRIMMED", (w - 80, 31), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _RED, 1)
    return np.vstack([pair, strip])


class _Video:
    """An MP4 written to a temporary file and renamed into place when complete."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".mp4", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.fps = fps
        self.writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            h, w = image.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
            if not self.writer.isOpened():
                raise RoverError(f"OpenCV cannot write MP4 video to {self.path}: use --png DIR")
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
