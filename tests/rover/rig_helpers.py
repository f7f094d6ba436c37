"""Helpers for the rig tests: start a rig and stacks on it as a user does, read what arrived.

Everything is real: `rover rig` and `rover teleop/drive` run as the CLI, in their own process
groups (Ctrl-C is SIGINT to the group, as a terminal sends it); the motor controller's DRIVE log
says what reached the motors and when.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rover.rig import RigFiles

RIG_SECONDS = 4  # the rig's videos: short, rendered once per session
ROVER = [sys.executable, "-m", "rover.cli"]


def session_env(base: Path) -> dict:
    """Headless SDL, and one video cache (warmed here) and state folder for the session."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    env.pop("DISPLAY", None)
    env["XDG_CACHE_HOME"] = str(base / "rig-cache")
    env["XDG_STATE_HOME"] = str(base / "rig-state")
    warm = base / "rig-warm"
    if not (warm / "rig.toml").exists():
        start_rig(warm, env)
        stop_rig(warm, env)
    return env


def rover(*argv: str, env: dict, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    """Run a `rover` command to its end."""
    return subprocess.run(
        [*ROVER, *argv], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def start_rig(out: Path, env: dict, *extra: str) -> RigFiles:
    done = rover("rig", "--out", str(out), "--seconds", str(RIG_SECONDS), *extra, env=env)
    assert done.returncode == 0, done.stderr
    return RigFiles(out.resolve())


def stop_rig(out: Path, env: dict) -> None:
    rover("rig", "--stop", str(out), env=env)


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str):
    """Poll `predicate` until it returns something truthy; AssertionError after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)  # polling another process's output, not synchronising by time


@dataclass(frozen=True)
class Drive:
    """One DRIVE as the motor controller applied it (its drive log line)."""

    seq: int
    arrival_ns: int
    steering: float
    throttle: float
    armed: bool
    estop: bool


class DriveLog:
    """The motor controller's DRIVEs that arrive from now on."""

    def __init__(self, path: Path, from_start: bool = False):
        self.path = path
        self.offset = path.stat().st_size if path.exists() and not from_start else 0

    def drives(self) -> list[Drive]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            lines = f.read().decode().splitlines()
        out = []
        for line in lines:
            seq, arrival, steering, throttle, armed, estop = (int(v) for v in line.split())
            out.append(
                Drive(seq, arrival, steering / 1000, throttle / 1000, armed == 1, estop == 1)
            )
        return out

    def wait(self, predicate: Callable[[Drive], bool], timeout_s: float, what: str) -> Drive:
        """The first DRIVE from now on that satisfies `predicate`."""
        return wait_until(
            lambda: next((d for d in self.drives() if predicate(d)), None), timeout_s, what
        )

    def mark(self) -> None:
        """Only DRIVEs that arrive after this call count from now on."""
        self.offset = self.path.stat().st_size


class Stack:
    """`rover teleop/drive ...` run as a user runs it, its output in a file."""

    def __init__(self, argv: list[str], env: dict, log: Path):
        self.log = log
        self._file = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*ROVER, *argv],
            env=env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_line(self, text: str, timeout_s: float = 60.0) -> str:
        """The first output line containing `text`."""

        def found():
            for line in self.output().splitlines():
                if text in line:
                    return line
            assert self.proc.poll() is None, (
                f"stack exited ({self.proc.returncode}):\n{self.output()}"
            )
            return None

        return wait_until(found, timeout_s, f"{text!r} from the stack")

    def interrupt(self, timeout_s: float = 10.0) -> float:
        """Ctrl-C (SIGINT to the process group); seconds until every process in it is gone."""
        start = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout_s)
        wait_until(lambda: not group_alive(self.proc.pid), timeout_s, "the stack's processes")
        return time.monotonic() - start

    def stop(self) -> None:
        if group_alive(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._file.close()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def process_gone(pid: int) -> bool:
    """True when `pid` exited (a zombie nobody reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def node_pid(namespace: str, module: str) -> int:
    """The pid of node `module` (e.g. rover.nodes.camera) of the stack in `namespace`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if module.encode() in argv and namespace.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no {module} process in namespace {namespace}")
