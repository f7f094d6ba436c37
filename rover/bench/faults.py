"""`rover bench faults`: how fast the stack reacts to a fault, with real node processes.

The control node, started by the manager, drives the firmware emulator on a pty from teleop
commands at 50 Hz; then:

- stale input: the teleop commands stop; milliseconds from the last one to the first stale
  control command (throttle zeroed) and to the motor controller's zero throttle. The floor is
  the configured ``[control] stale_ms`` itself: the figure over it is the control node's own
  reaction (up to one 20 ms control period is expected);
- restart: the control node is SIGKILLed; seconds until the manager's new one publishes
  (its back-off plus the new process's imports and start-up);
- Ctrl-C: ``rover drive --sim open --model expert --headless`` in its own process group gets
  SIGINT, as a terminal sends it; seconds until every process of the group is gone (the
  README's promise: within 2 s);
- recorder killed: the recorder node records 30 Hz frames, is SIGKILLed, and `recover`
  rebuilds its segment; seconds of frames lost before the kill (the frames sent after the
  last one recovered). The floor is the recorder's ``flush_s`` (0.5 s): what it may hold
  in memory by design (docs/recordings.md: "at most about a second").

The tests assert what happens (throttle zeroed, node back); this bench says how fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np

from drivers.emulator import PtyEmulator
from rover import bus, topics
from rover import messages as m
from rover.bench.common import latency_summary, print_table
from rover.control import ControlConfig
from rover.errors import ConfigError
from rover.manager import NODES, Manager
from rover.recording.writer import RecorderConfig
from rover.runspec import Run

_TELEOP_PERIOD_S = 0.02  # 50 Hz, as a gamepad's teleop node sends


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument("--trials", type=int, default=10, help="stale-input trials")
    parser.add_argument("--restarts", type=int, default=2, help="control node kills")
    parser.add_argument("--stops", type=int, default=1, help="Ctrl-C of a whole stack")
    parser.add_argument("--recorder-kills", type=int, default=2, help="recorder SIGKILLs")


def _until(predicate, timeout_s: float, what: str, tick=lambda: None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tick()
        value = predicate()
        if value:
            return value
    raise RuntimeError(f"bench faults: timed out waiting for {what}")


def _stale_trial(pub, cmds, emu: PtyEmulator) -> tuple[float, float]:
    """Drive until the motors follow, fall silent; (ms to stale command, ms to zero motors)."""
    teleop = m.TeleopCommand(steering=0.2, throttle=0.6, deadman=True)
    next_t = time.monotonic()

    def drive():
        nonlocal next_t
        if time.monotonic() >= next_t:
            pub.publish(teleop)
            next_t += _TELEOP_PERIOD_S

    _until(lambda: emu.outputs.throttle > 0.5, 10, "the motors to follow teleop", drive)
    last = pub.publish(teleop)
    cmds.drain()
    stale = _until(lambda: next((c for c in cmds.drain() if c.stale), None), 5, "stale")
    out = emu.wait_outputs(lambda o: o.throttle == 0.0, timeout_s=5)
    return (stale.stamp_ns - last.stamp_ns) / 1e6, (out.stamp_ns - last.stamp_ns) / 1e6


def _restart_trial(mgr: Manager, cmds) -> float:
    """SIGKILL the control node; seconds until its successor publishes."""
    _until(lambda: cmds.receive(50), 10, "control to publish", mgr.poll)
    old = mgr.pids()["control"]
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    _until(lambda: mgr.pids()["control"] != old, 30, "a restart", mgr.poll)
    cmds.drain()
    _until(lambda: cmds.receive(50), 30, "the new control node", mgr.poll)
    return time.monotonic() - killed


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_trial() -> float:
    """Ctrl-C a simulator stack once it drives; seconds until its whole group is gone."""
    cfg = topics.BusConfig(namespace=f"bench{os.getpid()}x{uuid.uuid4().hex[:6]}")
    cmds = bus.Subscriber(topics.CONTROL_COMMAND, cfg, newest=False, hwm=1000)
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    argv = [sys.executable, "-m", "rover.cli", "drive", "--sim", "open", "--model", "expert"]
    proc = subprocess.Popen(
        [*argv, "--headless", "--namespace", cfg.namespace],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _until(
            lambda: any(not c.stale and c.throttle > 0 for c in cmds.drain()),
            60,
            "the stack to drive",
        )
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        proc.wait(30)
        _until(lambda: not _group_alive(proc.pid), 30, "every process of the stack to stop")
        return time.monotonic() - sent
    finally:
        cmds.close()
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _recorder_trial(tmp: str) -> float:
    """SIGKILL a recording recorder; seconds of frames sent before the kill that are lost."""
    from rover.recording.reader import Session
    from rover.recording.recover import recover

    cfg = topics.BusConfig(namespace=f"bench{os.getpid()}x{uuid.uuid4().hex[:6]}")
    out = os.path.join(tmp, cfg.namespace)
    argv = [sys.executable, "-m", "rover.nodes.recorder", "--namespace", cfg.namespace]
    proc = subprocess.Popen([*argv, "--out", out], stderr=subprocess.DEVNULL)
    frames = bus.Publisher(topics.CAMERA_STEREO, cfg)
    commands = bus.Publisher(topics.CONTROL_COMMAND, cfg)
    image, sent = np.zeros((240, 320, 3), np.uint8), {}
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end or len(sent) < 60:
            msg = frames.publish(m.StereoImage(left=image, right=image))
            commands.publish(m.ControlCommand(frame_seq=msg.seq))
            sent[msg.seq] = time.monotonic()
            time.sleep(1 / 30)  # the camera's period: pacing the traffic
        killed_at = time.monotonic()
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
        frames.close()
        commands.close()
        cfg.remove_ipc_root()
    recover(out)
    kept = [f.frame_seq for f in Session(out).frames()]
    last = max(kept) if kept else min(sent)
    return killed_at - sent[last]


def _control_trials(args: argparse.Namespace) -> tuple[list, list[float]]:
    """Stale-input and restart trials against one manager-run control node."""
    cfg = topics.BusConfig(namespace=f"bench{os.getpid()}x{uuid.uuid4().hex[:6]}")
    with PtyEmulator() as emu:
        opts = Run(mode="teleop", bus=cfg, overrides=(f"motor.port={emu.device_path}",))
        mgr = Manager(opts, nodes=tuple(n for n in NODES if n.name == "control"))
        mgr.start()
        pub = bus.Publisher(topics.TELEOP_COMMAND, cfg)
        cmds = bus.Subscriber(topics.CONTROL_COMMAND, cfg, newest=False, hwm=1000)
        try:
            stale = [_stale_trial(pub, cmds, emu) for _ in range(args.trials)]
            restarts = [_restart_trial(mgr, cmds) for _ in range(args.restarts)]
        finally:
            pub.close()
            cmds.close()
            mgr.stop()
            mgr.failures.clear()  # the kills were ours: no logs to keep
            mgr.clean_up()
    return stale, restarts


def _ms_row(name: str, s: dict) -> list[str]:
    return [name, f"{s['p50_ms']:.1f} ms", f"{s['max_ms']:.1f} ms", str(s["n"])]


def _s_row(name: str, values: list[float]) -> list[str]:
    if not values:
        return [name, "-", "", "0"]
    return [name, f"{np.median(values):.2f} s", f"{max(values):.2f} s", str(len(values))]


def _s_figures(key: str, values: list[float]) -> dict:
    if not values:
        return {f"{key}_p50_s": None, f"{key}_max_s": None}
    return {
        f"{key}_p50_s": round(float(np.median(values)), 3),
        f"{key}_max_s": round(max(values), 3),
    }


def run(args: argparse.Namespace) -> dict:
    """Run the bench, print a table, return the flat result dict."""
    if args.trials < 1 or min(args.restarts, args.stops, args.recorder_kills) < 0:
        raise ConfigError(
            "--trials must be at least 1, --restarts, --stops and --recorder-kills at least 0"
        )
    stale_ms = ControlConfig().stale_ms
    stale, restarts = _control_trials(args)
    stops = [_stop_trial() for _ in range(args.stops)]
    with tempfile.TemporaryDirectory(prefix="rover-bench-faults-") as tmp:
        lost = [_recorder_trial(tmp) for _ in range(args.recorder_kills)]
    flush_s = RecorderConfig().flush_s
    to_cmd = latency_summary([s for s, _ in stale])
    to_motor = latency_summary([z for _, z in stale])
    print(f"faults: control node + firmware emulator on a pty, stale_ms = {stale_ms:g}")
    print_table(
        ["fault -> reaction", "p50", "max", "n"],
        [
            ["floor: configured stale_ms", f"{stale_ms:.1f} ms", "", ""],
            _ms_row("teleop silent -> stale command", to_cmd),
            _ms_row("teleop silent -> motors at zero", to_motor),
            _s_row("Ctrl-C -> every process gone", stops),
            _s_row("control killed -> new one publishes", restarts),
            ["floor: recorder flush_s", f"{flush_s:.2f} s", "", ""],
            _s_row("recorder killed -> frames lost", lost),
        ],
    )
    return {
        "floor_stale_ms": stale_ms,
        "stale_p50_ms": round(to_cmd["p50_ms"], 2),
        "stale_max_ms": round(to_cmd["max_ms"], 2),
        "motors_zero_p50_ms": round(to_motor["p50_ms"], 2),
        "motors_zero_max_ms": round(to_motor["max_ms"], 2),
        **_s_figures("restart", restarts),
        **_s_figures("stop", stops),
        "floor_flush_s": flush_s,
        **_s_figures("recorder_lost", lost),
        "trials": args.trials,
    }
