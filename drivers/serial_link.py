"""Host side of the serial motor link: send DRIVE, read STATE, survive a USB unplug.

``SerialMotorLink`` never blocks the caller's 50 Hz loop for long: reads are non-blocking,
writes give up after ``write_timeout_ms``, and after the device disappears each ``send``/``poll``
retries the open at most every ``reconnect_period_ms`` (commands sent meanwhile are dropped and
counted; the firmware's watchdog zeroes the motors). Only the first open fails loudly, with a
DeviceError. Use one link from one thread.
"""

from __future__ import annotations

import errno
import os
import select
import statistics
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, runtime_checkable

import serial

from drivers.protocol import (
    TYPE_STATE,
    DecodeCounters,
    DriveCommand,
    FrameDecoder,
    MotorState,
    encode_drive,
)
from rover.config import dataclass_from_dict
from rover.errors import ConfigError, DeviceError

_MAX_PENDING = 256  # commands awaiting their STATE, for round-trip times


@dataclass(frozen=True)
class SerialConfig:
    """The [motor] table of robot.toml: which port, how fast, how to recover."""

    port: str = "/dev/ttyACM0"
    baud: int = 1_000_000  # USB CDC boards ignore it; UART bridges need the firmware's rate
    reconnect_period_ms: int = 100
    write_timeout_ms: int = 5
    rtt_window: int = 100  # round-trip times kept for the p50

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SerialConfig:
        """Build from the [motor] table; raises ConfigError naming a bad key."""
        config = dataclass_from_dict(cls, data, "motor")
        if not config.port:
            raise ConfigError("[motor] port is empty: set it to the controller's device path")
        for f in fields(cls):
            value = getattr(config, f.name)
            if isinstance(value, int) and value <= 0:
                raise ConfigError(f"[motor] {f.name} = {value}: expected a positive number")
        return config


@dataclass(frozen=True)
class LinkHealth:
    """A snapshot of the link: is it up, what went through, how fast it answers."""

    connected: bool
    reconnects: int
    tx_frames: int
    tx_dropped: int  # commands not sent: disconnected or the write timed out
    rx_frames: int
    bad_frames: int  # received frames rejected, all kinds (details in ``decoder``)
    decoder: DecodeCounters
    last_state_age_ms: float | None  # None until a STATE arrived
    rtt_p50_ms: float | None  # DRIVE written -> its STATE read, over the last rtt_window
    last_error: str | None


@runtime_checkable
class MotorLink(Protocol):
    """The motor controller as the control node sees it (real serial port or a sim twin)."""

    def send(self, cmd: DriveCommand) -> None:
        """Send one command now; never blocks for long, drops it while disconnected."""

    def poll(self, timeout_s: float = 0.0) -> list[MotorState]:
        """STATE replies received since the last poll, waiting up to timeout_s for one."""

    def health(self) -> LinkHealth:
        """A snapshot of the link's health."""

    def close(self) -> None:
        """Release the device; idempotent."""


def _open_error(port: str, exc: serial.SerialException) -> DeviceError:
    """The one-line explanation of a failed first open."""
    where = "set [motor] port in robot.toml (see ls /dev/serial/by-id)"
    if not os.path.exists(port):
        return DeviceError(
            f"serial port {port} does not exist: plug in the motor controller or {where}"
        )
    code = exc.errno
    if code == errno.EACCES:
        return DeviceError(
            f"no permission to open serial port {port}: add yourself to the dialout group "
            "(sudo usermod -aG dialout $USER) and log in again"
        )
    if code in (errno.EAGAIN, errno.EBUSY):
        return DeviceError(
            f"serial port {port} is in use by another program: stop it (see fuser {port})"
        )
    if "configure port" in str(exc):
        return DeviceError(f"{port} is not a serial port: {where}")
    return DeviceError(f"cannot open serial port {port} ({exc}): check the cable, or {where}")


