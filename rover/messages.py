"""Typed bus messages and their one encode/decode path.

Every message is a frozen dataclass with the common header (`seq`, `stamp_ns`, `frame_seq`).
On the wire a message is a ZeroMQ multipart: ``[topic, meta, *buffers]`` where ``meta`` is a
struct of the scalar fields plus the dtype/shape of each array, and each array (a camera image)
travels as its own frame, zero-copy. Strings travel as UTF-8 frames. Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar

import numpy as np

WIRE_VERSION = 1
NO_FRAME = -1  # frame_seq of a message that answers no camera frame

_SCALAR_CODES = {int: "q", float: "d", bool: "?"}
_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64, np.int32)
_PREFIX = struct.Struct("<BHB")  # wire version, type id, number of buffer parts


class DecodeError(ValueError):
    """A multipart that is not a valid message of the expected type."""


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of all bus messages: the header every message carries."""

    TYPE_ID: ClassVar[int] = 0
    seq: int = 0
    stamp_ns: int = 0
    frame_seq: int = NO_FRAME


@dataclass(frozen=True, kw_only=True)
class StereoImage(Message):
    """A stereo pair: RGB uint8 HxWx3 per eye, with each eye's grab time."""

    TYPE_ID: ClassVar[int] = 1
    left: np.ndarray = field(repr=False)
    right: np.ndarray = field(repr=False)
    left_stamp_ns: int = 0
    right_stamp_ns: int = 0


@dataclass(frozen=True, kw_only=True)
class TeleopCommand(Message):
    """What the human asks for: steering/throttle in [-1, 1], mode and buttons."""

    TYPE_ID: ClassVar[int] = 2
    steering: float = 0.0
    throttle: float = 0.0
    autopilot: bool = False
    estop: bool = False
    deadman: bool = False
    # the operator paused the recording (Tab / Start): the recorder writes nothing while set
    record_paused: bool = False
    # the input that can stop the robot now ("keyboard window", "gamepad NAME", "script F"),
    # empty when none: the control node will not arm on the robot without one
    operator: str = ""


@dataclass(frozen=True, kw_only=True)
class SteeringEstimate(Message):
    """A policy's answer to one camera frame (the CNN, or the simulator's expert)."""

    TYPE_ID: ClassVar[int] = 3
    steering: float = 0.0
    throttle: float = 0.0
    source: str = ""
    latency_ms: float = 0.0  # processing time of this frame: received -> this answer sent


@dataclass(frozen=True, kw_only=True)
class ControlCommand(Message):
    """The arbitrated command the control node sent to the motors, and which DRIVE carried it.

    ``perturbation``: the part of ``steering`` the control node added ([perturb], DART); the
    driver's own command is ``steering - perturbation`` (0 in recordings made before it)."""

    TYPE_ID: ClassVar[int] = 4
    steering: float = 0.0
    throttle: float = 0.0
    drive_seq: int = 0
    source: str = ""
    stale: bool = False
    estop: bool = False
    perturbation: float = 0.0


@dataclass(frozen=True, kw_only=True)
class MotorState(Message):
    """The motor controller's STATE reply, plus the host link's health."""

    TYPE_ID: ClassVar[int] = 5
    steering: float = 0.0
    throttle: float = 0.0
    armed: bool = False
    estop: bool = False
    watchdog_tripped: bool = False
    connected: bool = False
    drive_seq_echo: int = 0
    rtt_ms: float = 0.0
    reconnects: int = 0
    bad_frames: int = 0


@dataclass(frozen=True, kw_only=True)
class SimTruth(Message):
    """Simulator ground truth for one frame: pose, speed, run counters (sim/ and eval only)."""

    TYPE_ID: ClassVar[int] = 6
    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0
    speed_mps: float = 0.0
    sim_time_s: float = 0.0
    collisions: int = 0
    distance_m: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TraversabilityMap(Message):
    """One camera frame's traversability: cost map, free distance per arc, plane, timing."""

    TYPE_ID: ClassVar[int] = 7
    cost: np.ndarray = field(repr=False)  # (h, w) uint8, left camera image space
    arcs: np.ndarray = field(repr=False)  # (2, K) float32: steering of each arc; free metres
    plane_height_m: float = 0.0  # camera height over the fitted ground plane
    plane_fitted: bool = False  # False: the calibrated plane stood in this frame
    online_updates: int = 0  # online head updates so far (0: off or no model)
    latency_ms: float = 0.0  # processing time of this frame
    model: str = ""  # the segmenter's file hash, empty when stereo only


@dataclass(frozen=True, kw_only=True)
class HealthEvent(Message):
    """A node's fault happening (``active``) or recovering, with its one line for the user.

    Published when it changes and repeated once a second (a late subscriber learns the state):
    ``event`` numbers a node's changes, so a repeat is recognised; ``count`` is how often this
    fault has happened in this node so far.
    """

    TYPE_ID: ClassVar[int] = 8
    node: str = ""
    fault: str = ""  # motor_link, camera_stall, camera_eof, operator, ...
    active: bool = False
    count: int = 0
    event: int = 0
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class StereoPreview(Message):
    """A stereo pair as JPEG for a remote operator (1-D uint8 arrays), with the capture time on
    the wall clock: the only stamp that means anything on another machine."""

    TYPE_ID: ClassVar[int] = 9
    left_jpeg: np.ndarray = field(repr=False)
    right_jpeg: np.ndarray = field(repr=False)
    width: int = 0
    height: int = 0
    capture_wall_ns: int = 0


