"""The two motor-controller implementations behind one small surface, for the contract suite."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import serial
from cobs import cobs

from drivers.avr_sim import AvrConfig, AvrMcu
from drivers.emulator import EmulatorConfig, MotorOutputs, PtyEmulator
from drivers.protocol import TYPE_DRIVE, FrameDecoder, MotorState, crc16

MS = 1_000_000


@dataclass
class Target:
    """An MCU on a pty: ``name`` is "emulator" or "avr"; ``impl`` the PtyEmulator or AvrMcu."""

    name: str
    impl: PtyEmulator | AvrMcu

    @property
    def device_path(self) -> str:
        return self.impl.device_path

    @property
    def outputs(self) -> MotorOutputs:
        return self.impl.outputs

    def wait_outputs(self, predicate, timeout_s: float = 5.0) -> MotorOutputs:
        return self.impl.wait_outputs(predicate, timeout_s)

    def last_drive_ns(self) -> int:
        """When the last DRIVE reached the MCU, on its own clock."""
        if isinstance(self.impl, AvrMcu):
            return max(e.t_ns for e in self.impl.events if e.kind == "RX" and e.value == 0)
        return self.impl.outputs.stamp_ns  # the emulator stamps outputs with each DRIVE

    def trip_ns(self) -> int:
        """When the watchdog tripped (after wait_outputs saw it), on the MCU's own clock."""
        if isinstance(self.impl, AvrMcu):
            return max(e.t_ns for e in self.impl.events if e.kind == "MEM" and e.value == 1)
        return self.impl.outputs.stamp_ns

    def stop(self) -> None:
        self.impl.stop()


def start_target(name: str, **avr: object) -> Target:
    if name == "avr":
        return Target(name, AvrMcu(AvrConfig(build=False, **avr)).start())  # type: ignore[arg-type]
    return Target(name, PtyEmulator(EmulatorConfig()).start())


def raw_drive(seq: int, steering: int, throttle: int, flags: int = 1, kind: int = TYPE_DRIVE):
    """A DRIVE frame with any field values (thousandths), even out of range or a foreign type."""
    payload = struct.pack("<BHhhB", kind, seq & 0xFFFF, steering, throttle, flags)
    return cobs.encode(payload + crc16(payload).to_bytes(2, "little")) + b"\x00"


def open_port(target: Target) -> serial.Serial:
    return serial.Serial(target.device_path, 1_000_000, timeout=0.05, write_timeout=0.5)


def read_states(port: serial.Serial, count: int, timeout_s: float = 5.0) -> list[MotorState]:
    """Read until ``count`` STATE replies came (or the deadline); returns what came."""
    decoder, states = FrameDecoder(), []
    deadline = time.monotonic() + timeout_s
    while len(states) < count and time.monotonic() < deadline:
        states += decoder.feed(port.read(port.in_waiting or 1))
    return states


def exchange(port: serial.Serial, data: bytes, timeout_s: float = 5.0) -> list[MotorState]:
    """Write ``data`` (ending in one valid DRIVE) and return the STATEs up to its answer."""
    port.write(data)
    return read_states(port, 1, timeout_s)
