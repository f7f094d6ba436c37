"""Fixtures for the rover tests: a private bus namespace, and real robots and rigs to run
stacks on as a user does.

Everything is real: `rover rig` and `rover teleop/drive` run as the CLI, in their own process
groups (Ctrl-C is SIGINT to the group, as a terminal sends it); a robot is video files as
cameras and the firmware emulator on a pty as the motor controller; the motor controller's
DRIVE log says what reached the motors and when.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from rover.rig import RigFiles
from rover.topics import BusConfig

ROVER = [sys.executable, "-m", "rover.cli"]


@pytest.fixture
def bus_cfg() -> BusConfig:
    """A private namespace, so tests running side by side never cross; removed afterwards."""
    cfg = BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    yield cfg
    cfg.remove_ipc_root()


# Rigs: `rover rig` (video cameras, the emulator on a pty) and stacks run on them.


def _wait_until(predicate: Callable[[], object], timeout_s: float, what: str):
    """Poll `predicate` until it returns something truthy; AssertionError after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)  # polling another process's output, not synchronising by time


RIG_SECONDS = 4  # the rig's videos: short, rendered once per session
ROVER = [sys.executable, "-m", "rover.cli"]


def _session_env(base: Path) -> dict:
    """Headless SDL, and one video cache (warmed here) and state folder for the session."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    env.pop("DISPLAY", None)
    env["XDG_CACHE_HOME"] = str(base / "rig-cache")
    env["XDG_STATE_HOME"] = str(base / "rig-state")
    warm = base / "rig-warm"
    if not (warm / "rig.toml").exists():
        _start_rig(warm, env)
        _stop_rig(warm, env)
    return env


def _rover(*argv: str, env: dict, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    """Run a `rover` command to its end."""
    return subprocess.run(
        [*ROVER, *argv], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def _start_rig(out: Path, env: dict, *extra: str) -> RigFiles:
    done = _rover("rig", "--out", str(out), "--seconds", str(RIG_SECONDS), *extra, env=env)
    assert done.returncode == 0, done.stderr
    return RigFiles(out.resolve())


def _stop_rig(out: Path, env: dict) -> None:
    _rover("rig", "--stop", str(out), env=env)


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
        return _wait_until(
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

        return _wait_until(found, timeout_s, f"{text!r} from the stack")

    def interrupt(self, timeout_s: float = 10.0) -> float:
        """Ctrl-C (SIGINT to the process group); seconds until every process in it is gone."""
        start = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout_s)
        _wait_until(lambda: not _group_alive(self.proc.pid), timeout_s, "the stack's processes")
        return time.monotonic() - start

    def stop(self) -> None:
        if _group_alive(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._file.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _process_gone(pid: int) -> bool:
    """True when `pid` exited (a zombie nobody reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _node_pid(namespace: str, module: str) -> int:
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


def _new_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def rig_env(tmp_path_factory) -> dict:
    """Environment for `rover rig` and the stacks run on it: one cache for the whole session,
    so the rig's videos are rendered once (small and short), and headless SDL."""
    return _session_env(tmp_path_factory.getbasetemp())


@pytest.fixture
def rig(rig_env, tmp_path):
    """A rig of its own in this test's temp dir (video cameras, the emulator on a pty)."""
    files = _start_rig(tmp_path / "rig", rig_env)
    yield files
    _stop_rig(files.root, rig_env)


@pytest.fixture(scope="session")
def rig_seconds() -> int:
    """How long the rig's videos are."""
    return RIG_SECONDS


@pytest.fixture(scope="session")
def rover_cli():
    """`rover_cli(*argv, env=..., timeout_s=120)`: run a `rover` command to its end."""
    return _rover


@pytest.fixture(scope="session")
def start_rig():
    """`start_rig(out, env, *extra)`: `rover rig --out OUT` (asserted to succeed); its files."""
    return _start_rig


@pytest.fixture(scope="session")
def stop_rig():
    """`stop_rig(out, env)`: `rover rig --stop OUT`."""
    return _stop_rig


@pytest.fixture(scope="session")
def rover_stack():
    """`rover_stack(argv, env, log)`: `rover ARGV` in its own process group (see `Stack`)."""
    return Stack


@pytest.fixture(scope="session")
def drive_log():
    """`drive_log(path, from_start=False)`: the motor controller's DRIVEs (see `DriveLog`)."""
    return DriveLog


@pytest.fixture(scope="session")
def new_namespace():
    """`new_namespace()`: a fresh, unique bus namespace name for a stack."""
    return _new_namespace


@pytest.fixture(scope="session")
def process_gone():
    """`process_gone(pid)`: True when `pid` exited (an unreaped zombie counts as gone)."""
    return _process_gone


@pytest.fixture(scope="session")
def node_pid():
    """`node_pid(namespace, module)`: the pid of node `module` of the stack in `namespace`."""
    return _node_pid


# Robots: a robot.toml over video files and a motor controller's pty, `rover ...` started in
# its own process group from the robot's folder.


DRIVE_SCRIPT = [  # forward at half throttle with the deadman held, from 0.3 s on
    {"t_s": 0.0},
    {"t_s": 0.3, "throttle": 0.5, "steering": 0.2, "deadman": True},
]


def _write_videos(folder: Path, frames: int = 45) -> None:
    """left.avi and right.avi, 320x240 MJPG at 30 fps, each frame numbered."""
    for eye, colour in (("left", (0, 0, 180)), ("right", (180, 0, 0))):
        writer = cv2.VideoWriter(
            str(folder / f"{eye}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240)
        )
        for i in range(frames):
            img = np.full((240, 320, 3), colour, np.uint8)
            cv2.putText(img, str(i), (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
            writer.write(img)
        writer.release()


def _write_robot(folder: Path, port: str, loop: bool = True, frames: int = 45) -> Path:
    """A robot.toml whose camera paths are relative to its own folder."""
    _write_videos(folder, frames)
    toml = folder / "robot.toml"
    toml.write_text(
        f'[camera]\nleft = "left.avi"\nright = "right.avi"\nloop = {str(loop).lower()}\n'
        f'[motor]\nport = "{port}"\n'
    )
    return toml


def _write_script(folder: Path, steps: list[dict] = DRIVE_SCRIPT) -> Path:
    path = folder / "operator.json"
    path.write_text(json.dumps(steps))
    return path


def _start_rover(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    """`rover ARGS` in a new process group, stderr to `log`, from the folder `cwd`."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    env.pop("DISPLAY", None)
    with open(log, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "rover.cli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _group_pids(pgid: int) -> list[int]:
    """Every live process of process group `pgid` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def _stop_group(proc: subprocess.Popen) -> None:
    """Clean-up after a test: SIGKILL what is left of the stack's group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture(scope="session")
def write_robot():
    """`write_robot(folder, port, loop=True, frames=45)`: numbered left/right videos and a
    robot.toml whose camera paths are relative to its own folder; the toml's path."""
    return _write_robot


@pytest.fixture(scope="session")
def write_script():
    """`write_script(folder, steps=DRIVE_SCRIPT)`: a scripted operator's JSON file (by default
    forward at half throttle with the deadman held, from 0.3 s on)."""
    return _write_script


@pytest.fixture(scope="session")
def start_rover():
    """`start_rover(*args, cwd=..., log=...)`: `rover ARGS` in a new process group, stderr to
    `log`."""
    return _start_rover


@pytest.fixture(scope="session")
def group_pids():
    """`group_pids(pgid)`: every live process of a process group."""
    return _group_pids


@pytest.fixture(scope="session")
def stop_group():
    """`stop_group(proc)`: clean-up after a test, SIGKILL what is left of the stack's group."""
    return _stop_group
