"""Wire protocol between the host and the motor controller (MCU) firmware.

Framing (both directions)::

    wire frame = COBS(payload || CRC16(payload)) || 0x00

- CRC16 is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor; check
  value 0x29B1 for b"123456789"), computed over the payload and appended little-endian.
- COBS (Consistent Overhead Byte Stuffing) removes every 0x00 from the frame, so 0x00 marks the
  end of a frame and a receiver resynchronises at the next 0x00 after any garbage.
- All multi-byte fields are little-endian. Empty frames (0x00 0x00) are ignored, so a sender
  may emit a lone 0x00 to flush a receiver's partial frame.

DRIVE, host -> MCU, payload 8 bytes (12 on the wire)::

    u8 type = 0x44 ('D') | u16 seq (wraps) | i16 steering | i16 throttle | u8 flags

steering/throttle are thousandths in [-1000, 1000] (the encoder clamps [-1, 1] floats);
flags bit0 ARM, bit1 ESTOP, other bits reserved (send 0, ignored).

STATE, MCU -> host, one reply to every valid DRIVE, payload 14 bytes (18 on the wire)::

    u8 type = 0x53 ('S') | u16 seq | u8 status | i16 steering | i16 throttle
    | u16 bad_frames | u32 uptime_ms

seq echoes the last DRIVE accepted; steering/throttle are what the MCU applies (thousandths);
status bit0 ARMED, bit1 WATCHDOG (the watchdog zeroed the motors since the previous STATE),
bit2 ESTOP (latched); bad_frames counts every frame the MCU rejected (wraps at 65536);
uptime_ms is the MCU clock (a drop means it rebooted).

A DRIVE plus its STATE is 30 bytes: 2.6 ms of wire time at 115200 baud, 0.3 ms at 1 Mbaud.

Fixed vectors: the firmware produces/accepts exactly these bytes (``VECTORS`` below holds the
same list; tests assert the encoder, the decoder and the firmware's C code against it)::

    DRIVE seq=1 steering=0.5 throttle=-0.25 arm
        (payload 44 01 00 f4 01 06 ff 01, CRC 0x1178 -> 78 11, then COBS and 0x00)
        03 44 01 08 f4 01 06 ff 01 78 11 00
    DRIVE seq=0 steering=0 throttle=0 (no flags)
        02 44 01 01 01 01 01 01 03 83 c8 00
    DRIVE seq=65535 steering=-1 throttle=1 estop
        0b 44 ff ff 18 fc e8 03 02 c4 93 00
    STATE seq=1 armed steering=0.5 throttle=-0.25 bad_frames=0 uptime_ms=1234
        03 53 01 06 01 f4 01 06 ff 01 03 d2 04 01 03 19 95 00
    STATE seq=300 watchdog estop steering=0 throttle=0 bad_frames=3 uptime_ms=60000
        05 53 2c 01 06 01 01 01 02 03 03 60 ea 01 03 5d e8 00
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cobs import cobs
from crc import Calculator, Configuration

DELIMITER = b"\x00"
# The MCU's receive buffer: a longer frame is dropped and counted as bad length.
MAX_ENCODED_LEN = 32

TYPE_DRIVE = 0x44
TYPE_STATE = 0x53

FLAG_ARM = 0x01
FLAG_ESTOP = 0x02

STATUS_ARMED = 0x01
STATUS_WATCHDOG = 0x02
STATUS_ESTOP = 0x04

_DRIVE = struct.Struct("<BHhhB")
_STATE = struct.Struct("<BHBhhHI")
_CRC = struct.Struct("<H")
_PAYLOAD_LEN = {TYPE_DRIVE: _DRIVE.size, TYPE_STATE: _STATE.size}

_CRC16 = Calculator(
    Configuration(
        width=16,
        polynomial=0x1021,
        init_value=0xFFFF,
        final_xor_value=0x0000,
        reverse_input=False,
        reverse_output=False,
    ),
    optimized=True,
)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (0x29B1 for b"123456789")."""
    return _CRC16.checksum(data)


def to_milli(value: float) -> int:
    """A normalised value as int thousandths, clamped to [-1000, 1000]; NaN is a bug."""
    if math.isnan(value):
        raise ValueError("steering/throttle is NaN: refusing to command the motors with it")
    return round(min(1.0, max(-1.0, value)) * 1000)


def _from_milli(milli: int) -> float:
    return max(-1000, min(1000, milli)) / 1000


@dataclass(frozen=True)
class DriveCommand:
    """Host -> MCU command: steering and throttle in [-1, 1], arm and e-stop flags."""

    seq: int
    steering: float
    throttle: float
    arm: bool = False
    estop: bool = False


@dataclass(frozen=True)
class MotorState:
    """MCU -> host reply: what the MCU applies and why (status bits, telemetry)."""

    seq: int
    armed: bool
    watchdog_tripped: bool
    estop: bool
    steering: float
    throttle: float
    bad_frames: int = 0
    uptime_ms: int = 0


Message = DriveCommand | MotorState


def _frame(payload: bytes) -> bytes:
    return cobs.encode(payload + _CRC.pack(crc16(payload))) + DELIMITER


