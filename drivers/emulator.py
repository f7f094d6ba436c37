"""The motor-controller firmware's twin: same protocol, same watchdog, same e-stop latch.

``FirmwareEmulator`` is the plain logic (drivers/firmware/rover_mcu/rover_logic.h in Python,
checked against it by tests). ``PtyEmulator`` serves it on a pseudo-terminal so the host's
pyserial code opens a real serial device. The simulator hosts one in-process::

    emu = PtyEmulator(EmulatorConfig(watchdog_ms=250)).start()
    port = emu.device_path          # stable symlink, give it to SerialMotorLink
    out = emu.outputs               # MotorOutputs: steering, throttle, armed, estop, ...
    out = emu.wait_outputs(lambda o: o.seq == 7, timeout_s=1.0)   # lock-step
    emu.unplug(); emu.replug()      # USB cable out and back in
    emu.stop()

Standalone: ``python -m drivers.emulator [--link PATH] [--watchdog-ms N] [--baud N]
[--drive-log PATH]``. ``--drive-log`` appends one line per accepted DRIVE (see ``DriveLog``):
its seq, when it arrived (CLOCK_MONOTONIC ns; with ``--baud``, when its last byte would have
come off the wire) and the outputs it set, so glass-to-motor latency ends where it happens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import select
import shutil
import signal
import tempfile
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.protocol import (
    DELIMITER,
    TYPE_DRIVE,
    DriveCommand,
    FrameDecoder,
    MotorState,
    encode_state,
)
from drivers.protocol import to_milli as _to_milli
from rover import priority
from rover.config import dataclass_from_dict
from rover.errors import ConfigError, RoverError

DRIVE_WIRE_LEN = 11  # a DRIVE's COBS bytes, delimiter excluded (ROVER_DRIVE_WIRE_LEN)


@dataclass(frozen=True)
class EmulatorConfig:
    """Watchdog timeout, and the baud rate whose wire time replies wait for (None: none)."""

    watchdog_ms: int = 250
    baud: int | None = None
    loss_prob: float = 0.0  # chance that a chunk of received bytes is garbled (line noise)
    loss_seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmulatorConfig:
        """Build from an [emulator] table; raises ConfigError naming a bad key."""
        config = dataclass_from_dict(cls, data, "emulator")
        for key in ("watchdog_ms", "baud"):
            value = getattr(config, key)
            if value is not None and value <= 0:
                raise ConfigError(f"[emulator] {key} = {value}: expected a positive number")
        if not 0 <= config.loss_prob < 1:
            raise ConfigError(f"[emulator] loss_prob = {config.loss_prob}: use [0, 1)")
        return config


@dataclass(frozen=True)
class MotorOutputs:
    """What the emulated MCU drives its motors with, and why."""

    steering: float
    throttle: float
    armed: bool
    estop: bool
    watchdog_tripped: bool
    seq: int  # the last DRIVE accepted
    stamp_ns: int  # monotonic time these outputs took effect (a DRIVE, a watchdog deadline)


class FirmwareEmulator:
    """The firmware's logic, clocked by the caller's ``now_ns`` (see rover_logic.h).

    Arming follows each DRIVE's arm flag; an e-stop latches until the arm flag rises again
    (a DRIVE without arm, then one with arm). No valid DRIVE for ``watchdog_ms`` zeroes the
    outputs until the next one; the next STATE reports that with its WATCHDOG bit.
    """

    def __init__(self, config: EmulatorConfig | None = None, now_ns: int | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.on_drive: Callable[[MotorOutputs], None] | None = None  # after each DRIVE
        self.decoder = FrameDecoder(accept=(TYPE_DRIVE,))
        self._boot_ns = time.monotonic_ns() if now_ns is None else now_ns
        self._watchdog_ns = self.config.watchdog_ms * 1_000_000
        self._armed = self._estop = self._prev_arm = False
        self._tripped = True  # no command yet: hold the motors at zero, report nothing
        self._trip_reported = True
        self._last_drive_ns = self._boot_ns
        self._seq = self._steering_milli = self._throttle_milli = 0
        self._stamp_ns = self._boot_ns
        self.last_drive: DriveCommand | None = None  # the last valid DRIVE, as received
        # The firmware's lost-delimiter recovery (rover_proto.h, rover_rx_tail): the frame's
        # last DRIVE-length bytes and its length, to parse the tail of a bad frame.
        self._tail = bytearray()
        self._frame_len = 0

    @property
    def bad_frames(self) -> int:
        """Frames rejected so far (what STATE reports, before the 16-bit wrap)."""
        return self.decoder.counters.bad_total

    @property
    def outputs(self) -> MotorOutputs:
        """The outputs as the motors see them now."""
        return MotorOutputs(
            self._steering_milli / 1000,
            self._throttle_milli / 1000,
            self._armed,
            self._estop,
            self._tripped,
            self._seq,
            self._stamp_ns,
        )

    def next_deadline_ns(self) -> int | None:
        """When ``tick`` next has something to do (the watchdog), or None."""
        return None if self._tripped else self._last_drive_ns + self._watchdog_ns

    def tick(self, now_ns: int) -> None:
        """Apply the watchdog at ``now_ns``."""
        if not self._tripped and now_ns - self._last_drive_ns >= self._watchdog_ns:
            self._tripped = True
            self._trip_reported = False
            self._steering_milli = self._throttle_milli = 0
            # The firmware checks every few microseconds, so on its clock it trips at the
            # deadline; this thread may wake later on a loaded host, but the trip is the same.
            self._stamp_ns = self._last_drive_ns + self._watchdog_ns

    def feed(self, data: bytes, now_ns: int) -> bytes:
        """Receive bytes at ``now_ns``; return the STATE replies they caused (may be b"")."""
        self.tick(now_ns)
        replies = []
        start = 0
        while start < len(data):
            # Frame by frame, so each STATE counts only the bad frames before it (as on the MCU).
            end = data.find(0, start)
            end = len(data) if end < 0 else end + 1
            segment = data[start:end]
            bad_before = self.bad_frames
            for cmd in self.decoder.feed(segment):
                replies.append(self._on_drive(cmd, now_ns))
            self._track_tail(segment)
            if segment.endswith(DELIMITER):
                cmd = self._tail_drive() if self.bad_frames > bad_before else None
                if cmd is not None:
                    replies.append(self._on_drive(cmd, now_ns))
                self._tail.clear()
                self._frame_len = 0
            start = end
        return b"".join(replies)

    def _track_tail(self, segment: bytes) -> None:
        body = segment.rstrip(DELIMITER)
        self._frame_len += len(body)
        self._tail = (self._tail + body)[-DRIVE_WIRE_LEN:]

    def _tail_drive(self) -> DriveCommand | None:
        """A bad frame longer than a DRIVE whose last bytes are one: its delimiter was lost."""
        if self._frame_len <= DRIVE_WIRE_LEN:
            return None
        found = FrameDecoder(accept=(TYPE_DRIVE,)).feed(bytes(self._tail) + DELIMITER)
        return found[0] if found else None  # type: ignore[return-value]

    def _on_drive(self, cmd: DriveCommand, now_ns: int) -> bytes:
        self.last_drive = cmd
        self._seq = cmd.seq
        self._last_drive_ns = now_ns
        self._tripped = False
        if cmd.estop:
            self._estop, self._armed = True, False
        elif cmd.arm:
            if not self._prev_arm:
                self._estop = False  # a rising arm flag is the explicit re-arm
            self._armed = not self._estop
        else:
            self._armed = False
        self._prev_arm = cmd.arm
        if self._armed:
            self._steering_milli = _to_milli(cmd.steering)
            self._throttle_milli = _to_milli(cmd.throttle)
        else:
            self._steering_milli = self._throttle_milli = 0
        self._stamp_ns = now_ns
        state = MotorState(
            self._seq,
            armed=self._armed,
            watchdog_tripped=not self._trip_reported,
            estop=self._estop,
            steering=self._steering_milli / 1000,
            throttle=self._throttle_milli / 1000,
            bad_frames=self.bad_frames,
            uptime_ms=(now_ns - self._boot_ns) // 1_000_000,
        )
        self._trip_reported = True
        if self.on_drive is not None:
            self.on_drive(self.outputs)
        return encode_state(state)


class WireModel:
    """Serial wire time at ``baud``, 10 bits a byte, each direction one byte at a time.

    Only replies wait for it; a command acts on the outputs when its bytes reach the pty.
    """

    def __init__(self, baud: int) -> None:
        self.byte_ns = 10 * 1_000_000_000 // baud
        self._rx_free_ns = 0
        self._tx_free_ns = 0

    def rx_done_ns(self, now_ns: int, n_in: int) -> int:
        """When the last of n_in bytes written to us at now_ns would have arrived (no update)."""
        return max(self._rx_free_ns, now_ns) + n_in * self.byte_ns

    def reply_due_ns(self, now_ns: int, n_in: int, n_out: int) -> int:
        """When a reply of n_out bytes to n_in bytes written to us at now_ns is fully sent."""
        rx_done = max(self._rx_free_ns, now_ns) + n_in * self.byte_ns
        self._rx_free_ns = rx_done
        if n_out:
            self._tx_free_ns = max(self._tx_free_ns, rx_done) + n_out * self.byte_ns
        return max(self._tx_free_ns, rx_done)


class PtyEmulator:
    """Serves a FirmwareEmulator on a pty's master side from a background thread.

    ``device_path`` is a stable symlink (like /dev/serial/by-id/...) to the current
    /dev/pts/N. ``unplug`` closes the pty and removes the link; ``replug`` opens a new pty
    and re-points the link. The watchdog keeps running while unplugged. Thread-safe.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        link_path: str | None = None,
        drive_log: DriveLog | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.drive_log = drive_log
        self._arrival_ns = 0
        self._tmpdir = None if link_path else tempfile.mkdtemp(prefix="rover-emu-")
        self.device_path = link_path or os.path.join(self._tmpdir or "", "rover-mcu")
        self.tx_dropped = 0  # replies lost because the host did not read its port
        self._emu = FirmwareEmulator(self.config)
        self._emu.on_drive = self._logged
        self._loss_rng = random.Random(self.config.loss_seed)
        self.garbled_chunks = 0  # chunks the injected line noise garbled (--serial-loss)
        self._wire = WireModel(self.config.baud) if self.config.baud else None
        # Re-entrant, so a KeyboardInterrupt landing mid-wait in the owner's thread cannot
        # release the lock while the serving thread holds it.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._outputs = self._emu.outputs
        self._recent: deque[MotorOutputs] = deque(maxlen=256)  # for `applied`
        self._outbox: deque[tuple[int, bytes]] = deque()
        self._master: int | None = None
        self._slave: int | None = None
        self.pty_path: str | None = None
        self._generation = 0
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._running = False
        self._error: BaseException | None = None

    def __enter__(self) -> PtyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def outputs(self) -> MotorOutputs:
        """The emulated MCU's outputs now."""
        with self._lock:
            return self._outputs

    @property
    def last_drive(self) -> DriveCommand | None:
        """The last valid DRIVE the emulated MCU received (None before the first)."""
        with self._lock:
            return self._emu.last_drive

    @property
    def plugged(self) -> bool:
        """Whether the device is present (between replug and unplug)."""
        with self._lock:
            return self._master is not None

    def wait_outputs(
        self, predicate: Callable[[MotorOutputs], bool], timeout_s: float
    ) -> MotorOutputs:
        """Block until the outputs satisfy ``predicate``; TimeoutError after ``timeout_s``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._outputs), timeout_s):
                raise TimeoutError(f"emulator outputs never matched; last: {self._outputs}")
            return self._outputs

    def start(self) -> PtyEmulator:
        """Plug in and start serving; returns self."""
        try:
            with self._lock:
                self._open_pty()
                self._running = True
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name="pty-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, unplug, remove the link (idempotent); re-raises a serving-thread crash."""
        if self._thread is None:
            return
        with self._lock:
            self._running = False
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._thread = None
        self._release()
        if self._error is not None:
            raise RuntimeError("the pty emulator thread crashed") from self._error

    def _release(self) -> None:
        with self._lock:
            self._close_pty()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def unplug(self) -> None:
        """Pull the cable: the host's port fails, the link vanishes, replies in flight are lost."""
        with self._lock:
            self._close_pty()
        os.write(self._wake_w, b"x")

    def replug(self, reboot: bool = False) -> None:
        """Plug back in on a new pty; ``reboot`` also restarts the firmware (USB-powered MCU)."""
        with self._lock:
            if self._master is not None:
                raise RuntimeError("replug() while plugged in: call unplug() first")
            if reboot:
                self._emu = FirmwareEmulator(self.config)
                self._emu.on_drive = self._logged
                self._set_outputs(self._emu.outputs)
            self._open_pty()
        os.write(self._wake_w, b"x")

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # Raw from the start: no echo or newline mangling before the host configures it. The
        # emulator keeps its own slave fd so the master never reads EIO between host opens.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.pty_path = os.ttyname(slave)
        self._generation += 1
        try:
            self._point_link()
        except ConfigError:
            self._close_pty()
            raise

    def _point_link(self) -> None:
        point_link(self.device_path, self.pty_path or "")

    def _close_pty(self) -> None:
        if self._master is None:
            return
        if os.path.islink(self.device_path):
            os.unlink(self.device_path)
        os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master = self._slave = None
        self.pty_path = None
        self._outbox.clear()
        self._generation += 1  # the serving thread may hold the old fd number from select

    def _set_outputs(self, outputs: MotorOutputs) -> None:
        if outputs != self._outputs:
            self._outputs = outputs
            self._recent.append(outputs)
            self._changed.notify_all()

    def applied(self, seq: int) -> MotorOutputs | None:
        """The outputs the DRIVE numbered ``seq`` set, even if later ones followed (lock-step:
        the frame's answer, not a stop that came while the simulator was stalled); None when
        it is not among the last few hundred."""
        with self._lock:
            return next((o for o in reversed(self._recent) if o.seq == seq), None)

    def _timeout_s(self, now_ns: int) -> float:
        due = [self._emu.next_deadline_ns()]
        if self._outbox:
            due.append(self._outbox[0][0])
        nearest = min((d for d in due if d is not None), default=now_ns + 500_000_000)
        return max(0.0, min(nearest - now_ns, 500_000_000) / 1e9)

    def _run(self) -> None:
        try:
            while self._serve_once():
                pass
        except BaseException as exc:  # kept for stop() to re-raise in the owner's thread
            self._error = exc
            raise

    def _serve_once(self) -> bool:
        with self._lock:
            if not self._running:
                return False
            master, generation = self._master, self._generation
            timeout_s = self._timeout_s(time.monotonic_ns())
        watched = [self._wake_r] if master is None else [self._wake_r, master]
        try:
            ready, _, _ = select.select(watched, [], [], timeout_s)
        except OSError:
            with self._lock:
                if generation == self._generation:
                    raise
            return True  # unplugged while we waited: its fd was closed under the select
        if self._wake_r in ready:
            os.read(self._wake_r, 4096)
        with self._lock:
            now_ns = time.monotonic_ns()
            if master is not None and master in ready and generation == self._generation:
                self._receive(master, now_ns)
            self._emu.tick(now_ns)
            self._set_outputs(self._emu.outputs)
            self._send_due(now_ns)
        return True

    def _receive(self, master: int, now_ns: int) -> None:
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            return
        if self.config.loss_prob and self._loss_rng.random() < self.config.loss_prob:
            data = _garble(data, self._loss_rng)
            self.garbled_chunks += 1
        self._arrival_ns = self._wire.rx_done_ns(now_ns, len(data)) if self._wire else now_ns
        reply = self._emu.feed(data, now_ns)
        due_ns = self._wire.reply_due_ns(now_ns, len(data), len(reply)) if self._wire else now_ns
        if reply:
            self._outbox.append((due_ns, reply))

    def _logged(self, outputs: MotorOutputs) -> None:
        if self.drive_log is not None:
            self.drive_log.write(outputs, self._arrival_ns)

    def _send_due(self, now_ns: int) -> None:
        while self._outbox and self._outbox[0][0] <= now_ns and self._master is not None:
            due_ns, data = self._outbox.popleft()
            try:
                sent = os.write(self._master, data)
            except BlockingIOError:
                self.tx_dropped += 1
                continue
            if sent < len(data):
                self._outbox.appendleft((due_ns, data[sent:]))
                return


