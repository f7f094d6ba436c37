"""The serial wire protocol: fixed vectors, round trips, and garbage that must only be counted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cobs import cobs
from hypothesis import given
from hypothesis import strategies as st

from drivers.protocol import (
    MAX_ENCODED_LEN,
    TYPE_DRIVE,
    TYPE_STATE,
    VECTORS,
    DriveCommand,
    FrameDecoder,
    MotorState,
    crc16,
    encode_drive,
    encode_state,
)

FIRMWARE = Path(__file__).resolve().parents[2] / "drivers" / "firmware" / "rover_mcu"
README = FIRMWARE.parent / "README.md"

unit = st.floats(min_value=-1.0, max_value=1.0)
any_value = st.floats(allow_nan=False, min_value=-1e6, max_value=1e6)


def encode(message: DriveCommand | MotorState) -> bytes:
    return encode_drive(message) if isinstance(message, DriveCommand) else encode_state(message)


def raw_frame(payload: bytes, crc: int | None = None) -> bytes:
    """A wire frame around any payload, with its true CRC unless one is given."""
    crc = crc16(payload) if crc is None else crc
    return cobs.encode(payload + crc.to_bytes(2, "little")) + b"\x00"


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize(("message", "wire_hex"), VECTORS)
def test_fixed_vectors_encode_and_decode(message: DriveCommand | MotorState, wire_hex: str) -> None:
    wire = bytes.fromhex(wire_hex)
    assert encode(message) == wire
    assert FrameDecoder().feed(wire) == [message]


def test_fixed_vectors_are_documented_for_firmware_authors() -> None:
    import drivers.protocol

    readme = README.read_text()
    for _, wire_hex in VECTORS:
        assert wire_hex in readme
        assert wire_hex in drivers.protocol.__doc__


def test_stream_of_vectors_fed_byte_by_byte() -> None:
    stream = b"".join(bytes.fromhex(h) for _, h in VECTORS)
    decoder = FrameDecoder()
    got = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert got == [m for m, _ in VECTORS]
    assert decoder.counters.frames == len(VECTORS) and decoder.counters.bad_total == 0


@given(
    seq=st.integers(min_value=0, max_value=2**20),
    steering=any_value,
    throttle=any_value,
    arm=st.booleans(),
    estop=st.booleans(),
)
def test_drive_round_trip_clamps_and_wraps(
    seq: int, steering: float, throttle: float, arm: bool, estop: bool
) -> None:
    wire = encode_drive(DriveCommand(seq, steering, throttle, arm, estop))
    assert len(wire) == 12 and wire.count(0) == 1 and wire.endswith(b"\x00")
    [got] = FrameDecoder().feed(wire)
    assert got.seq == seq % 65536
    half_unit = 0.0005 + 1e-12  # 0.0625 -> 62 (round half to even): exactly half a unit off
    assert got.steering == pytest.approx(max(-1.0, min(1.0, steering)), abs=half_unit)
    assert got.throttle == pytest.approx(max(-1.0, min(1.0, throttle)), abs=half_unit)
    assert (got.arm, got.estop) == (arm, estop)


@given(
    st.builds(
        MotorState,
        seq=st.integers(0, 65535),
        armed=st.booleans(),
        watchdog_tripped=st.booleans(),
        estop=st.booleans(),
        steering=st.integers(-1000, 1000).map(lambda m: m / 1000),
        throttle=st.integers(-1000, 1000).map(lambda m: m / 1000),
        bad_frames=st.integers(0, 65535),
        uptime_ms=st.integers(0, 2**32 - 1),
    )
)
def test_state_round_trip_is_exact(state: MotorState) -> None:
    wire = encode_state(state)
    assert len(wire) == 18
    assert FrameDecoder().feed(wire) == [state]


def test_nan_is_refused_not_sent() -> None:
    with pytest.raises(ValueError, match="NaN"):
        encode_drive(DriveCommand(1, float("nan"), 0.0))


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_garbage_never_raises_and_every_frame_is_counted(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder()
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        decoder.feed(data[start:end])
    complete = [chunk for chunk in data.split(b"\x00")[:-1] if chunk]
    counters = decoder.counters
    assert counters.frames + counters.bad_total == len(complete)
    # A valid frame after any garbage is still decoded: the 0x00 resynchronises.
    good = DriveCommand(9, 0.1, 0.2, arm=True)
    assert decoder.feed(b"\x00" + encode_drive(good)) == [good]


@pytest.mark.parametrize("message", [m for m, _ in VECTORS])
def test_truncated_frames_are_counted_then_resynced(message: DriveCommand | MotorState) -> None:
    wire = encode(message)
    decoder = FrameDecoder()
    for cut in range(1, len(wire) - 1):
        assert decoder.feed(wire[:cut] + b"\x00") == []
    assert decoder.counters.bad_total == len(wire) - 2
    assert decoder.counters.frames == 0
    assert decoder.feed(wire) == [message]


def test_each_kind_of_bad_frame_has_its_counter() -> None:
    drive = encode_drive(DriveCommand(1, 0.5, -0.25, arm=True))
    payload = cobs.decode(drive[:-1])[:-2]
    decoder = FrameDecoder()
    decoder.feed(raw_frame(payload, crc=crc16(payload) ^ 0x0001))  # bad CRC
    decoder.feed(raw_frame(payload + b"\x07"))  # right CRC, DRIVE one byte too long
    decoder.feed(raw_frame(bytes([0x99]) + payload[1:]))  # right CRC, unknown type
    decoder.feed(b"\x05\x44\x00")  # COBS code points past the end of the frame
    decoder.feed(b"\x01" * (MAX_ENCODED_LEN + 5) + b"\x00")  # longer than the MCU's buffer
    decoder.feed(b"\x00\x00")  # empty frames are flushes, not errors
    c = decoder.counters
    assert (c.bad_crc, c.bad_length, c.unknown_type, c.bad_cobs) == (1, 2, 1, 1)
    assert c.frames == 0 and decoder.feed(drive) != []


def test_each_end_refuses_the_other_ends_messages() -> None:
    host = FrameDecoder(accept=(TYPE_STATE,))
    mcu = FrameDecoder(accept=(TYPE_DRIVE,))
    drive_wire, state_wire = bytes.fromhex(VECTORS[0][1]), bytes.fromhex(VECTORS[3][1])
    assert host.feed(drive_wire) == [] and host.counters.unknown_type == 1
    assert mcu.feed(state_wire) == [] and mcu.counters.unknown_type == 1


# ---- the firmware's own C protocol code, compiled on this machine ----

C_VECTORS = r"""
#include <stdio.h>
#include <string.h>
#include "rover_proto.h"
static void hex(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) printf(i ? " %02x" : "%02x", p[i]);
  printf("\n");
}
static void parse(const char *h) {
  uint8_t wire[64]; size_t n = 0, len = strlen(h); unsigned v; rover_rx_t rx = {0};
  rover_drive_t d;
  while (3 * n < len && sscanf(h + 3 * n, "%2x", &v) == 1) wire[n++] = (uint8_t)v;
  for (size_t i = 0; i < n; i++) {
    if (rover_rx_byte(&rx, wire[i], &d) == 1)
      printf("%u %d %d %u\n", d.seq, d.steering, d.throttle, d.flags);
  }
}
int main(int argc, char **argv) {
  uint8_t out[64];
  rover_drive_t d1 = {1, 500, -250, ROVER_FLAG_ARM}, d2 = {0, 0, 0, 0};
  rover_drive_t d3 = {65535, -1000, 1000, ROVER_FLAG_ESTOP};
  rover_state_t s1 = {1, ROVER_STATUS_ARMED, 500, -250, 0, 1234};
  rover_state_t s2 = {300, ROVER_STATUS_WATCHDOG | ROVER_STATUS_ESTOP, 0, 0, 3, 60000};
  hex(out, rover_encode_drive(&d1, out)); hex(out, rover_encode_drive(&d2, out));
  hex(out, rover_encode_drive(&d3, out)); hex(out, rover_encode_state(&s1, out));
  hex(out, rover_encode_state(&s2, out));
  printf("%04x\n", rover_crc16((const uint8_t *)"123456789", 9));
  for (int i = 1; i < argc; i++) parse(argv[i]);
  return 0;
}
"""

ARDUINO_STUB = """
#pragma once
#include <stdint.h>
#include <stddef.h>
#define HIGH 1
#define LOW 0
#define OUTPUT 1
unsigned long millis(void);
void pinMode(uint8_t, uint8_t);
void digitalWrite(uint8_t, uint8_t);
void analogWrite(uint8_t, int);
struct HardwareSerial {
  void begin(unsigned long);
  int available(void);
  int read(void);
  size_t write(const uint8_t *, size_t);
};
extern HardwareSerial Serial;
"""

SERVO_STUB = """
#pragma once
struct Servo { unsigned char attach(int, int, int); void writeMicroseconds(int); };
"""


def run_compiler(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")
def test_firmware_c_code_produces_and_accepts_the_vectors(tmp_path: Path) -> None:
    source = tmp_path / "vectors.c"
    source.write_text(C_VECTORS)
    exe = tmp_path / "vectors"
    run_compiler(
        ["cc", "-std=c99", "-Wall", "-Werror", f"-I{FIRMWARE}", str(source), "-o", str(exe)]
    )
    drives = [h for m, h in VECTORS if isinstance(m, DriveCommand)]
    lines = subprocess.run(
        [str(exe), *drives], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert lines[:5] == [h for _, h in VECTORS]
    assert lines[5] == "29b1"
    assert lines[6:] == ["1 500 -250 1", "0 0 0 0", "65535 -1000 1000 2"]


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler on this machine")
@pytest.mark.parametrize("output", ["ROVER_OUTPUT_ESC_SERVO", "ROVER_OUTPUT_HBRIDGE"])
def test_firmware_sketch_compiles_against_arduino_stubs(tmp_path: Path, output: str) -> None:
    (tmp_path / "Arduino.h").write_text(ARDUINO_STUB)
    (tmp_path / "Servo.h").write_text(SERVO_STUB)
    sketch = FIRMWARE / "rover_mcu.ino"
    run_compiler(
        ["g++", "-fsyntax-only", "-std=c++11", "-Wall", "-Wextra", "-Werror", f"-D{output}"]
        + [f"-I{tmp_path}", f"-I{FIRMWARE}", "-x", "c++", str(sketch)]
    )
