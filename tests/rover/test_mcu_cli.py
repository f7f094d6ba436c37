"""`rover mcu serve`: the firmware on a link for people and benches."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import serial

from drivers.protocol import DriveCommand, FrameDecoder, encode_drive

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["--emulator", "--avr"])
def test_mcu_serve_answers_on_the_link_until_interrupted(which, tmp_path, require_tools):
    if which == "--avr":
        require_tools("avr-gcc", "avr-nm", "simavr", "cc", "make")
    link = tmp_path / "rover-mcu"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rover.cli", "mcu", "serve", which, "--link", str(link)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)  # --avr may build first
        assert ready, "rover mcu serve printed no device path"
        assert proc.stdout.readline().startswith(f"{link} -> /dev/pts/")
        with serial.Serial(str(link), 1_000_000, timeout=1) as port:
            port.write(encode_drive(DriveCommand(12, 0.0, 0.3, arm=True)))
            [state] = FrameDecoder().feed(port.read_until(b"\x00"))
            assert (state.seq, state.throttle) == (12, 0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    assert not link.exists()


def test_mcu_serve_refuses_a_link_that_is_a_real_file(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    result = subprocess.run(
        [sys.executable, "-m", "rover.cli", "mcu", "serve", "--emulator", "--link", str(taken)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and taken.read_text() == "mine"
    assert result.stderr.strip() == (
        f"rover: error: --link {taken} exists and is not a symlink: pick another path"
    )
