"""Stereo camera driver: two OpenCV captures (or one side-by-side) behind a small Protocol.

A source is a device index, a ``/dev/video*`` path, a video file, an image-sequence pattern
(``dir/left_%04d.png``), a folder of numbered images, a stream URL or a named pipe. Devices,
streams and pipes are live: when they stop delivering frames that is a DeviceError. Files end
with EndOfStream, or replay forever with ``loop``.
"""

from __future__ import annotations

import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from drivers.calibration import Rectifier, StereoCalibration
from rover.errors import ConfigError, DeviceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z]+)$")
_PRINTF_INT = re.compile(r"%(0?)(\d*)d")


# a video file's decoder in this thread: a frame is a fraction of a millisecond of work, and
# FFmpeg's own threads would wait for a core the perception nodes hold (0.20 -> 0.17 ms a
# raw frame here, and no hand-off between threads on the glass-to-motor path)
_FILE_PARAMS = [cv2.CAP_PROP_N_THREADS, 1]


class EndOfStream(Exception):
    """A file source (video, image sequence) has no more frames; not an error."""


@dataclass(frozen=True)
class StereoFrame:
    """One stereo pair: RGB uint8 HxWx3 images, each stamped right after its grab."""

    left: np.ndarray
    right: np.ndarray
    left_stamp_ns: int
    right_stamp_ns: int
    index: int


@runtime_checkable
class StereoCamera(Protocol):
    """What every stereo camera (OpenCV, simulator) offers the camera node."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of each eye's image in pixels."""
        ...

    @property
    def nominal_fps(self) -> float:
        """Frames per second the source is expected to deliver."""
        ...

    def read(self) -> StereoFrame:
        """Next pair; DeviceError when the device is gone, EndOfStream after a file's end."""
        ...

    def close(self) -> None:
        """Release the devices or files; safe to call twice."""
        ...


@dataclass(frozen=True)
class CameraConfig:
    """The [camera] section of robot.toml: sources, per-eye size, rate, calibration."""

    left: int | str = 0
    # Two UVC cameras appear as /dev/video0 and /dev/video2: each also has a metadata node.
    right: int | str | None = 2
    side_by_side: bool = False
    width: int = 320
    height: int = 240
    fps: float = 30.0
    calibration: str | None = None
    loop: bool = False

    def __post_init__(self) -> None:
        for key in ("width", "height"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"[camera] {key} = {value!r}: expected a positive pixel count")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int | float) or self.fps <= 0:
            raise ConfigError(f"[camera] fps = {self.fps!r}: expected a positive number")
        if not self.side_by_side and self.right is None:
            raise ConfigError(
                "[camera] right is not set: name the right camera's source, "
                "or set side_by_side = true for one combined source"
            )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CameraConfig:
        """Build from the [camera] table; ConfigError names the bad key."""
        from rover.config import dataclass_from_dict

        raw = dict(raw)
        if raw.get("side_by_side") and raw.get("right") is not None:
            raise ConfigError(
                "[camera] right is set but side_by_side = true reads both eyes "
                "from left: remove right, or set side_by_side = false"
            )
        if raw.get("side_by_side"):
            raw["right"] = None
        elif "right" not in raw and isinstance(raw.get("left"), str) and Path(raw["left"]).is_dir():
            raw["right"] = raw["left"]  # a folder holds both eyes: left_*.png and right_*.png
        return dataclass_from_dict(cls, raw, "camera")


@dataclass(frozen=True)
class _Source:
    """What cv2.VideoCapture opens for one config key, and how errors name it."""

    key: str  # the config key it came from: "left" or "right"
    target: int | str
    api: int
    live: bool  # a device, stream or pipe: running out of frames means it failed
    label: str
    frames: int | None = None  # known length of an image sequence

    def fix(self) -> str:
        """The one-line hint an error about this source ends with."""
        if isinstance(self.target, int) or str(self.target).startswith("/dev/"):
            return (
                f"check the cable, `v4l2-ctl --list-devices`, or set [camera] {self.key} "
                "in robot.toml"
            )
        return f"check the path, or set [camera] {self.key} in robot.toml"