@dataclass(frozen=True, kw_only=True)
class StackHealth(Message):
    """What a remote operator's HUD shows of the stack: rates, drops, latency, recording."""

    TYPE_ID: ClassVar[int] = 10
    camera_hz: float = 0.0
    steering_hz: float = 0.0
    traversability_hz: float = 0.0
    control_hz: float = 0.0
    motor_hz: float = 0.0
    camera_drops: int = 0
    glass_to_motor_ms: float = 0.0
    recording: bool = False
    recording_paused: bool = False  # the record key paused it (recorder/status)
    free_disk_mb: float = 0.0
    operators: int = 0
    driver: str = ""  # who holds the controls ("" when nobody)
    wall_ns: int = 0  # the robot's wall clock when this was sent


@dataclass(frozen=True, kw_only=True)
class RecorderStatus(Message):
    """What the recorder is doing, for the operator's HUD: writing, or paused by the record key."""

    TYPE_ID: ClassVar[int] = 11
    paused: bool = False
    frames_written: int = 0
    paused_s: float = 0.0  # paused time so far, in this run of the recorder
    session: str = ""  # the session folder's name


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE_ID: cls
    for cls in (
        StereoImage,
        TeleopCommand,
        SteeringEstimate,
        ControlCommand,
        MotorState,
        SimTruth,
        TraversabilityMap,
        HealthEvent,
        StereoPreview,
        StackHealth,
        RecorderStatus,
    )
}


@dataclass(frozen=True)
class _Layout:
    scalars: tuple[str, ...]
    arrays: tuple[str, ...]
    strings: tuple[str, ...]
    meta: struct.Struct


@cache
def _layout(cls: type[Message]) -> _Layout:
    hints = typing.get_type_hints(cls)
    scalars, arrays, strings, codes = [], [], [], ["<"]
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if kind is np.ndarray:
            arrays.append(f.name)
        elif kind is str:
            strings.append(f.name)
        else:
            scalars.append(f.name)
            codes.append(_SCALAR_CODES[kind])
    # per array: dtype index, then height, width, channels
    codes.append("B3I" * len(arrays))
    return _Layout(tuple(scalars), tuple(arrays), tuple(strings), struct.Struct("".join(codes)))


def encode(topic: bytes, msg: Message) -> list:
    """Turn a message into multipart frames; arrays are passed by reference (zero-copy)."""
    lay = _layout(type(msg))
    values: list = [getattr(msg, name) for name in lay.scalars]
    buffers: list = []
    for name in lay.arrays:
        arr = np.ascontiguousarray(getattr(msg, name))
        shape = tuple(arr.shape) + (1,) * (3 - arr.ndim)
        values += [_DTYPES.index(arr.dtype.type), *shape]
        buffers.append(arr)
    buffers += [getattr(msg, name).encode() for name in lay.strings]
    prefix = _PREFIX.pack(WIRE_VERSION, msg.TYPE_ID, len(buffers))
    return [topic, prefix + lay.meta.pack(*values), *buffers]


def decode(parts: list, expected: type[Message]) -> Message:
    """Turn multipart frames back into a message of type `expected`, or raise DecodeError."""
    try:
        return _decode(parts, expected)
    except DecodeError:
        raise
    except (struct.error, ValueError, IndexError, TypeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed {expected.__name__}: {exc}") from exc


def _decode(parts: list, expected: type[Message]) -> Message:
    if len(parts) < 2:
        raise DecodeError("too few parts")
    meta = _bytes(parts[1])
    version, type_id, n_buffers = _PREFIX.unpack_from(meta)
    if version != WIRE_VERSION or type_id != expected.TYPE_ID:
        raise DecodeError(f"wire version {version} type {type_id}, expected {expected.TYPE_ID}")
    lay = _layout(expected)
    if n_buffers != len(lay.arrays) + len(lay.strings) or len(parts) != 2 + n_buffers:
        raise DecodeError("wrong number of buffer parts")
    values = lay.meta.unpack(meta[_PREFIX.size :])
    n = len(lay.scalars)
    kwargs = dict(zip(lay.scalars, values[:n], strict=True))
    for i, name in enumerate(lay.arrays):
        dtype_idx, h, w, c = values[n + 4 * i : n + 4 * i + 4]
        buf = parts[2 + i]
        buf = buf.buffer if hasattr(buf, "buffer") else buf
        arr = np.frombuffer(buf, dtype=_DTYPES[dtype_idx])
        kwargs[name] = arr.reshape((h, w, c) if c > 1 else (h, w))
    for i, name in enumerate(lay.strings):
        kwargs[name] = _bytes(parts[2 + len(lay.arrays) + i]).decode()
    return expected(**kwargs)


def _bytes(part) -> bytes:
    return part.bytes if hasattr(part, "bytes") else bytes(part)