def encode_drive(cmd: DriveCommand) -> bytes:
    """The complete wire frame (delimiter included) for a DRIVE command."""
    flags = (FLAG_ARM if cmd.arm else 0) | (FLAG_ESTOP if cmd.estop else 0)
    payload = _DRIVE.pack(
        TYPE_DRIVE, cmd.seq & 0xFFFF, to_milli(cmd.steering), to_milli(cmd.throttle), flags
    )
    return _frame(payload)


def encode_state(state: MotorState) -> bytes:
    """The complete wire frame (delimiter included) for a STATE reply."""
    status = (
        (STATUS_ARMED if state.armed else 0)
        | (STATUS_WATCHDOG if state.watchdog_tripped else 0)
        | (STATUS_ESTOP if state.estop else 0)
    )
    payload = _STATE.pack(
        TYPE_STATE,
        state.seq & 0xFFFF,
        status,
        to_milli(state.steering),
        to_milli(state.throttle),
        state.bad_frames & 0xFFFF,
        state.uptime_ms & 0xFFFFFFFF,
    )
    return _frame(payload)


def _parse(payload: bytes) -> Message:
    if payload[0] == TYPE_DRIVE:
        _, seq, steering, throttle, flags = _DRIVE.unpack(payload)
        return DriveCommand(
            seq,
            _from_milli(steering),
            _from_milli(throttle),
            arm=bool(flags & FLAG_ARM),
            estop=bool(flags & FLAG_ESTOP),
        )
    _, seq, status, steering, throttle, bad, uptime = _STATE.unpack(payload)
    return MotorState(
        seq,
        armed=bool(status & STATUS_ARMED),
        watchdog_tripped=bool(status & STATUS_WATCHDOG),
        estop=bool(status & STATUS_ESTOP),
        steering=_from_milli(steering),
        throttle=_from_milli(throttle),
        bad_frames=bad,
        uptime_ms=uptime,
    )


@dataclass
class DecodeCounters:
    """Frames a FrameDecoder accepted, and each kind it rejected (public, read freely)."""

    frames: int = 0
    bad_cobs: int = 0
    bad_crc: int = 0
    bad_length: int = 0
    unknown_type: int = 0

    @property
    def bad_total(self) -> int:
        """Every rejected frame, all kinds together."""
        return self.bad_cobs + self.bad_crc + self.bad_length + self.unknown_type


class FrameDecoder:
    """Streaming decoder: feed it any bytes, get the valid messages; garbage is counted.

    Resynchronises on each 0x00; never raises on input. ``accept`` lists the message types
    this end understands (a frame of any other type counts as unknown_type), and a frame
    longer than ``max_encoded_len`` counts once as bad_length, like the firmware's buffer.
    """

    def __init__(
        self,
        accept: Iterable[int] = (TYPE_DRIVE, TYPE_STATE),
        max_encoded_len: int = MAX_ENCODED_LEN,
    ) -> None:
        self.counters = DecodeCounters()
        self._accept = frozenset(accept)
        self._max = max_encoded_len
        self._buf = bytearray()
        self._overflow = False

    def reset(self) -> None:
        """Drop a partial frame (after a reconnect its start is gone for good)."""
        self._buf.clear()
        self._overflow = False

    def feed(self, data: bytes) -> list[Message]:
        """Consume ``data``; return the messages completed by it, in order."""
        out: list[Message] = []
        start = 0
        while True:
            end = data.find(0, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                self._buf += chunk
                if len(self._buf) > self._max:
                    self._overflow = True
                    self._buf.clear()
            if end < 0:
                return out
            if self._overflow:
                self.counters.bad_length += 1
            elif self._buf:
                self._handle(bytes(self._buf), out)
            self.reset()
            start = end + 1

    def _handle(self, encoded: bytes, out: list[Message]) -> None:
        counters = self.counters
        try:
            frame = cobs.decode(encoded)
        except cobs.DecodeError:
            counters.bad_cobs += 1
            return
        if len(frame) < 3:
            counters.bad_length += 1
            return
        payload = frame[:-2]
        if crc16(payload) != _CRC.unpack_from(frame, len(payload))[0]:
            counters.bad_crc += 1
            return
        kind = payload[0]
        if kind not in self._accept or kind not in _PAYLOAD_LEN:
            counters.unknown_type += 1
            return
        if len(payload) != _PAYLOAD_LEN[kind]:
            counters.bad_length += 1
            return
        counters.frames += 1
        out.append(_parse(payload))


VECTORS: tuple[tuple[Message, str], ...] = (
    (DriveCommand(1, 0.5, -0.25, arm=True), "03 44 01 08 f4 01 06 ff 01 78 11 00"),
    (DriveCommand(0, 0.0, 0.0), "02 44 01 01 01 01 01 01 03 83 c8 00"),
    (DriveCommand(65535, -1.0, 1.0, estop=True), "0b 44 ff ff 18 fc e8 03 02 c4 93 00"),
    (
        MotorState(1, True, False, False, 0.5, -0.25, bad_frames=0, uptime_ms=1234),
        "03 53 01 06 01 f4 01 06 ff 01 03 d2 04 01 03 19 95 00",
    ),
    (
        MotorState(300, False, True, True, 0.0, 0.0, bad_frames=3, uptime_ms=60000),
        "05 53 2c 01 06 01 01 01 02 03 03 60 ea 01 03 5d e8 00",
    ),
)
"""Fixed (message, wire bytes as hex) pairs shared with the firmware README and tests."""
