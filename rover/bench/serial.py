"""`rover bench serial`: DRIVE -> STATE round trip through SerialMotorLink and the pty emulator
(or, with `--mcu avr`, the compiled firmware in simavr: its UART at its 1 Mbaud, paced to the
wall clock, so the figures include the wire time and the firmware's own work).

The floor, measured in the same run: the same bytes (a 12-byte DRIVE, an 18-byte STATE) across a
bare pty with an echo thread, raw os.write/os.read, no protocol and no pyserial. Both ends run in
this process, as the simulator runs them. With --baud the emulator also waits the wire time a
real serial line would take (then the floor is not comparable: it has no wire). Also measures
how long after the last command the firmware's watchdog zeroes the motors (with --mcu avr on
the firmware's own clock: from the last DRIVE's final byte to the watchdog's trip); with the
emulator, how long after a replug (USB unplugged and back) the first STATE arrives, and the
slowest send() into a device that stopped reading (it gives up after ``write_timeout_ms``, the
floor of that figure).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import threading
import time
import tty

from drivers.avr_sim import AvrConfig, AvrMcu
from drivers.emulator import EmulatorConfig, PtyEmulator
from drivers.protocol import DriveCommand, MotorState, encode_drive, encode_state
from drivers.serial_link import SerialConfig, SerialMotorLink
from rover.bench.common import latency_summary, print_table
from rover.errors import ConfigError

_TIMEOUT_S = 0.1  # a reply later than this counts as lost
_WARMUP = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument("--count", type=int, default=2000, help="commands to time")
    parser.add_argument("--baud", type=int, default=None, help="model wire time at this baud")
    parser.add_argument("--watchdog-ms", type=int, default=250, help="the emulator's watchdog")
    parser.add_argument(
        "--mcu",
        choices=("emulator", "avr"),
        default="emulator",
        help="the Python emulator (default) or the compiled firmware in simavr",
    )


def _echo(master: int, stop_r: int, reply: bytes) -> None:
    """Answer every 0x00-terminated frame on ``master`` with ``reply``."""
    while True:
        ready, _, _ = select.select([master, stop_r], [], [])
        if stop_r in ready:
            return
        data = os.read(master, 4096)
        for _ in range(data.count(0)):
            os.write(master, reply)


def measure_floor(count: int) -> list[float]:
    """Round trips (ms) of raw bytes over a bare pty echo: the software floor."""
    request = encode_drive(DriveCommand(1, 0.1, 0.2, arm=True))
    reply = encode_state(MotorState(1, True, False, False, 0.1, 0.2))
    master, slave = os.openpty()
    tty.setraw(slave)
    stop_r, stop_w = os.pipe()
    echo = threading.Thread(target=_echo, args=(master, stop_r, reply), daemon=True)
    echo.start()
    rtts_ms = []
    try:
        for i in range(count + _WARMUP):
            start = time.perf_counter_ns()
            os.write(slave, request)
            got = b""
            while not got.endswith(b"\x00"):
                if not select.select([slave], [], [], _TIMEOUT_S)[0]:
                    raise RuntimeError("the bare pty echo stopped answering")
                got += os.read(slave, 4096)
            if i >= _WARMUP:
                rtts_ms.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        os.write(stop_w, b"x")
        echo.join()
        for fd in (master, slave, stop_r, stop_w):
            os.close(fd)
    return rtts_ms


def measure_link(link: SerialMotorLink, count: int) -> tuple[list[float], int]:
    """Round trips (ms) from send() to the poll() that returns the echoing STATE; and lost."""
    rtts_ms, lost = [], 0
    for i in range(count + _WARMUP):
        cmd = DriveCommand(i, 0.1, 0.2, arm=True)
        start = time.perf_counter_ns()
        link.send(cmd)
        deadline = start + int(_TIMEOUT_S * 1e9)
        answered = False
        while not answered and time.perf_counter_ns() < deadline:
            left_s = (deadline - time.perf_counter_ns()) / 1e9
            answered = any(s.seq == cmd.seq % 65536 for s in link.poll(timeout_s=left_s))
        elapsed_ms = (time.perf_counter_ns() - start) / 1e6
        if i >= _WARMUP:
            if answered:
                rtts_ms.append(elapsed_ms)
            else:
                lost += 1
    return rtts_ms, lost


def measure_watchdog(link: SerialMotorLink, emu: PtyEmulator | AvrMcu) -> float:
    """Milliseconds from the last command written to the emulator zeroing its outputs (the
    firmware: from its last DRIVE's final byte to its trip, on its own clock)."""
    link.send(DriveCommand(1, 0.0, 0.5, arm=True))
    last_sent_ns = time.monotonic_ns()
    emu.wait_outputs(lambda o: o.throttle == 0.5, timeout_s=1.0)
    out = emu.wait_outputs(lambda o: o.watchdog_tripped, timeout_s=5.0)
    if isinstance(emu, AvrMcu):
        events = list(emu.events)
        last_rx = max(e.t_ns for e in events if e.kind == "RX" and e.value == 0)
        trip = min(e.t_ns for e in events if e.kind == "MEM" and e.value == 1 and e.t_ns > last_rx)
        return (trip - last_rx) / 1e6
    return (out.stamp_ns - last_sent_ns) / 1e6


def measure_reconnect(link: SerialMotorLink, emu: PtyEmulator) -> float:
    """Milliseconds from a replug to the first STATE, sending at 50 Hz as the control node."""
    emu.unplug()
    seq, deadline = 100, time.monotonic() + 10.0
    while link.health().connected and time.monotonic() < deadline:
        link.send(DriveCommand(seq, 0.0, 0.0))
        link.poll(timeout_s=0.02)
        seq += 1
    emu.replug()
    replugged_ns, before = time.monotonic_ns(), link.health().rx_frames
    while link.health().rx_frames == before:
        if time.monotonic() > deadline + 10.0:
            raise RuntimeError("bench serial: the link never reconnected")
        link.send(DriveCommand(seq, 0.0, 0.0))
        link.poll(timeout_s=0.02)
        seq += 1
    return (time.monotonic_ns() - replugged_ns) / 1e6


def measure_full_send(config: SerialConfig, max_sends: int = 100_000) -> float:
    """The slowest send() (ms) into a pty nobody reads, until the first one that gives up."""
    master, slave = os.openpty()
    tty.setraw(slave)
    slowest_ms = 0.0
    try:
        with SerialMotorLink(SerialConfig(port=os.ttyname(slave), **config)) as link:
            for seq in range(max_sends):
                start = time.perf_counter_ns()
                link.send(DriveCommand(seq, 0.0, 0.0))
                slowest_ms = max(slowest_ms, (time.perf_counter_ns() - start) / 1e6)
                if link.health().tx_dropped:
                    break
    finally:
        os.close(master)
        os.close(slave)
    return slowest_ms


def run(args: argparse.Namespace) -> dict:
    """Run the bench, print a table, return the flat result dict."""
    floor = latency_summary(measure_floor(args.count))
    if args.mcu == "avr":
        if args.baud or args.watchdog_ms != 250:
            raise ConfigError(
                "--mcu avr runs the firmware as built (1 Mbaud, 250 ms watchdog): "
                "drop --baud/--watchdog-ms"
            )
        mcu: PtyEmulator | AvrMcu = AvrMcu(AvrConfig())
        wire = "the compiled firmware in simavr, its UART at 1000000 baud"
    else:
        mcu = PtyEmulator(EmulatorConfig(watchdog_ms=args.watchdog_ms, baud=args.baud))
        wire = f"wire time at {args.baud} baud" if args.baud else "pty speed, no wire time"
    with mcu, SerialMotorLink(SerialConfig(port=mcu.device_path)) as link:
        rtts_ms, lost = measure_link(link, args.count)
        watchdog_ms = measure_watchdog(link, mcu)
        reconnect_ms = measure_reconnect(link, mcu) if isinstance(mcu, PtyEmulator) else None
    write_timeout_ms = SerialConfig().write_timeout_ms
    full_send_ms = measure_full_send({"write_timeout_ms": write_timeout_ms})
    link_summary = latency_summary(rtts_ms)
    print(f"serial round trip, DRIVE -> STATE, {args.count} commands, {wire}")
    print_table(
        ["path", "p50 ms", "p99 ms", "max ms"],
        [
            [name, f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}", f"{s['max_ms']:.3f}"]
            for name, s in (("bare pty echo (floor)", floor), ("SerialMotorLink", link_summary))
        ],
    )
    print(f"lost: {lost}   watchdog zeroed the motors {watchdog_ms:.1f} ms after the last DRIVE")
    if reconnect_ms is not None:
        period_ms = SerialConfig().reconnect_period_ms
        print(f"replug -> first STATE: {reconnect_ms:.0f} ms (reopen tried every {period_ms} ms)")
    print(
        f"slowest send() into a device that stopped reading: {full_send_ms:.2f} ms "
        f"(floor: write_timeout_ms = {write_timeout_ms})"
    )
    return {
        "count": args.count,
        "lost": lost,
        "p50_ms": link_summary["p50_ms"],
        "p99_ms": link_summary["p99_ms"],
        "max_ms": link_summary["max_ms"],
        "floor_p50_ms": floor["p50_ms"],
        "floor_p99_ms": floor["p99_ms"],
        "watchdog_ms": watchdog_ms,
        "reconnect_ms": None if reconnect_ms is None else round(reconnect_ms, 1),
        "full_send_max_ms": round(full_send_ms, 3),
        "floor_full_send_ms": write_timeout_ms,
        "baud": 1_000_000 if args.mcu == "avr" else args.baud or 0,
        "mcu": args.mcu,
    }


def main() -> None:
    """``python -m rover.bench.serial``: the bench alone, JSON on the last line."""
    parser = argparse.ArgumentParser(prog="rover bench serial", description=__doc__)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
