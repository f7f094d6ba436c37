"""`rover bench console`: the remote operator's figures on loopback, with real parts.

Runs `rover teleop --sim forest --headless --console --listen` and a real headless Chromium:
- capture -> image shown in the page (wall clock, one machine), and the frame rate shown;
- joystick pressed in the page -> the DRIVE carrying it written to the motor controller's
  serial port (control/command is published as it is sent), and -> the controller's STATE
  saying so (motor/state; the control node forwards STATE once a loop, up to a 20 ms tick);
- an operator's link cut (a CURVE operator that stops sending) -> throttle zero at the motor
  controller, against [control] stale_ms.
The floor is the page's WebSocket round trip on the same link, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from rover import bus, topics
from rover import messages as m
from rover.bench.common import latency_summary, print_table
from rover.errors import ConfigError
from rover.remote import free_port_pair

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to watch images")
    parser.add_argument("--presses", type=int, default=30, help="joystick presses to time")
    parser.add_argument("--cuts", type=int, default=10, help="link cuts to time")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser binary")


def start_stack_for_url(
    argv: list[str], prefix: str = "console: ", timeout_s: float = 60.0
) -> tuple[subprocess.Popen, str]:
    """`rover *argv` as a user starts it, headless (the bench's stack, and the tests'), and the
    address it printed on its first line that starts with ``prefix`` (``console: URL``,
    ``foxglove: ws://...``); its output keeps being read, so the stack never blocks on it."""
    cmd = [sys.executable, "-m", "rover.cli", *argv]
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    url: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            if line.startswith(prefix) and not url:
                url.append(line[len(prefix) :].split()[0])
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    if not seen.wait(timeout_s):
        proc.kill()
        raise ConfigError(
            f"the stack printed no `{prefix.strip()} ...` line within {timeout_s:g} s: run "
            f"`rover {' '.join(argv)}` by hand to see why"
        )
    return proc, url[0]


def _start(namespace: str, keys: str, port: int) -> tuple[subprocess.Popen, str]:
    argv = ["teleop", "--sim", "forest", "--headless", "--namespace", namespace]
    argv += ["--console", "127.0.0.1:0", "--keys", keys, "--listen", f"127.0.0.1:{port}"]
    return start_stack_for_url(argv)


def _wait_motor(motor: bus.Subscriber, predicate, timeout_s: float) -> int | None:
    """monotonic_ns when motor/state first satisfies `predicate`, else None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = motor.receive(timeout_ms=5)
        if msg is not None and predicate(msg):
            return motor.last_recv_ns
    return None


def _joystick(page, motor: bus.Subscriber, commands: bus.Subscriber, presses: int):
    """Press the page's joystick: -> the DRIVE that carries it, -> the MCU's STATE."""
    box = page.locator("#joystick").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    drives, states = [], []
    for _ in range(presses):
        page.mouse.move(cx, cy - 0.8 * box["height"] / 2)
        commands.drain()
        t0 = time.monotonic_ns()
        page.mouse.down()
        t_drive = _first_drive(commands, t0, moving=True)
        t_state = _wait_motor(motor, lambda s: s.throttle > 0.0, 2.0)
        if t_drive is not None and t_state is not None:
            drives.append((t_drive - t0) / 1e6)
            states.append((t_state - t0) / 1e6)
        page.mouse.up()
        _wait_motor(motor, lambda s: s.throttle == 0.0, 2.0)
    return drives, states


def _first_drive(commands: bus.Subscriber, after_ns: int, moving: bool) -> int | None:
    """The stamp of the first DRIVE the control node sent to the MCU after `after_ns` with
    throttle (moving) or without (not moving): control/command is published as it is sent."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        cmd = commands.receive(timeout_ms=5)
        if cmd is not None and cmd.stamp_ns > after_ns and (cmd.throttle > 0.0) == moving:
            return cmd.stamp_ns
    return None


def _cuts(
    address: str, keys: str, motor: bus.Subscriber, commands: bus.Subscriber, cuts: int
) -> tuple[list[float], list[float]]:
    """An operator drives, its link goes quiet (not one more packet), the robot must stop;
    then it acts again (release, press) and drives, for the next cut."""
    from rover.remote_client import RemoteLink

    link = RemoteLink(address, keys)
    out, drives = [], []
    try:
        for _ in range(cuts):
            last_ns = 0
            for held in (False, True):  # act: release, then press
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    link.send(m.TeleopCommand(throttle=0.5 if held else 0.0, deadman=held))
                    last_ns = time.monotonic_ns()
                    msg = motor.receive(timeout_ms=20)
                    if msg is not None and (msg.throttle > 0.3 if held else msg.throttle == 0):
                        break
            commands.drain()
            t_drive = _first_drive(commands, last_ns, moving=False)  # the cut
            t1 = _wait_motor(motor, lambda s: s.throttle == 0.0, 2.0)
            if t1 is not None and t_drive is not None:
                drives.append((t_drive - last_ns) / 1e6)
                out.append((t1 - last_ns) / 1e6)
    finally:
        link.close()
    return drives, out


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    from rover.control import ControlConfig
    from rover.keys import KeyStore

    keys = tempfile.mkdtemp(prefix="rover-bench-keys-")
    KeyStore(keys).init()  # this machine's operator is authorized by init
    port = free_port_pair()
    namespace = f"bench{os.getpid()}x{uuid.uuid4().hex[:6]}"
    bus_cfg = topics.BusConfig(namespace=namespace)
    proc, url = _start(namespace, keys, port)
    motor = bus.Subscriber(topics.MOTOR_STATE, bus_cfg)
    commands = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=500)
    try:
        with sync_playwright() as p:
            profile = tempfile.mkdtemp(prefix="rover-bench-chromium-")
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS
            )
            page = ctx.new_page()
            page.add_init_script("window.rover = {pingMs: 200}")
            page.goto(url)
            page.wait_for_function("window.rover && window.rover.framesShown >= 5", timeout=60_000)
            page.evaluate("window.rover.latencies = []; window.rover.rtts = []")
            shown0 = page.evaluate("window.rover.framesShown")
            time.sleep(args.seconds)  # watching the stream for this long is the measurement
            shown = page.evaluate("window.rover.framesShown") - shown0
            display = page.evaluate("window.rover.latencies")
            rtts = page.evaluate("window.rover.rtts")
            joystick_drive, joystick = _joystick(page, motor, commands, args.presses)
            ctx.close()
        cut_drive, cut = _cuts(f"127.0.0.1:{port}", keys, motor, commands, args.cuts)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        motor.close()
        commands.close()
    d, jd, j, c, cd, f = (
        latency_summary(x) for x in (display, joystick_drive, joystick, cut, cut_drive, rtts)
    )
    stale_ms = ControlConfig().stale_ms
    rows = [
        ("capture -> shown in Chromium", d, "p50 <= 100"),
        ("joystick -> DRIVE sent to the MCU", jd, "p99 <= 50"),
        ("joystick -> the MCU's STATE says so", j, ""),
        ("link cut -> zero DRIVE sent to the MCU", cd, f"<= {stale_ms + 20:g}"),
        ("link cut -> the MCU's STATE says zero", c, ""),
        ("floor: the page's WebSocket round trip", f, ""),
    ]
    print_table(
        ["path", "n", "p50 ms", "p99 ms", "max ms", "target"],
        [
            [name, s["n"], f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}", t]
            for name, s, t in rows
        ],
    )
    print(f"images shown: {shown / args.seconds:.1f} per second (preview capped at 15)")
    return {
        "display_p50_ms": d["p50_ms"],
        "display_p99_ms": d["p99_ms"],
        "display_fps": round(shown / args.seconds, 2),
        "joystick_drive_p50_ms": jd["p50_ms"],
        "joystick_drive_p99_ms": jd["p99_ms"],
        "joystick_state_p50_ms": j["p50_ms"],
        "joystick_state_p99_ms": j["p99_ms"],
        "cut_to_zero_drive_p50_ms": cd["p50_ms"],
        "cut_to_zero_drive_max_ms": cd["max_ms"],
        "cut_to_zero_state_p50_ms": c["p50_ms"],
        "cut_to_zero_state_max_ms": c["max_ms"],
        "stale_ms": stale_ms,
        "floor_p50_ms": f["p50_ms"],
    }
