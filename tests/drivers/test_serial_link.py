"""The host's serial motor link over real ptys: contract, errors, unplug and replug."""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Callable, Iterator

import pytest

from drivers.emulator import EmulatorConfig, PtyEmulator, WireModel
from drivers.protocol import TYPE_DRIVE, DriveCommand, FrameDecoder, MotorState, encode_state
from drivers.serial_link import MotorLink, SerialConfig, SerialMotorLink
from rover.errors import ConfigError, DeviceError

WIRE_115200_MS = 30 * WireModel(115200).byte_ns / 1e6  # a DRIVE + STATE at 115200 baud
# How fast the link answers, reconnects and gives up on a full buffer: `rover bench serial`.
# The deadlines here only end a test that hangs; a loaded machine must not fail it.
DEADLINE_S = 10.0


@pytest.fixture(params=[None, 115200], ids=["pty-speed", "wire-115200"])
def twin(request: pytest.FixtureRequest) -> Iterator[tuple[PtyEmulator, SerialMotorLink]]:
    """The sim twin of the motor controller, and a link to it."""
    with (
        PtyEmulator(EmulatorConfig(baud=request.param)) as emu,
        SerialMotorLink(SerialConfig(port=emu.device_path)) as link,
    ):
        yield emu, link


def exchange(link: MotorLink, cmd: DriveCommand) -> MotorState:
    """Send one command and return its STATE (the one echoing its seq)."""
    link.send(cmd)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for state in link.poll(timeout_s=0.1):
            if state.seq == cmd.seq % 65536:
                return state
    raise AssertionError(f"no STATE for seq {cmd.seq}: {link.health()}")


def drive_until(
    link: MotorLink, seq: int, done: Callable[[], bool], timeout_s: float
) -> tuple[int, float]:
    """Send armed commands at 50 Hz until ``done()``; returns (next seq, seconds taken)."""
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < timeout_s, f"timed out: {link.health()}"
        link.send(DriveCommand(seq, 0.1, 0.4, arm=True))
        link.poll(timeout_s=0.02)  # paces the loop; returns early when a STATE arrives
        seq += 1
    return seq, time.monotonic() - start


def test_motor_link_contract(twin: tuple[PtyEmulator, SerialMotorLink]) -> None:
    emu, link = twin
    assert isinstance(link, MotorLink)
    state = exchange(link, DriveCommand(1, 0.5, -0.25, arm=True))
    assert (state.armed, state.steering, state.throttle, state.estop) == (True, 0.5, -0.25, False)
    assert (emu.outputs.steering, emu.outputs.throttle) == (0.5, -0.25)
    for seq in range(2, 22):
        assert exchange(link, DriveCommand(seq, 0.0, 0.1 * (seq % 10), arm=True)).seq == seq
    state = exchange(link, DriveCommand(22, 0.5, 0.5, arm=True, estop=True))
    assert (state.estop, state.armed, state.throttle) == (True, False, 0.0)
    assert exchange(link, DriveCommand(23, 0.5, 0.5, arm=True)).estop  # latched
    assert exchange(link, DriveCommand(65536 + 24, 0.0, 0.0)).seq == 24  # seq wraps
    before_last = time.monotonic()
    assert exchange(link, DriveCommand(25, 0.0, 0.2, arm=True)).throttle == 0.2  # re-armed

    health = link.health()
    assert health.connected and health.reconnects == 0
    assert (health.tx_frames, health.rx_frames, health.tx_dropped) == (25, 25, 0)
    assert health.bad_frames == 0  # the age is that of the last STATE, the one just received
    assert 0 <= health.last_state_age_ms <= 1000 * (time.monotonic() - before_last)
    assert health.rtt_p50_ms is not None
    if emu.config.baud:  # simulated latency is honest: never faster than the wire
        assert health.rtt_p50_ms >= WIRE_115200_MS
    link.close()
    link.close()
    with pytest.raises(RuntimeError, match="closed"):
        link.send(DriveCommand(26, 0.0, 0.0))


