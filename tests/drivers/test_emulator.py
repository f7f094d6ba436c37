"""The firmware emulator: its logic (against the C firmware), and served on a real pty."""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.emulator import EmulatorConfig, FirmwareEmulator, PtyEmulator, WireModel
from drivers.protocol import (
    TYPE_DRIVE,
    DriveCommand,
    FrameDecoder,
    MotorState,
    crc16,
    encode_drive,
)
from rover.errors import ConfigError

FIRMWARE = Path(__file__).resolve().parents[2] / "drivers" / "firmware" / "rover_mcu"
REPO = FIRMWARE.parents[2]
MS = 1_000_000


def drive(seq: int, steering: float = 0.0, throttle: float = 0.0, **flags: bool) -> bytes:
    return encode_drive(DriveCommand(seq, steering, throttle, **flags))


def replies(data: bytes) -> list[MotorState]:
    return FrameDecoder().feed(data)  # type: ignore[return-value]


# ---- the logic, clocked explicitly ----


def test_drive_applies_outputs_and_replies_with_echoed_seq() -> None:
    emu = FirmwareEmulator(now_ns=0)
    [state] = replies(emu.feed(drive(41, 0.5, -0.25, arm=True), 10 * MS))
    assert (state.seq, state.armed, state.steering, state.throttle) == (41, True, 0.5, -0.25)
    assert state.uptime_ms == 10 and not state.watchdog_tripped
    out = emu.outputs
    assert (out.steering, out.throttle, out.armed, out.seq) == (0.5, -0.25, True, 41)


def test_disarmed_commands_are_answered_but_not_applied() -> None:
    emu = FirmwareEmulator(now_ns=0)
    [state] = replies(emu.feed(drive(1, 0.7, 0.7), 0))
    assert (state.armed, state.throttle, emu.outputs.throttle) == (False, 0.0, 0.0)


@pytest.mark.parametrize("watchdog_ms", [250, 100])
def test_watchdog_zeroes_motors_exactly_after_timeout(watchdog_ms: int) -> None:
    emu = FirmwareEmulator(EmulatorConfig(watchdog_ms=watchdog_ms), now_ns=0)
    emu.feed(drive(1, 0.3, 0.6, arm=True), 1000 * MS)
    assert emu.next_deadline_ns() == (1000 + watchdog_ms) * MS
    emu.tick((1000 + watchdog_ms) * MS - 1)
    assert emu.outputs.throttle == 0.6 and not emu.outputs.watchdog_tripped
    emu.tick((1000 + watchdog_ms) * MS)
    out = emu.outputs
    assert (out.steering, out.throttle, out.watchdog_tripped) == (0.0, 0.0, True)
    assert out.armed  # a gap in commands is not a disarm: the next command resumes
    [state] = replies(emu.feed(drive(2, 0.3, 0.6, arm=True), 2000 * MS))
    assert state.watchdog_tripped and state.throttle == 0.6
    [state] = replies(emu.feed(drive(3, 0.3, 0.6, arm=True), 2010 * MS))
    assert not state.watchdog_tripped  # reported once


def test_estop_latches_until_arm_rises_again() -> None:
    emu = FirmwareEmulator(now_ns=0)
    emu.feed(drive(1, 0.5, 0.5, arm=True), 0)
    [state] = replies(emu.feed(drive(2, 0.5, 0.5, arm=True, estop=True), 10 * MS))
    assert (state.estop, state.armed, state.throttle) == (True, False, 0.0)
    for seq in range(3, 6):  # a host that keeps asking to arm cannot undo it
        [state] = replies(emu.feed(drive(seq, 0.5, 0.5, arm=True), seq * 10 * MS))
        assert (state.estop, state.armed, emu.outputs.throttle) == (True, False, 0.0)
    [state] = replies(emu.feed(drive(6, 0.5, 0.5), 60 * MS))
    assert (state.estop, state.armed) == (True, False)
    [state] = replies(emu.feed(drive(7, 0.5, 0.5, arm=True), 70 * MS))
    assert (state.estop, state.armed, emu.outputs.throttle) == (False, True, 0.5)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=60), max_size=10))
