"""A robot stack for tests, from real parts: video files as cameras, the firmware emulator on a
pty as the motor controller, a scripted operator, `rover teleop`/`rover drive` as processes in
their own process group (as a terminal runs them)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

DRIVE_SCRIPT = [  # forward at half throttle with the deadman held, from 0.3 s on
    {"t_s": 0.0},
    {"t_s": 0.3, "throttle": 0.5, "steering": 0.2, "deadman": True},
]


def write_videos(folder: Path, frames: int = 45) -> None:
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


def write_robot(folder: Path, port: str, loop: bool = True, frames: int = 45) -> Path:
    """A robot.toml whose camera paths are relative to its own folder."""
    write_videos(folder, frames)
    toml = folder / "robot.toml"
    toml.write_text(
        f'[camera]\nleft = "left.avi"\nright = "right.avi"\nloop = {str(loop).lower()}\n'
        f'[motor]\nport = "{port}"\n'
    )
    return toml


def write_script(folder: Path, steps: list[dict] = DRIVE_SCRIPT) -> Path:
    path = folder / "operator.json"
    path.write_text(json.dumps(steps))
    return path


def start(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
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


def group_pids(pgid: int) -> list[int]:
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


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.02):
    """Poll `predicate` until truthy (returned) or raise after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)  # polling a condition with a deadline, not a fixed wait
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def stop_group(proc: subprocess.Popen) -> None:
    """Clean-up after a test: SIGKILL what is left of the stack's group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
