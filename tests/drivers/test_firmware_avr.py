"""What only the compiled firmware can show: its pins, its size, its hardware watchdog, its speed.

The emulator models no pulses (it hands the simulator steering and throttle directly), so
these run on the firmware in simavr alone; the contract both share is test_mcu_contract.py.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from drivers.avr_sim import BUILD_DIR, FIRMWARE_DIR, AvrMcu
from drivers.protocol import DriveCommand, encode_drive

pytestmark = pytest.mark.usefixtures("avr_tools", "avr_build")
MS = 1_000_000
US = 1000


def drive(seq: int, steering: float = 0.0, throttle: float = 0.0, **flags: bool) -> bytes:
    return encode_drive(DriveCommand(seq, steering, throttle, **flags))


@pytest.fixture
def avr(start_target):
    target = start_target("avr")
    yield target
    target.stop()


def pulses_after(mcu: AvrMcu, pin: str, t_ns: int) -> list[tuple[int, int]]:
    return [p for p in mcu.pulses(pin) if p[0] > t_ns]


def test_both_stages_fit_the_budget_and_build_without_warnings() -> None:
    result = subprocess.run(
        ["make", "-C", str(FIRMWARE_DIR), f"O={BUILD_DIR}", "size"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in result.stdout.splitlines() if "flash" in line]
    assert [line.split()[0] for line in lines] == ["esc_servo", "hbridge"]
    for line in lines:
        words = line.split()
        flash, ram = int(words[2]), int(words[words.index("RAM") + 1])
        assert flash <= 8192 and ram <= 512, line


def test_pulses_follow_steering_and_throttle_within_2us(avr, exchange, open_port) -> None:
    mcu: AvrMcu = avr.impl
    mcu.wait_sim_ns(50 * MS, timeout_s=5.0)
    boot = mcu.pulses("D9")
    assert boot and all(abs(w - 1500 * US) <= 2 * US for _, w in boot)  # neutral at boot
    with open_port(avr) as port:
        for seq, (steering, throttle) in enumerate(
            [(-1.0, 1.0), (-0.5, 0.25), (0.0, 0.0), (0.3, -0.7), (1.0, -1.0)], start=1
        ):
            assert exchange(port, drive(seq, steering, throttle, arm=True))[0].seq == seq
            mcu.wait_outputs(lambda o, s=seq: o.seq == s)
            sent_ns = next(t for t, state in mcu.states() if state.seq == seq)
            for pin, value in (("D9", steering), ("D10", throttle)):
                want_ns = (1500 + 500 * value) * US
                [(rise, width), *_] = pulses_after(mcu, pin, sent_ns)
                assert abs(width - want_ns) <= 2 * US, (pin, value, width)
                assert rise - sent_ns <= 20 * MS  # the next frame carries it
        rises = [r for r, _ in mcu.pulses("D9")]
        periods = [b - a for a, b in zip(rises, rises[1:], strict=False)]
        assert all(abs(p - 20 * MS) <= 2 * US for p in periods)  # 50 Hz, steady


def test_watchdog_trip_brings_pulses_to_neutral_within_one_frame(avr, exchange, open_port) -> None:
    mcu: AvrMcu = avr.impl
    with open_port(avr) as port:
        exchange(port, drive(1, 0.8, 0.6, arm=True))
        mcu.wait_outputs(lambda o: o.seq == 1 and o.throttle == 0.6)
        mcu.wait_outputs(lambda o: o.watchdog_tripped and o.throttle == 0.0, timeout_s=5.0)
    trip_ns = avr.trip_ns()
    after = pulses_after(mcu, "D10", trip_ns)
    assert after[0][0] - trip_ns <= 20 * MS
    assert abs(after[0][1] - 1500 * US) <= 2 * US
    assert abs(pulses_after(mcu, "D9", trip_ns)[0][1] - 1500 * US) <= 2 * US


def test_hbridge_duty_and_direction_pins_follow_throttle(exchange, open_port, start_target) -> None:
    target = start_target("avr", stage="hbridge")
    mcu: AvrMcu = target.impl
    try:
        with open_port(target) as port:
            for seq, throttle in enumerate([0.5, -0.8, 0.0, 1.0, -0.25], start=1):
                assert exchange(port, drive(seq, 0.2, throttle, arm=True))[0].seq == seq
                out = mcu.wait_outputs(lambda o, s=seq: o.seq == s)
                assert out.throttle == pytest.approx(throttle, abs=0.01), throttle
                assert out.steering == pytest.approx(0.2, abs=0.005)
                pins = mcu._pins
                assert (pins["D7"], pins["D8"]) == (int(throttle > 0), int(throttle < 0))
        assert not mcu.pulses("D10")  # the H-bridge build leaves pin 10 alone
    finally:
        target.stop()


def test_hardware_watchdog_resets_a_stalled_loop_and_pulses_come_back_neutral(
    exchange, open_port, start_target
) -> None:
    target = start_target("avr", stall_at_ms=300)
    mcu: AvrMcu = target.impl
    try:
        with open_port(target) as port:
            seq = 0
            while True:  # steer hard at 50 Hz until the loop hangs: no more answers
                seq += 1
                if not exchange(port, drive(seq, 0.8, 0.6, arm=True), timeout_s=1.0):
                    break
                time.sleep(0.02)  # the host's send period
            assert seq > 5
            stall = mcu.wait_event(lambda e: e.kind == "STALL", timeout_s=5.0)
            reset = mcu.wait_event(lambda e: e.kind == "RESET", timeout_s=5.0)
            assert 100 * MS <= reset.t_ns - stall.t_ns <= 150 * MS  # WDTO_120MS (128 ms)
            # Until then interrupts ran on: the pulses kept the last command (the hazard).
            hung = [w for r, w in mcu.pulses("D9") if stall.t_ns < r < reset.t_ns]
            assert hung and all(abs(w - 1900 * US) <= 2 * US for w in hung)
            mcu.wait_sim_ns(reset.t_ns + 50 * MS, timeout_s=5.0)
            back = pulses_after(mcu, "D9", reset.t_ns)
            assert back and all(abs(w - 1500 * US) <= 2 * US for _, w in back)
            assert back[0][0] - reset.t_ns <= 20 * MS
            [state] = exchange(port, drive(seq + 1, 0.1, 0.1, arm=True))  # it serves again
            assert state.throttle == 0.1
            mcu.wait_outputs(lambda o: o.seq == seq + 1)
            state_ns = next(t for t, s in mcu.states() if s.seq == seq + 1)
            assert abs(state.uptime_ms - (state_ns - reset.t_ns) / MS) <= 5  # counts from reset
    finally:
        target.stop()


def test_per_frame_processing_leaves_headroom_at_the_host_rate(
    avr, exchange, open_port, raw_drive, read_states
) -> None:
    """Cycles from a DRIVE's delimiter going on the wire to its STATE's first byte: the work."""
    mcu: AvrMcu = avr.impl
    with open_port(avr) as port:
        for seq in range(1, 21):
            exchange(port, raw_drive(seq, 100 * seq % 1000, -50 * seq))
        mcu.wait_outputs(lambda o: o.seq == 20)  # its events are in: the next frame's too
        events = list(mcu.events)
        took_cycles = []
        for i, e in enumerate(events):
            if e.kind == "RX" and e.value == 0:
                reply = next(x for x in events[i:] if x.kind == "TX")
                took_cycles.append((reply.t_ns - e.t_ns) * 16 // 1000)
        # Measured: ~2,700-3,000 cycles (0.17-0.19 ms at 16 MHz; a byte's 176 cycles of wire
        # included). The host sends one DRIVE every 20 ms: about 100x headroom.
        assert len(took_cycles) == 20 and max(took_cycles) < 4000, took_cycles
        # The host's way: a DRIVE every 20 ms, never waiting for the answer. Nothing is lost.
        for seq in range(100, 150):
            port.write(drive(seq, 0.1, 0.2, arm=True))
            time.sleep(0.02)  # the host's send period
        states = read_states(port, 50, timeout_s=5.0)
        assert [s.seq for s in states] == list(range(100, 150))
        assert states[-1].bad_frames == 0
        # Back to back at 1 Mbaud (0.13 ms a frame), as a USB-serial adapter may deliver a few
        # at once: the 128-byte buffers hold ten (measured: twelve answered, then replies drop).
        port.write(b"".join(drive(200 + i, arm=True) for i in range(10)))
        states = read_states(port, 10, timeout_s=5.0)
        assert [s.seq for s in states] == list(range(200, 210)) and states[-1].bad_frames == 0
