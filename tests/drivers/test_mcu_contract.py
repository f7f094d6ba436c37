"""One contract, two motor controllers: the Python emulator and the compiled firmware in simavr.

Every test runs on both (the ``mcu`` fixture); where they differ the test says which and why.
Timing is read on the MCU's own clock: the emulator's is the host's monotonic clock, the
firmware's is simavr's cycle counter (paced to the wall clock by the harness).
"""

from __future__ import annotations

import random
import time

from drivers.protocol import (
    TYPE_DRIVE,
    DriveCommand,
    FrameDecoder,
    MotorState,
    encode_drive,
    encode_state,
)

MS = 1_000_000


def drive(seq: int, steering: float = 0.0, throttle: float = 0.0, **flags: bool) -> bytes:
    return encode_drive(DriveCommand(seq, steering, throttle, **flags))


def test_drive_is_answered_with_its_seq_and_clamped_values(
    mcu, exchange, open_port, raw_drive
) -> None:
    with open_port(mcu) as port:
        [state] = exchange(port, raw_drive(41, 1200, -1100))
        assert (state.seq, state.armed, state.steering, state.throttle) == (41, True, 1.0, -1.0)
        [state] = exchange(port, raw_drive(42, 250, -500))
        assert (state.seq, state.steering, state.throttle) == (42, 0.25, -0.5)
        assert not state.watchdog_tripped and not state.estop
        [state] = exchange(port, raw_drive(43, 700, 700, flags=0))  # no ARM: answered, not applied
        assert (state.seq, state.armed, state.steering, state.throttle) == (43, False, 0.0, 0.0)
    out = mcu.wait_outputs(lambda o: o.seq == 43)
    assert (out.steering, out.throttle, out.armed) == (0.0, 0.0, False)


def test_applied_gives_a_drives_outputs_after_a_later_stop(mcu, exchange, open_port) -> None:
    """Lock-step: the simulator steps on what its frame's answer set, even when a stop followed
    while it was stalled."""
    with open_port(mcu) as port:
        assert exchange(port, drive(1, 0.25, 0.5, arm=True))[0].armed
        mcu.wait_outputs(lambda o: o.seq == 1 and o.throttle == 0.5)
        assert not exchange(port, drive(2, 0.25, 0.5))[0].armed  # the stop, disarmed
        mcu.wait_outputs(lambda o: o.seq == 2 and o.throttle == 0.0)
    first, stop = mcu.applied(1), mcu.applied(2)
    assert (first.steering, first.throttle, first.armed) == (0.25, 0.5, True)
    assert (stop.throttle, stop.armed) == (0.0, False)
    assert mcu.applied(99) is None  # never sent


def test_watchdog_trips_250ms_after_the_last_drive_on_the_mcu_clock(
    mcu, exchange, open_port
) -> None:
    with open_port(mcu) as port:
        for seq in range(1, 6):  # 50 Hz for 100 ms, then silence, as a crashed host
            assert exchange(port, drive(seq, 0.3, 0.5, arm=True))[0].seq == seq
            time.sleep(0.02)  # the host's send period, not a synchronisation
        mcu.wait_outputs(lambda o: o.seq == 5 and o.throttle == 0.5)
        last_drive_ns = mcu.last_drive_ns()
        mcu.wait_outputs(lambda o: o.watchdog_tripped, timeout_s=5.0)
        tripped_after_ms = (mcu.trip_ns() - last_drive_ns) / MS
        assert tripped_after_ms >= 230, tripped_after_ms  # never early
        if mcu.name == "avr":  # simulated cycles: load cannot make it late (the emulator's
            assert tripped_after_ms <= 270, tripped_after_ms  # figure: `rover bench serial`)
        out = mcu.wait_outputs(lambda o: o.throttle == 0.0 and o.steering == 0.0, timeout_s=5.0)
        assert out.armed  # a gap is not a disarm
        [state] = exchange(port, drive(6, 0.3, 0.5, arm=True))
        assert state.watchdog_tripped and state.throttle == 0.5  # reported once, then resumes
        assert not exchange(port, drive(7, 0.3, 0.5, arm=True))[0].watchdog_tripped