class OpenCVStereoCamera:
    """Stereo pairs from two cv2.VideoCapture sources, or one side-by-side source split in half."""

    def __init__(self, config: CameraConfig):
        self.config = config
        self._size = (config.width, config.height)
        keys = ("left",) if config.side_by_side else ("left", "right")
        eyes = "side-by-side" if config.side_by_side else None
        self._sources = [_resolve(key, getattr(config, key), eyes or key) for key in keys]
        self._check_lengths()
        # Loaded before the devices open, so a bad file fails fast without touching hardware.
        self.calibration: StereoCalibration | None = None
        self._rectifier: Rectifier | None = None
        if config.calibration is not None:
            self.calibration = StereoCalibration.load(config.calibration)
            self._rectifier = Rectifier(self.calibration, self._size)
        self._caps: list[cv2.VideoCapture] = []
        try:
            for source in self._sources:
                self._caps.append(self._open(source))
        except BaseException:
            self.close()
            raise
        self._fps = self._measure_fps()
        self._index = 0
        self._frames_this_pass = 0
        self._ended = False
        self._closed = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of each eye's image in pixels."""
        return self._size

    @property
    def nominal_fps(self) -> float:
        """The rate a device negotiated, else the configured fps (file sources are not paced)."""
        return self._fps

    def read(self) -> StereoFrame:
        """Grab both eyes, then decode both, so the eyes are as close in time as possible."""
        if self._closed:
            raise ValueError("read() on a closed camera")
        if self._ended:
            raise EndOfStream(f"end of {self._sources[0].label} after {self._index} frames")
        stamps = self._grab_all()
        if stamps is None and self.config.loop and self._frames_this_pass > 0:
            for cap in self._caps:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._frames_this_pass = 0
            stamps = self._grab_all()
        if stamps is None:
            self._ended = True
            raise EndOfStream(f"end of {self._sources[0].label} after {self._index} frames")
        images = [
            self._retrieve(cap, source)
            for cap, source in zip(self._caps, self._sources, strict=True)
        ]
        if self.config.side_by_side:
            whole = images[0]
            half = whole.shape[1] // 2
            images = [whole[:, :half], whole[:, half : 2 * half]]
            stamps = [stamps[0], stamps[0]]
        left, right = (_to_rgb(image, self._size) for image in images)
        frame = StereoFrame(left, right, stamps[0], stamps[-1], self._index)
        self._index += 1
        self._frames_this_pass += 1
        if self._rectifier is not None:
            frame = self._rectifier.rectify(frame)
        return frame

    def close(self) -> None:
        """Release every capture; safe to call twice."""
        for cap in self._caps:
            cap.release()
        self._caps = []
        self._closed = True

    def __enter__(self) -> OpenCVStereoCamera:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _grab_all(self) -> list[int] | None:
        """Grab every source, stamping each; None at the end of a file source."""
        stamps = []
        for cap, source in zip(self._caps, self._sources, strict=True):
            if not cap.grab():
                if source.live:
                    raise DeviceError(
                        f"camera '{source.key}' {source.label} stopped delivering frames after "
                        f"{self._index} frames: {source.fix()} (two cameras on one USB hub may "
                        "need a smaller size or fps)"
                    )
                return None
            stamps.append(time.monotonic_ns())
        return stamps

    def _retrieve(self, cap: cv2.VideoCapture, source: _Source) -> np.ndarray:
        ok, image = cap.retrieve()
        if not ok or image is None or image.size == 0:
            raise DeviceError(
                f"camera '{source.key}' {source.label}: frame {self._index} could not be "
                f"decoded: {source.fix()}"
            )
        return image

    def _open(self, source: _Source) -> cv2.VideoCapture:
        params = [] if source.live or source.api == cv2.CAP_IMAGES else _FILE_PARAMS
        cap = cv2.VideoCapture(source.target, source.api, params)
        if not cap.isOpened():
            cap.release()
            raise DeviceError(
                f"camera '{source.key}' {source.label} could not be opened: {source.fix()}"
            )
        if isinstance(source.target, int) or str(source.target).startswith("/dev/"):
            width = self._size[0] * (2 if self.config.side_by_side else 1)
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
            cap.set(cv2.CAP_PROP_FPS, self.config.fps)
            # A queue of stale frames in the driver would add latency to every frame.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _measure_fps(self) -> float:
        device_fps = [
            cap.get(cv2.CAP_PROP_FPS)
            for cap, source in zip(self._caps, self._sources, strict=True)
            if isinstance(source.target, int) or str(source.target).startswith("/dev/")
        ]
        if device_fps and min(device_fps) > 0:
            return float(min(device_fps))
        return float(self.config.fps)

    def _check_lengths(self) -> None:
        lengths = [source.frames for source in self._sources]
        if len(lengths) == 2 and None not in lengths and lengths[0] != lengths[1]:
            raise DeviceError(
                f"camera sources differ in length: left {self._sources[0].label} has "
                f"{lengths[0]} images, right {self._sources[1].label} has {lengths[1]}: "
                "every left image needs its right image"
            )


def open_camera(config: CameraConfig) -> StereoCamera:
    """Open the stereo camera the config describes (the simulator brings its own)."""
    return OpenCVStereoCamera(config)