def test_missing_port_is_a_one_line_device_error() -> None:
    with pytest.raises(DeviceError) as info:
        SerialMotorLink(SerialConfig(port="/dev/ttyUSB9"))
    message = str(info.value)
    assert "\n" not in message
    assert "/dev/ttyUSB9 does not exist" in message and "[motor] port" in message


def test_not_a_serial_port_and_busy_port_are_explained(tmp_path: os.PathLike[str]) -> None:
    plain = os.path.join(tmp_path, "not-a-tty")
    open(plain, "w").close()
    with pytest.raises(DeviceError, match="not a serial port"):
        SerialMotorLink(SerialConfig(port=plain))
    with (
        PtyEmulator() as emu,
        SerialMotorLink(SerialConfig(port=emu.device_path)),
        pytest.raises(DeviceError, match="in use by another program"),
    ):
        SerialMotorLink(SerialConfig(port=emu.device_path))


def test_unplug_then_replug_reconnects() -> None:
    with PtyEmulator() as emu, SerialMotorLink(SerialConfig(port=emu.device_path)) as link:
        seq, _ = drive_until(link, 0, lambda: emu.outputs.throttle == 0.4, DEADLINE_S)
        emu.unplug()
        seq, _ = drive_until(link, seq, lambda: not link.health().connected, DEADLINE_S)
        # The loop keeps its 50 Hz while the device is away; the firmware's watchdog acts.
        seq, _ = drive_until(link, seq, lambda: emu.outputs.watchdog_tripped, DEADLINE_S)
        assert (emu.outputs.throttle, emu.outputs.steering) == (0.0, 0.0)
        dropped = link.health().tx_dropped
        assert dropped > 0

        emu.replug()
        replugged = link.health().rx_frames
        seq, _ = drive_until(link, seq, lambda: link.health().rx_frames > replugged, DEADLINE_S)
        health = link.health()
        assert health.connected and health.reconnects == 1
        assert link.last_state is not None and link.last_state.watchdog_tripped
        drive_until(link, seq, lambda: emu.outputs.throttle == 0.4, DEADLINE_S)


def test_garbage_from_the_device_is_counted_and_replies_still_matched() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        link = SerialMotorLink(SerialConfig(port=os.ttyname(slave)))
        link.send(DriveCommand(7, 0.0, 0.3, arm=True))
        [cmd] = FrameDecoder(accept=(TYPE_DRIVE,)).feed(os.read(master, 100))
        state = MotorState(cmd.seq, True, False, False, 0.0, 0.3, bad_frames=0, uptime_ms=5)
        os.write(master, b"\x13\x37\x00\x02\x99\x00" + encode_state(state))
        assert link.poll(timeout_s=1.0) == [state]
        health = link.health()
        assert health.bad_frames == 2 and health.decoder.frames == 1
        assert health.rtt_p50_ms is not None
        link.close()
    finally:
        os.close(master)
        os.close(slave)


def test_send_never_blocks_when_the_device_stops_reading() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        link = SerialMotorLink(SerialConfig(port=os.ttyname(slave), write_timeout_ms=5))
        seq, start = 0, time.monotonic()
        # a full buffer: send() gives up (and counts the drop) instead of blocking the loop
        while link.health().tx_dropped == 0:
            assert seq < 100_000, "the pty never filled up"
            assert time.monotonic() - start < DEADLINE_S, "send() blocked"
            link.send(DriveCommand(seq, 0.0, 0.0))
            seq += 1
        assert link.health().connected  # a full buffer is not an unplug
        link.close()
    finally:
        os.close(master)
        os.close(slave)


def test_config_from_dict_names_the_bad_key() -> None:
    config = SerialConfig.from_dict({"port": "/dev/ttyACM1", "baud": 115200})
    assert (config.port, config.baud, config.reconnect_period_ms) == ("/dev/ttyACM1", 115200, 100)
    with pytest.raises(ConfigError, match=r"\[motor\] unknown key.*speed"):
        SerialConfig.from_dict({"speed": 115200})
    with pytest.raises(ConfigError, match=r"\[motor\] baud"):
        SerialConfig.from_dict({"baud": -1})
    with pytest.raises(ConfigError, match=r"\[motor\] port"):
        SerialConfig.from_dict({"port": 3})