def test_estop_latches_through_armed_drives_until_arm_rises(mcu, exchange, open_port) -> None:
    with open_port(mcu) as port:
        assert exchange(port, drive(1, 0.5, 0.5, arm=True))[0].armed
        [state] = exchange(port, drive(2, 0.5, 0.5, arm=True, estop=True))
        assert (state.estop, state.armed, state.throttle) == (True, False, 0.0)
        for seq in range(3, 6):  # a host that keeps asking to arm cannot undo it
            [state] = exchange(port, drive(seq, 0.5, 0.5, arm=True))
            assert (state.estop, state.armed, state.throttle) == (True, False, 0.0)
        [state] = exchange(port, drive(6, 0.5, 0.5))
        assert (state.estop, state.armed) == (True, False)
        [state] = exchange(port, drive(7, 0.5, 0.5, arm=True))
        assert (state.estop, state.armed, state.throttle) == (False, True, 0.5)
    out = mcu.wait_outputs(lambda o: o.seq == 7)
    assert (out.estop, out.armed, out.throttle) == (False, True, 0.5)


def garbage_frames(raw_drive, rng: random.Random) -> list[tuple[str, bytes]]:
    """One of each kind of frame the MCU must count and never answer, each 0x00-terminated."""
    good = bytearray(drive(9, 0.1, 0.1, arm=True))
    bad_crc = bytearray(good)
    bad_crc[4] ^= 0x10
    state = encode_state(MotorState(3, True, False, False, 0.0, 0.0))
    noise = bytes(rng.randrange(256) for _ in range(60)).replace(b"\x00", b"\x07")
    noise = b"".join(c + b"\x00" for c in (noise[:20], noise[20:31], noise[31:]))
    return [
        ("bad crc", bytes(bad_crc)),
        ("bad cobs", b"\x09\x44\x01\x02\x00"),
        ("overlong", b"\x05" * 40 + b"\x00"),
        ("truncated", bytes(good[:6]) + b"\x00"),
        ("unknown type (a STATE)", state),
        ("unknown type 0x55", raw_drive(4, 0, 0, kind=0x55)),
        ("bad length", b"\x04\x44\x01\x02\x00"),
        ("random bytes", noise),
    ]


def test_bad_frames_are_counted_as_the_host_decoder_counts_them_never_answered(
    mcu, exchange, open_port, read_states, raw_drive
) -> None:
    host = FrameDecoder(accept=(TYPE_DRIVE,))
    with open_port(mcu) as port:
        for seq, (kind, junk) in enumerate(garbage_frames(raw_drive, random.Random(13)), start=100):
            host.feed(junk)
            states = exchange(port, junk + drive(seq, 0.2, 0.2, arm=True))
            assert [s.seq for s in states] == [seq], kind  # the junk got no reply
            assert states[0].bad_frames == host.counters.bad_total, kind
            assert states[0].throttle == 0.2, kind
        assert host.counters.bad_total >= 10
        # Two DRIVEs in one write are two answers; a lone delimiter is a flush, not an error.
        port.write(b"\x00" + drive(200, arm=True) + drive(201, arm=True))
        states = read_states(port, 2)
        assert [s.seq for s in states] == [200, 201]
        assert states[-1].bad_frames == host.counters.bad_total


def test_random_byte_streams_never_kill_it(mcu, exchange, open_port) -> None:
    rng = random.Random(7)
    with open_port(mcu) as port:
        for seq in range(20):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            states = exchange(port, junk + b"\x00" + drive(seq, arm=True))
            assert states and states[-1].seq == seq


def test_a_lost_delimiter_costs_only_the_frame_that_lost_it(mcu, exchange, open_port) -> None:
    host = FrameDecoder(accept=(TYPE_DRIVE,))
    with open_port(mcu) as port:
        lost = drive(1, 0.1, 0.1, arm=True)[:-1]  # line noise ate its 0x00
        data = lost + drive(2, 0.4, 0.4, arm=True)
        states = exchange(port, data)
        assert [s.seq for s in states] == [2]
        assert states[0].throttle == 0.4
        # The host decoder sees one bad frame there; so does the MCU (then it finds the DRIVE
        # in that frame's tail: a DRIVE has a fixed length).
        assert host.feed(data) == [] and states[0].bad_frames == host.counters.bad_total == 1