def _to_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to `size` (w, h) then convert OpenCV's BGR (or gray/BGRA) to contiguous RGB."""
    height, width = image.shape[:2]
    if (width, height) != size:
        shrinking = width > size[0] or height > size[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interpolation)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _resolve(key: str, spec: int | str, eye: str) -> _Source:
    """Turn a config value into what OpenCV opens; `eye` picks left_/right_ files in a folder."""
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if isinstance(spec, int):
        return _Source(key, spec, cv2.CAP_ANY, True, f"device {spec}")
    if "://" in spec:
        return _Source(key, spec, cv2.CAP_FFMPEG, True, f"stream {spec}")
    if spec.startswith("/dev/"):
        if not Path(spec).exists():
            raise DeviceError(
                f"camera '{key}' {spec} does not exist: check the cable, "
                f"`v4l2-ctl --list-devices`, or set [camera] {key} in robot.toml"
            )
        return _Source(key, spec, cv2.CAP_V4L2, True, spec)
    if "%" in spec:
        return _sequence_source(key, _pattern_files(key, spec), spec)
    path = Path(spec)
    if path.is_dir():
        return _sequence_source(key, _folder_files(key, path, eye), str(path))
    if not path.exists():
        raise DeviceError(
            f"camera '{key}' file {spec} does not exist: check the path, or set "
            f"[camera] {key} in robot.toml"
        )
    if stat.S_ISFIFO(path.stat().st_mode):
        return _Source(key, spec, cv2.CAP_FFMPEG, True, f"pipe {spec}")
    return _Source(key, spec, cv2.CAP_ANY, False, f"file {spec}")


def _folder_files(key: str, folder: Path, eye: str) -> list[Path]:
    """Images of one eye in a folder: left_*/right_* files, or every image when side by side."""
    prefix = "" if eye == "side-by-side" else f"{eye}_"
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and p.name.startswith(prefix)
    )
    if not files:
        wanted = "*.png" if not prefix else f"{prefix}*.png"
        raise DeviceError(
            f"camera '{key}' folder {folder} has no {wanted} images: point "
            f"[camera] {key} at a folder of numbered images such as {prefix}0000.png"
        )
    return files


def _pattern_files(key: str, pattern: str) -> list[Path]:
    """Files matching a printf-style pattern such as dir/left_%04d.png."""
    path = Path(pattern)
    specs = _PRINTF_INT.findall(path.name)
    if len(specs) != 1 or "%" in str(path.parent):
        raise DeviceError(
            f"camera '{key}' pattern {pattern} needs exactly one %d or %0Nd in "
            f"its file name: fix [camera] {key} in robot.toml"
        )
    spec = _PRINTF_INT.search(path.name)
    head, tail = path.name[: spec.start()], path.name[spec.end() :]
    number = rf"\d{{{spec.group(2) or 1},}}"
    regex = re.compile(re.escape(head) + number + re.escape(tail) + "$")
    folder = path.parent
    files = sorted(p for p in folder.iterdir() if regex.match(p.name)) if folder.is_dir() else []
    if not files:
        raise DeviceError(
            f"camera '{key}' pattern {pattern} matches no file: check the path, "
            f"or set [camera] {key} in robot.toml"
        )
    return files


def _sequence_source(key: str, files: list[Path], shown: str) -> _Source:
    """Check a numbered image sequence is whole, and pick how OpenCV opens it."""
    pattern, numbers = _sequence_pattern(key, files, shown)
    folder = files[0].parent
    # OpenCV's image reader finds a pattern's first frame only at 0 or 1; given the first file
    # instead it starts anywhere, but takes the first number in the name as the frame number.
    if numbers[0] <= 1:
        target = str(folder / pattern)
    elif not re.search(r"\d", pattern.split("%")[0]):
        target = str(folder / (pattern % numbers[0]))
    else:
        raise DeviceError(
            f"camera '{key}' {shown}: numbering starts at {numbers[0]} and the name "
            "holds another number: renumber the images from 0"
        )
    label = f"images {folder / pattern}"
    return _Source(key, target, cv2.CAP_IMAGES, False, label, frames=len(files))


def _sequence_pattern(key: str, files: list[Path], shown: str) -> tuple[str, list[int]]:
    """The printf pattern naming every file (like left_%04d.png), and their sorted numbers."""
    parts = [_NUMBERED.match(p.name) for p in files]
    if not all(parts) or len({(m.group(1), m.group(3)) for m in parts}) != 1:
        names = ", ".join(p.name for p in files[:3])
        raise DeviceError(
            f"camera '{key}' {shown}: images must share one name with one frame "
            f"number, like left_0000.png (found {names}): rename them"
        )
    prefix, suffix = parts[0].group(1), parts[0].group(3)
    numbers = sorted(int(m.group(2)) for m in parts)
    width = min(len(m.group(2)) for m in parts)
    for pattern in (f"{prefix}%0{width}d{suffix}", f"{prefix}%d{suffix}"):
        if all(pattern % int(m.group(2)) == p.name for m, p in zip(parts, files, strict=True)):
            break
    else:
        raise DeviceError(
            f"camera '{key}' {shown}: numbers are padded differently (e.g. {files[0].name}, "
            f"{files[-1].name}): rename them with one width, like left_0000.png"
        )
    gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if gaps:
        raise DeviceError(
            f"camera '{key}' {shown}: image number {gaps[0]} is missing (OpenCV "
            "stops at a gap): renumber the images without gaps"
        )
    return pattern, numbers
