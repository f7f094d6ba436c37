"""The `rover` command as a user runs it: real processes, one clear line on bad input."""

import json
import subprocess
import sys
import time

import pytest

from drivers.emulator import PtyEmulator
from rover import bus, topics
from rover import messages as m


def rover(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rover.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_help_lists_the_commands():
    out = rover("--help").stdout
    for command in ("drive", "teleop", "demo", "topics", "calibrate", "bench"):
        assert command in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "camera.left=/nonexistent/left.avi"], "left.avi does not exist"),
        (["--set", "camera.calibration=/nonexistent/calib.yaml"], "calib"),
        (["--set", "control.max_throttle=3"], "max_throttle"),
        (["--config", "/nonexistent/robot.toml"], "does not exist"),
        (["--safety-driver", "3"], "add --sim"),
        (["--sim", "open", "--safety-driver", "99"], "0 to 30 seconds"),
        (["--perturb", "fast"], "RATE,SIZE"),
        (["--perturb", "0.3,2"], "size in (0, 1]"),
        (["--randomise-materials"], "add --sim"),
        (["--sim", "forest,nowhere"], "scenario 'nowhere' not found"),
        (["--sim", "forest", "--lockstep"], "rover teleop has no autopilot"),  # never starts
    ],
)
def test_bad_setup_gives_one_clear_line(args, needle, bus_cfg):
    with PtyEmulator() as mcu:  # a working motor controller: only the bad part may fail
        result = rover(
            "teleop",
            "--namespace",
            bus_cfg.namespace,
            "--set",
            f"motor.port={mcu.device_path}",
            *args,
        )
    assert needle in _one_error_line(result)


def test_wrong_serial_port_one_line(bus_cfg, tmp_path):
    import cv2
    import numpy as np

    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 240))
    for i in range(5):
        writer.write(np.full((240, 640, 3), i * 40, np.uint8))
    writer.release()
    result = rover(
        "teleop",
        "--namespace",
        bus_cfg.namespace,
        "--set",
        f"camera.left={video}",
        "--set",
        "camera.side_by_side=true",
        "--set",
        "camera.loop=true",
        "--set",
        "motor.port=/dev/ttyNOPE0",
    )
    assert "serial port /dev/ttyNOPE0 does not exist" in _one_error_line(result)


def test_topics_reports_live_rate_and_drops(bus_cfg):
    pub = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rover.cli",
            "topics",
            "--namespace",
            bus_cfg.namespace,
            "--seconds",
            "1.5",
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    next_t = time.monotonic()
    while proc.poll() is None:  # publish at 50 Hz for as long as it listens
        if time.monotonic() >= next_t:
            pub.publish(m.TeleopCommand())
            next_t += 0.02
    report = json.loads(proc.stdout.read().strip().splitlines()[-1])
    row = next(r for r in report["topics"] if r["topic"] == "teleop/command")
    # what it heard, beside what the registry declares (the 50 Hz loop above bursts to catch
    # up on a loaded machine: the measured rate is no test of anything)
    assert row["rate_hz"] > 0 and row["nominal_hz"] == topics.TELEOP_COMMAND.rate_hz
    assert row["drops"] == 0 and row["messages"] > 20
    assert next(r for r in report["topics"] if r["topic"] == "camera/stereo")["messages"] == 0