class DriveLog:
    """Appends ``seq arrival_ns steering_milli throttle_milli armed estop`` per DRIVE to a file.

    One unbuffered append per line, so a reader (a bench, a test) sees each DRIVE as it lands;
    the file is emptied when it passes ``max_bytes`` (a reader seeing it shrink starts over).
    """

    def __init__(self, path: str, max_bytes: int = 8_000_000) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size

    def write(self, outputs: MotorOutputs, arrival_ns: int) -> None:
        """Log one accepted DRIVE and the outputs it set."""
        line = (
            f"{outputs.seq} {arrival_ns} {round(outputs.steering * 1000)} "
            f"{round(outputs.throttle * 1000)} {int(outputs.armed)} {int(outputs.estop)}\n"
        ).encode()
        if self._size + len(line) > self.max_bytes:
            os.ftruncate(self._fd, 0)
            self._size = 0
        self._size += os.write(self._fd, line)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def point_link(link: str, target: str) -> None:
    """Point ``link`` at ``target`` atomically, like udev's by-id links; ConfigError if
    ``link`` is a real file or its folder is missing."""
    if os.path.lexists(link) and not os.path.islink(link):
        raise ConfigError(f"{link} exists and is not a symlink: pick another --link")
    tmp_link = f"{link}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp_link)
    try:
        os.symlink(target, tmp_link)
    except FileNotFoundError:
        raise ConfigError(f"cannot create {link}: no such folder") from None
    os.replace(tmp_link, link)