def test_garbage_never_crashes_and_only_valid_drives_get_replies(chunks: list[bytes]) -> None:
    emu = FirmwareEmulator(now_ns=0)
    now = 0
    for chunk in chunks:
        now += 5 * MS
        stream = chunk + b"\x00" + drive(now // MS, 0.1, 0.1, arm=True)
        [state] = replies(emu.feed(stream, now))  # garbage costs nothing but a count
        assert state.seq == (now // MS) % 65536
        assert state.bad_frames == emu.bad_frames
    assert emu.bad_frames == sum(1 for c in chunks for part in c.split(b"\x00") if part)


def test_wire_model_delays_replies_by_ten_bits_a_byte() -> None:
    wire = WireModel(115200)
    assert wire.byte_ns == 86805
    due = wire.reply_due_ns(0, n_in=12, n_out=18)
    assert due == 30 * 86805  # 2.6 ms: the DESIGN.md figure for 115200 baud
    # A second command written at once queues behind the first on both wires.
    assert wire.reply_due_ns(0, n_in=12, n_out=18) == due + 30 * 86805 - 12 * 86805


def test_config_from_dict_names_the_bad_key() -> None:
    assert EmulatorConfig.from_dict({"watchdog_ms": 100, "baud": 115200}).baud == 115200
    with pytest.raises(ConfigError, match="watchdog_msec"):
        EmulatorConfig.from_dict({"watchdog_msec": 100})
    with pytest.raises(ConfigError, match="baud"):
        EmulatorConfig.from_dict({"baud": "fast"})


# ---- the same random streams through the C firmware logic and the Python twin ----

C_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rover_logic.h"
static char line[8192];
int main(void) {
  rover_mcu_t m;
  rover_init(&m, 250);
  while (fgets(line, sizeof line, stdin)) {
    char *p = line + 2;
    if (line[0] == 'R') { rover_init(&m, (uint32_t)strtoul(p, NULL, 10)); continue; }
    uint32_t now = (uint32_t)strtoul(p, &p, 10);
    rover_tick(&m, now);
    printf("-");
    if (line[0] == 'F') {
      unsigned v; int used; uint8_t out[ROVER_TX_MAX];
      while (sscanf(p, " %2x%n", &v, &used) == 1) {
        p += used;
        size_t n = rover_feed(&m, (uint8_t)v, now, out);
        for (size_t i = 0; i < n; i++) printf("%02x", out[i]);
      }
    }
    printf(" %d %d %d %d %d %u\n", m.steering, m.throttle, m.armed, m.estop, m.tripped, m.seq);
  }
  return 0;
}
"""


def random_chunk(rng: random.Random, seq: int) -> bytes:
    """A valid, out-of-range, corrupted, truncated or overlong frame, or plain noise."""
    steering, throttle = rng.randint(-1100, 1100), rng.randint(-1100, 1100)
    flags = rng.choice([0, 1, 1, 1, 2, 3, 0x81])
    payload = struct.pack("<BHhhB", TYPE_DRIVE, seq % 65536, steering, throttle, flags)
    frame = bytearray(cobs.encode(payload + crc16(payload).to_bytes(2, "little")) + b"\x00")
    kind = rng.random()
    if kind < 0.1:
        frame[rng.randrange(len(frame) - 1)] ^= 1 << rng.randrange(8)
    elif kind < 0.15:
        frame = frame[: rng.randrange(1, len(frame) - 1)] + b"\x00"
    elif kind < 0.2:
        frame = bytearray(rng.randbytes(rng.randrange(1, 50)))
    elif kind < 0.23:
        frame = bytearray(b"\x05" * 40) + frame
    elif kind < 0.26:  # around the 32-byte receive buffer's edge
        frame = bytearray(rng.randrange(1, 256) for _ in range(rng.randrange(28, 36))) + b"\x00"
    return bytes(frame)


def random_script(rng: random.Random) -> list[str]:
    lines = [f"R {rng.choice([50, 250])}"]
    now = 0
    for seq in range(rng.randrange(20, 80)):
        now += rng.choice([0, 1, 7, 20, 20, 20, 49, 50, 90, 260, 400])
        if rng.random() < 0.15:
            lines.append(f"T {now}")
            continue
        data = b"".join(random_chunk(rng, seq + i) for i in range(rng.choice([1, 1, 1, 3])))
        lines.append(f"F {now} {data.hex(' ')}")
    return lines


def python_twin(lines: list[str]) -> list[str]:
    out: list[str] = []
    emu = FirmwareEmulator(now_ns=0)
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "R":
            emu = FirmwareEmulator(EmulatorConfig(watchdog_ms=int(rest)), now_ns=0)
            continue
        now_ms, _, hex_data = rest.partition(" ")
        now_ns = int(now_ms) * MS
        reply = emu.feed(bytes.fromhex(hex_data), now_ns) if kind == "F" else b""
        emu.tick(now_ns)
        o = emu.outputs
        out.append(
            f"-{reply.hex()} {round(o.steering * 1000)} {round(o.throttle * 1000)} "
            f"{int(o.armed)} {int(o.estop)} {int(o.watchdog_tripped)} {o.seq}"
        )
    return out


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")
def test_python_twin_matches_the_c_firmware_logic(tmp_path: Path) -> None:
    source, exe = tmp_path / "harness.c", tmp_path / "harness"
    source.write_text(C_HARNESS)
    build = ["cc", "-std=c99", "-Wall", "-Werror", f"-I{FIRMWARE}", str(source), "-o", str(exe)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rng = random.Random(20240601)
    script = [line for _ in range(60) for line in random_script(rng)]
    ran = subprocess.run(
        [str(exe)], input="\n".join(script) + "\n", capture_output=True, text=True, check=True
    )
    expected = python_twin(script)
    got = ran.stdout.splitlines()
    assert len(got) == len(expected) > 1000
    fed = [line for line in script if not line.startswith("R")]
    mismatches = [(f, c, p) for f, c, p in zip(fed, got, expected, strict=True) if c != p]
    assert not mismatches, mismatches[:3]
    assert sum(1 for g in got if len(g.split()[0]) > 1) > 300  # plenty of replies compared


# ---- served on a real pty, real time ----


def open_port(path: str) -> serial.Serial:
    return serial.Serial(path, 1_000_000, timeout=0.5, write_timeout=0.5)


def test_pty_round_trip_and_watchdog_in_real_time() -> None:
    with PtyEmulator() as emu, open_port(emu.device_path) as port:
        assert os.path.realpath(emu.device_path) == emu.pty_path
        port.write(drive(5, -0.2, 0.4, arm=True))
        [state] = replies(port.read_until(b"\x00"))
        assert (state.seq, state.armed, state.throttle) == (5, True, 0.4)
        assert emu.outputs.throttle == 0.4
        for seq in range(6, 9):  # keep it fed, then stop as a crashed host would
            port.write(drive(seq, -0.2, 0.4, arm=True))
            last_sent_ns = time.monotonic_ns()
            assert replies(port.read_until(b"\x00"))[0].seq == seq
        out = emu.wait_outputs(lambda o: o.watchdog_tripped, timeout_s=2.0)
        zeroed_after_ms = (time.monotonic_ns() - last_sent_ns) / MS
        assert (out.throttle, out.steering) == (0.0, 0.0)
        # never before its 250 ms (how soon after: `rover bench serial`, watchdog_ms)
        assert zeroed_after_ms >= 230, zeroed_after_ms


def test_unplug_removes_the_link_and_replug_repoints_it() -> None:
    with PtyEmulator(EmulatorConfig(watchdog_ms=100)) as emu:
        port = open_port(emu.device_path)
        port.write(drive(1, 0.0, 0.5, arm=True))
        assert replies(port.read_until(b"\x00"))[0].seq == 1
        emu.unplug()
        assert not os.path.lexists(emu.device_path) and not emu.plugged
        with pytest.raises(serial.SerialException):  # the host's open port is dead
            port.write(drive(2, 0.0, 0.5, arm=True))
            port.read(1)
        port.close()
        out = emu.wait_outputs(lambda o: o.watchdog_tripped, timeout_s=2.0)
        assert out.throttle == 0.0  # the watchdog runs on while the cable is out
        emu.replug()
        assert os.path.realpath(emu.device_path) == emu.pty_path
        with open_port(emu.device_path) as port:
            port.write(drive(3, 0.0, 0.5, arm=True))
            [state] = replies(port.read_until(b"\x00"))
            assert (state.seq, state.watchdog_tripped, state.throttle) == (3, True, 0.5)


def test_replug_with_reboot_restarts_the_firmware() -> None:
    with PtyEmulator() as emu:
        with open_port(emu.device_path) as port:
            port.write(drive(1, 0.0, 0.0, estop=True))
            assert replies(port.read_until(b"\x00"))[0].estop
        emu.unplug()
        emu.replug(reboot=True)
        assert not emu.outputs.estop  # a USB-powered MCU loses its latch with its power


def test_standalone_cli_serves_a_device_until_interrupted(tmp_path: Path) -> None:
    link = tmp_path / "rover-mcu"
    proc = subprocess.Popen(
        [sys.executable, "-m", "drivers.emulator", "--link", str(link), "--watchdog-ms", "100"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the emulator printed no device path"
        first = proc.stdout.readline()
        assert first.startswith(f"{link} -> /dev/pts/")
        with open_port(str(link)) as port:
            port.write(drive(12, 0.0, 0.3, arm=True))
            assert replies(port.read_until(b"\x00"))[0].seq == 12
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    assert not link.exists()


def test_injected_serial_loss_garbles_frames_that_are_counted_not_applied() -> None:
    config = EmulatorConfig(loss_prob=0.5, loss_seed=7)
    with PtyEmulator(config) as emu, serial.Serial(emu.device_path, timeout=0.05) as port:
        for seq in range(1, 41):
            port.write(encode_drive(DriveCommand(seq=seq, steering=0.1, throttle=0.2, arm=True)))
            port.flush()
            port.read(18)  # a STATE for an accepted DRIVE; nothing for a garbled one
        out = emu.outputs
    assert 0 < out.seq <= 40 and out.throttle == pytest.approx(0.2)
    assert 5 <= emu._emu.bad_frames <= 35  # about half of them, each counted as bad


def test_loss_probability_is_validated() -> None:
    with pytest.raises(ConfigError, match="loss_prob"):
        EmulatorConfig.from_dict({"loss_prob": 1.5})