class SerialMotorLink:
    """MotorLink over pyserial, with reconnect after unplug and round-trip timing."""

    def __init__(self, config: SerialConfig | None = None) -> None:
        self.config = config or SerialConfig()
        self.last_state: MotorState | None = None
        self._decoder = FrameDecoder(accept=(TYPE_STATE,))
        self._pending: OrderedDict[int, int] = OrderedDict()
        self._rtts_ns: deque[int] = deque(maxlen=self.config.rtt_window)
        self._period_ns = self.config.reconnect_period_ms * 1_000_000
        self._next_check_ns = 0
        self._tx_frames = self._tx_dropped = self._rx_frames = self._reconnects = 0
        self._last_state_ns: int | None = None
        self._last_error: str | None = None
        self._closed = False
        try:
            self._serial: serial.Serial | None = self._open()
        except serial.SerialException as exc:
            raise _open_error(self.config.port, exc) from exc
        # A lone delimiter first ends whatever half frame the MCU holds from before.
        self._prefix = b"\x00"

    def _open(self) -> serial.Serial:
        return serial.Serial(
            self.config.port,
            self.config.baud,
            timeout=0,
            write_timeout=self.config.write_timeout_ms / 1000,
            exclusive=True,
        )

    def send(self, cmd: DriveCommand) -> None:
        """Write one DRIVE frame; dropped and counted while the device is away."""
        self._check_open()
        now_ns = time.monotonic_ns()
        self._maintain(now_ns)
        if self._serial is None:
            self._tx_dropped += 1
            return
        try:
            if not self._write(self._prefix + encode_drive(cmd)):
                # Part of the frame may be out: the next one starts with a delimiter to resync.
                self._prefix = b"\x00"
                self._tx_dropped += 1
                return
        except (serial.SerialException, OSError) as exc:
            self._lost(exc, now_ns)
            self._tx_dropped += 1
            return
        self._prefix = b""
        self._tx_frames += 1
        key = cmd.seq & 0xFFFF
        self._pending[key] = now_ns
        self._pending.move_to_end(key)  # keeps the dict in send order even if a seq repeats
        if len(self._pending) > _MAX_PENDING:
            self._pending.popitem(last=False)

    def _write(self, data: bytes) -> bool:
        """Write all of ``data`` within ``write_timeout_ms``; False when the device stayed full.

        Not pyserial's timed ``write``: it checks its deadline after a complete write too, so a
        process descheduled past 5 ms (a loaded machine) had a frame that went out counted as
        dropped. pyserial opens the port non-blocking; we write its descriptor directly."""
        fd = self._serial.fileno()
        deadline = time.monotonic() + self.config.write_timeout_ms / 1000
        rest = memoryview(data)
        while rest:
            try:
                rest = rest[os.write(fd, rest) :]
                continue
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                return False
        return True

    def poll(self, timeout_s: float = 0.0) -> list[MotorState]:
        """STATE replies read since the last call; waits up to ``timeout_s`` for the first."""
        self._check_open()
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            now_ns = time.monotonic_ns()
            self._maintain(now_ns)
            states = self._read() if self._serial is not None else []
            remaining_s = (deadline_ns - time.monotonic_ns()) / 1e9
            if states or remaining_s <= 0:
                return states
            if self._serial is None:
                # Nothing to wait on while unplugged: rest until the next open attempt.
                time.sleep(min(remaining_s, max(0, self._next_check_ns - now_ns) / 1e9))
            else:
                select.select([self._serial.fileno()], [], [], remaining_s)

    def _read(self) -> list[MotorState]:
        assert self._serial is not None
        try:
            data = self._serial.read(4096)
        except (serial.SerialException, OSError) as exc:
            self._lost(exc, time.monotonic_ns())
            return []
        if not data:
            return []
        now_ns = time.monotonic_ns()
        states = [m for m in self._decoder.feed(data) if isinstance(m, MotorState)]
        for state in states:
            sent_ns = self._pending.pop(state.seq, None)
            if sent_ns is not None:
                self._rtts_ns.append(now_ns - sent_ns)
                # Replies come in order: anything still pending from before is never answered.
                while self._pending and self._pending[next(iter(self._pending))] <= sent_ns:
                    self._pending.popitem(last=False)
        if states:
            self._rx_frames += len(states)
            self._last_state_ns = now_ns
            self.last_state = states[-1]
        return states

    def health(self) -> LinkHealth:
        """A snapshot of counters, link state and round-trip p50."""
        now_ns = time.monotonic_ns()
        age = None if self._last_state_ns is None else (now_ns - self._last_state_ns) / 1e6
        rtt = statistics.median(self._rtts_ns) / 1e6 if self._rtts_ns else None
        return LinkHealth(
            connected=self._serial is not None,
            reconnects=self._reconnects,
            tx_frames=self._tx_frames,
            tx_dropped=self._tx_dropped,
            rx_frames=self._rx_frames,
            bad_frames=self._decoder.counters.bad_total,
            decoder=replace(self._decoder.counters),
            last_state_age_ms=age,
            rtt_p50_ms=rtt,
            last_error=self._last_error,
        )

    def close(self) -> None:
        """Close the port; later send/poll calls raise RuntimeError."""
        self._closed = True
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def __enter__(self) -> SerialMotorLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("SerialMotorLink is closed")

    def _lost(self, exc: BaseException, now_ns: int) -> None:
        """The device went away (unplug, reset): close and retry from the next period."""
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._serial is not None:
            self._serial.close()
            self._serial = None
        self._next_check_ns = now_ns + self._period_ns

    def _maintain(self, now_ns: int) -> None:
        """Once a period: notice a vanished device path, or retry the open."""
        if now_ns < self._next_check_ns:
            return
        self._next_check_ns = now_ns + self._period_ns
        if self._serial is not None:
            if not os.path.exists(self.config.port):
                self._lost(FileNotFoundError(f"{self.config.port} vanished"), now_ns)
            return
        try:
            self._serial = self._open()
        except (serial.SerialException, OSError) as exc:
            self._last_error = f"reconnect failed: {exc}"
            return
        self._reconnects += 1
        self._decoder.reset()
        self._pending.clear()
        self._prefix = b"\x00"