def _garble(data: bytes, rng: random.Random) -> bytes:
    """Flip one non-delimiter byte: the frame it falls in then fails its CRC (and is counted)."""
    positions = [i for i, b in enumerate(data) if b]
    if not positions:
        return data
    i = rng.choice(positions)
    flipped = data[i] ^ (1 << rng.randrange(8)) or 0xFF
    return data[:i] + bytes([flipped]) + data[i + 1 :]


def main(argv: list[str] | None = None) -> None:
    """Run the emulator standalone on a pty and print its device path."""
    parser = argparse.ArgumentParser(prog="python -m drivers.emulator", description=__doc__)
    parser.add_argument("--link", help="stable device path to create (default: a temp dir)")
    parser.add_argument("--watchdog-ms", type=int, default=EmulatorConfig.watchdog_ms)
    parser.add_argument("--baud", type=int, help="model wire time at this baud rate")
    parser.add_argument("--drive-log", help="append each DRIVE's seq, arrival and outputs here")
    args = parser.parse_args(argv)
    # `rover rig` asks for the robot path's class: the stand-in for a microcontroller with its
    # own CPU should not wait for a core behind the stack it serves (rover.priority)
    priority.take()
    # A flag, not KeyboardInterrupt: an exception raised inside a lock wait can corrupt the lock.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        config = EmulatorConfig.from_dict({"watchdog_ms": args.watchdog_ms, "baud": args.baud})
        drive_log = DriveLog(args.drive_log) if args.drive_log else None
        emu = PtyEmulator(config, link_path=args.link, drive_log=drive_log).start()
    except (RoverError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    try:
        print(f"{emu.device_path} -> {emu.pty_path}", flush=True)
        last = emu.outputs
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                last = emu.wait_outputs(lambda o, seen=last: _mode(o) != _mode(seen), 0.1)
                print(f"armed={last.armed} estop={last.estop} watchdog={last.watchdog_tripped}")
    finally:
        emu.stop()


def _mode(outputs: MotorOutputs) -> tuple[bool, bool, bool]:
    return outputs.armed, outputs.estop, outputs.watchdog_tripped


if __name__ == "__main__":
    main()
