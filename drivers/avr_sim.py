"""The compiled firmware in an AVR simulator: the emulator's twin that runs the very bytes.

``AvrMcu`` builds drivers/firmware (``make firmware``) when stale, starts
``rover_avr_harness`` (simavr, an ATmega328P at 16 MHz, paced to the wall clock), points a
stable symlink at the pty it serves UART0 on, and reads its event stream: pin edges (the
servo/ESC pulses, the H-bridge's PWM and direction pins), UART bytes both ways and the
firmware's watchdog flag, all stamped with the simulated clock. It offers what
``PtyEmulator`` offers (``device_path``, ``outputs``, ``wait_outputs``, ``applied``) so the simulator and
the benches take either::

    with AvrMcu(AvrConfig(stage="esc_servo")) as mcu:
        port = mcu.device_path       # give it to SerialMotorLink
        mcu.wait_outputs(lambda o: o.seq == 7, timeout_s=1.0)
        mcu.pulses("D9")             # [(rise_ns, width_ns), ...] on the MCU's clock

Outputs come from the pins: steering and throttle are read back from the pulse widths (or
the H-bridge's duty and direction), and a STATE counts as applied once a whole pulse frame
that started after it has been seen, so lock-step waits until the wheels would move.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.emulator import MotorOutputs, point_link
from drivers.protocol import TYPE_STATE, FrameDecoder, MotorState
from rover.errors import ConfigError, DeviceError

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = REPO / "drivers" / "firmware"
BUILD_DIR = REPO / "build" / "firmware"
HARNESS = BUILD_DIR / "rover_avr_harness"
STAGES = ("esc_servo", "hbridge")
TOOLS = ("avr-gcc", "avr-nm", "make", "cc")
TRIPPED_OFFSET = 19  # offsetof(rover_mcu_t, tripped): the sketch static_asserts it
NEUTRAL_US = 1500
HALF_RANGE_US = 500
_EVENTS_KEPT = 200_000
BOOTED_NS = 5_000_000
_PWM_SETTLE_NS = 3_000_000
_PWM_HELD_NS = 3_000_000  # the H-bridge PWM (976 Hz) toggles every ~1 ms unless held at 0/255


def elf_path(stage: str) -> Path:
    """The built firmware for an output stage (esc_servo or hbridge)."""
    return BUILD_DIR / stage / "rover_mcu.elf"


def build_firmware() -> None:
    """``make firmware`` (both stages and the harness; make skips what is up to date)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing or not Path("/usr/include/simavr/sim_avr.h").exists():
        raise DeviceError(
            f"cannot build the firmware: missing {', '.join(missing) or 'libsimavr-dev'}; "
            "run `make sysdeps` (Debian, as root)"
        )
    result = subprocess.run(
        ["make", "-s", "-C", str(FIRMWARE_DIR), f"O={BUILD_DIR}", "firmware", "harness"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise DeviceError(f"`make firmware` failed: {' / '.join(tail)}")


def symbol_address(elf: Path, name: str) -> int:
    """An ELF symbol's address as avr-nm prints it (data symbols carry 0x800000)."""
    out = subprocess.run(["avr-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise DeviceError(f"{elf} has no symbol {name}: rebuild it with `make firmware`")


@dataclass(frozen=True)
class AvrConfig:
    """Which output stage to run; optionally stall loop() at a simulated time (watchdog test)."""

    stage: str = "esc_servo"
    build: bool = True  # run make first (a no-op when up to date)
    stall_at_ms: int | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage {self.stage!r}: use one of {', '.join(STAGES)}")


@dataclass(frozen=True)
class Event:
    """One line of the harness's stream: simulated ns, kind (PIN RX TX MEM STALL RESET), args."""

    t_ns: int
    kind: str
    name: str = ""
    value: int = 0


class AvrMcu:
    """rover_avr_harness running the compiled firmware, served on a stable device path."""

    def __init__(self, config: AvrConfig | None = None, link_path: str | None = None) -> None:
        self.config = config or AvrConfig()
        self._tmpdir = None if link_path else tempfile.mkdtemp(prefix="rover-avr-")
        self.device_path = link_path or os.path.join(self._tmpdir or "", "rover-mcu")
        self.pty_path: str | None = None
        self.events: deque[Event] = deque(maxlen=_EVENTS_KEPT)
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()
        self._pins: dict[str, int] = {}
        self._rise: dict[str, int] = {}
        self._pulses: dict[str, deque[tuple[int, int]]] = {}
        self._duty = 0.0  # H-bridge PWM duty, 0..1, from the last full period
        self._d5_changed_ns = 0
        self._states: deque[tuple[int, MotorState]] = deque(maxlen=64)
        self._decoder = FrameDecoder(accept=(TYPE_STATE,))
        self._tripped = True
        self._tripped_addr = 0
        self._outputs = MotorOutputs(0.0, 0.0, False, False, True, 0, time.monotonic_ns())
        self._history: deque[MotorOutputs] = deque(maxlen=4096)
        self._commits = 0
        self.sim_ns = 0
        self.resets = 0

    def __enter__(self) -> AvrMcu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- life cycle ----

    def start(self) -> AvrMcu:
        """Build if needed, start the harness, point the link at its pty; returns self."""
        if self.config.build:
            build_firmware()
        elf = elf_path(self.config.stage)
        if not elf.exists() or not HARNESS.exists():
            raise DeviceError(f"{elf} is not built: run `make firmware`")
        self._tripped_addr = symbol_address(elf, "_ZL3mcu") + TRIPPED_OFFSET
        cmd = [str(HARNESS), str(elf), "--watch", hex(self._tripped_addr)]
        if self.config.stall_at_ms is not None:
            cmd += ["--stall-at-ms", str(self.config.stall_at_ms)]
            cmd += ["--stall-pc", hex(symbol_address(elf, "loop"))]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, bufsize=1
        )
        try:
            self.pty_path = self._read_pty_line()
            point_link(self.device_path, self.pty_path)
        except BaseException:
            self.stop()
            raise
        self._reader = threading.Thread(target=self._read_events, name="avr-events", daemon=True)
        self._reader.start()
        # Bytes sent before setup() has run Serial.begin are lost, as on a board that boots:
        # hand the port out once the firmware listens (setup takes ~0.2 ms; give it 5).
        try:
            self.wait_sim_ns(BOOTED_NS, timeout_s=10.0)
        except TimeoutError:
            self.stop()
            raise DeviceError("the firmware in simavr did not start: see its stderr") from None
        return self

    def _read_pty_line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:  # simavr's loader prints a line or two first
            if line.startswith("PTY "):
                return line.split(maxsplit=1)[1].strip()
        raise DeviceError(f"rover_avr_harness exited ({self._proc.wait()}) without a pty")

    def stop(self) -> None:
        """Stop the harness and remove the link (idempotent)."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if os.path.islink(self.device_path):
            os.unlink(self.device_path)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        """Whether the harness process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ---- what the pins say ----

    @property
    def outputs(self) -> MotorOutputs:
        """The outputs as the motors see them (from the pins) and the last STATE applied."""
        with self._changed:
            return self._outputs

    def applied(self, seq: int) -> MotorOutputs | None:
        """The last outputs the DRIVE numbered ``seq`` set on the pins, even if later ones
        followed (as ``PtyEmulator.applied``); None when no longer in the history."""
        with self._changed:
            return next((o for o in reversed(self._history) if o.seq == seq), None)

    def wait_outputs(
        self, predicate: Callable[[MotorOutputs], bool], timeout_s: float = 2.0
    ) -> MotorOutputs:
        """Block until the outputs satisfy ``predicate``; TimeoutError after ``timeout_s``."""
        # The events arrive in bursts: look at every outputs value since the call, not only
        # the latest, or a short-lived one (a frame before a watchdog trip) could be missed.
        with self._changed:
            start = self._commits
            found: list[MotorOutputs] = []

            def matched() -> bool:
                new = list(self._history)[max(0, len(self._history) - (self._commits - start)) :]
                found[:] = [o for o in [self._outputs, *new] if predicate(o)][:1]
                return bool(found)

            if not self._changed.wait_for(matched, timeout_s):
                raise TimeoutError(f"firmware outputs never matched; last: {self._outputs}")
            return found[0]

    def wait_event(self, predicate: Callable[[Event], bool], timeout_s: float) -> Event:
        """Block until an event (already seen or new) satisfies ``predicate``."""
        with self._changed:
            found: list[Event] = []

            def seen() -> bool:
                found[:] = [e for e in self.events if predicate(e)][:1]
                return bool(found)

            if not self._changed.wait_for(seen, timeout_s):
                raise TimeoutError("the firmware never produced the awaited event")
            return found[0]

    def wait_sim_ns(self, t_ns: int, timeout_s: float) -> None:
        """Block until the simulated clock has passed ``t_ns``."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.sim_ns >= t_ns, timeout_s):
                raise TimeoutError(f"simulated time stuck at {self.sim_ns} ns")

    def states(self) -> list[tuple[int, MotorState]]:
        """The last STATE frames the firmware wrote: (simulated ns of their last byte, STATE)."""
        with self._changed:
            return list(self._states)

    def pulses(self, pin: str) -> list[tuple[int, int]]:
        """Complete pulses seen on ``pin`` (D9, D10, D5): (rise ns, width ns), oldest first."""
        with self._changed:
            return list(self._pulses.get(pin, ()))

    # ---- the event stream ----

    def _read_events(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            parts = line.split()
            if len(parts) < 2 or not parts[0].isdigit():
                continue
            t_ns, kind = int(parts[0]), parts[1]
            name = parts[2] if len(parts) > 2 else ""
            value = int(parts[3], 16 if kind == "MEM" else 10) if len(parts) > 3 else 0
            if kind in ("RX", "TX"):
                name, value = "", int(parts[2], 16)
            with self._changed:
                self._handle(Event(t_ns, kind, name, value))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _handle(self, event: Event) -> None:
        self.events.append(event)
        self.sim_ns = max(self.sim_ns, event.t_ns)
        if event.kind == "PIN":
            self._on_pin(event)
        elif event.kind == "TX":
            for state in self._decoder.feed(bytes([event.value])):
                self._states.append((event.t_ns, state))  # type: ignore[arg-type]
        elif event.kind == "MEM" and int(event.name, 16) == self._tripped_addr & 0xFFFF:
            self._tripped = bool(event.value)
            self._commit(event.t_ns)
        elif event.kind == "RESET":
            self.resets += 1
            self._rise.clear()
            self._decoder.reset()

    def _on_pin(self, event: Event) -> None:
        pin, level = event.name, event.value
        previous = self._pins.get(pin)
        self._pins[pin] = level
        if previous is None or previous == level:
            return
        if pin == "D5":
            self._d5_changed_ns = event.t_ns
        if level:
            if pin == "D5" and pin in self._rise:
                period = event.t_ns - self._rise[pin]
                high = self._pulses.get(pin, deque([(0, 0)]))[-1][1]
                self._duty = min(1.0, high / period) if period > 0 else 0.0
            self._rise[pin] = event.t_ns
            return
        if pin not in self._rise:
            return
        rise = self._rise[pin]
        self._pulses.setdefault(pin, deque(maxlen=20_000)).append((rise, event.t_ns - rise))
        if pin in ("D9", "D10") and all(self._pins.get(p) == 0 for p in self._servo_pins()):
            self._commit(rise)

    def _servo_pins(self) -> tuple[str, ...]:
        return ("D9", "D10") if self.config.stage == "esc_servo" else ("D9",)

    def _width_milli(self, pin: str) -> int:
        pulses = self._pulses.get(pin)
        if not pulses:
            return 0
        width_us = pulses[-1][1] / 1000
        return round((width_us - NEUTRAL_US) * 1000 / HALF_RANGE_US)

    def _throttle_milli(self) -> int:
        if self.config.stage == "esc_servo":
            return self._width_milli("D10")
        pins = self._pins
        duty = self._duty
        if self.sim_ns - self._d5_changed_ns > _PWM_HELD_NS:  # analogWrite 0/255: no edges
            duty = float(pins.get("D5", 0))
        if not (pins.get("D7") or pins.get("D8")):
            duty = 0.0
        sign = 1 if pins.get("D7") else (-1 if pins.get("D8") else 0)
        return sign * round(duty * 1000)

    def _commit(self, frame_rise_ns: int) -> None:
        """New outputs: the pins now, and the last STATE written before this frame began."""
        # The H-bridge's duty is measured over whole PWM periods: a STATE counts from the
        # frame that starts two periods (976 Hz) after it.
        settle_ns = _PWM_SETTLE_NS if self.config.stage == "hbridge" else 0
        applied = [s for t, s in self._states if t < frame_rise_ns - settle_ns]
        last = applied[-1] if applied else None
        outputs = MotorOutputs(
            max(-1.0, min(1.0, self._width_milli("D9") / 1000)),
            max(-1.0, min(1.0, self._throttle_milli() / 1000)),
            bool(last and last.armed),
            bool(last and last.estop),
            self._tripped,
            last.seq if last else 0,
            time.monotonic_ns(),
        )
        if _differs(outputs, self._outputs):
            self._outputs = outputs
            self._history.append(outputs)
            self._commits += 1


def _differs(a: MotorOutputs, b: MotorOutputs) -> bool:
    return (a.steering, a.throttle, a.armed, a.estop, a.watchdog_tripped, a.seq) != (
        b.steering,
        b.throttle,
        b.armed,
        b.estop,
        b.watchdog_tripped,
        b.seq,
    )
