"""The rig and the stack a latency bench drives: started as a user starts them, stopped with
Ctrl-C, timed until every process is gone (used by `rover bench latency` and its `--keys`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path


def start_stack(argv: list[str], env: dict | None = None) -> subprocess.Popen:
    """A stack as a user starts one, in its own process group (stopped with SIGINT)."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def stop_stack(stack: subprocess.Popen, timeout_s: float = 10.0) -> float:
    """Ctrl-C the stack's process group; seconds until every process in it is gone."""
    start = time.monotonic()
    if stack.poll() is None:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
    while _group_alive(stack.pid) and time.monotonic() - start < timeout_s:
        time.sleep(0.005)  # the nodes exit after the manager; measuring when the last one goes
    return time.monotonic() - start


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def rig_for(args: argparse.Namespace, tmp: Path):
    """(rig.toml, drive log, stop) of the rig the bench uses: the one named, or its own."""
    from rover.errors import ConfigError
    from rover.rig import RigFiles, RigSpec, start_rig, stop_rig

    if args.config:
        files = RigFiles(Path(args.config).resolve().parent)
        if not files.state.exists():
            raise ConfigError(
                f"{args.config} is not a rig's rig.toml (no rig.json beside it): start one "
                "with `rover rig`, or omit --config and the bench starts its own"
            )
        state = json.loads(files.state.read_text())
        spec = state["spec"]
        if not state.get("drive_log"):
            raise ConfigError(
                f"the rig in {files.root} runs the {spec['mcu']} motor controller, which logs no "
                "DRIVE arrivals: start one with `rover rig --mcu emulator`"
            )
        if args.baud is not None and args.baud != spec.get("baud"):
            raise ConfigError(
                f"--baud {args.baud}: the rig in {files.root} models "
                f"{spec.get('baud') or 'no'} wire: restart it with `rover rig --baud {args.baud}`"
            )
        return files.toml, files.drive_log, spec.get("baud"), lambda: None
    files = start_rig(RigSpec(out=tmp / "rig", baud=args.baud), quiet=True)
    return files.toml, files.drive_log, args.baud, lambda: stop_rig(files.root, quiet=True)
