"""`rover rig`: video cameras and the emulated motor controller, used through the real paths."""

from __future__ import annotations

import dataclasses
import os

import pytest

from drivers.camera import EndOfStream, OpenCVStereoCamera
from drivers.protocol import DriveCommand
from drivers.serial_link import SerialMotorLink
from rover.config import load_config


def test_the_rig_toml_drives_the_real_camera_and_serial_paths(
    rig, drive_log, rig_seconds, wait_until
):
    cfg = load_config(rig.toml)
    camera = OpenCVStereoCamera(cfg.camera)
    assert camera.calibration is not None  # rectified through the calibration file
    frames = [camera.read() for _ in range(rig_seconds * 30 + 5)]  # past the end: it loops
    camera.close()
    assert frames[0].left.shape == (240, 320, 3) and frames[0].left.std() > 10
    assert frames[0].left.tobytes() != frames[60].left.tobytes()  # the drive moves
    assert frames[0].left.tobytes() != frames[0].right.tobytes()  # two eyes, a baseline apart

    ending = OpenCVStereoCamera(dataclasses.replace(cfg.camera, loop=False))
    for _ in range(rig_seconds * 30):
        ending.read()
    with pytest.raises(EndOfStream):
        ending.read()
    ending.close()

    drives = drive_log(rig.drive_log)
    with SerialMotorLink(cfg.motor) as link:
        link.send(DriveCommand(7, 0.25, 0.5, arm=True))
        state = wait_until(lambda: [s for s in link.poll(0.1) if s.seq == 7], 5, "STATE 7")[0]
    assert state.armed and state.throttle == 0.5
    arrived = drives.wait(lambda d: d.seq == 7, 5, "DRIVE 7 in the log")
    assert arrived.armed and (arrived.steering, arrived.throttle) == (0.25, 0.5)


def test_rig_reuses_its_videos_stops_and_starts_again(
    rig, rig_env, tmp_path, process_gone, rig_seconds, rover_cli, start_rig, stop_rig
):
    again = rover_cli(
        "rig", "--out", str(tmp_path / "other"), "--seconds", str(rig_seconds), env=rig_env
    )
    assert again.returncode == 0 and "rendering" not in again.stdout  # from the cache
    stop_rig(tmp_path / "other", rig_env)

    pid = int(rig.pidfile.read_text())
    running = rover_cli("rig", "--out", str(rig.root), "--seconds", str(rig_seconds), env=rig_env)
    assert "already running" in running.stdout
    stop_rig(rig.root, rig_env)
    assert not os.path.lexists(rig.port) and process_gone(pid)

    start_rig(rig.root, rig_env)  # a motor controller that died is started again
    assert int(rig.pidfile.read_text()) != pid and os.path.exists(rig.port)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seconds", "0"], "--seconds 0: give 1 to 600 seconds"),
        (["--mcu", "arduino"], "--mcu arduino: use one of emulator, avr"),
    ],
)
def test_bad_rig_options_are_one_line(rig_env, tmp_path, argv, message, rover_cli):
    done = rover_cli("rig", "--out", str(tmp_path / "rig"), *argv, env=rig_env)
    assert done.returncode != 0 and message in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "rig" / "rig.toml").exists()


@pytest.mark.slow
def test_a_video_that_ends_ends_the_run_with_a_line(
    rig_env, tmp_path, new_namespace, rover_stack, start_rig, stop_rig
):
    files = start_rig(tmp_path / "rig", rig_env, "--no-loop")
    try:
        stack = rover_stack(
            ["teleop", "--config", str(files.toml), "--headless", "--namespace", new_namespace()],
            rig_env,
            tmp_path / "stack.log",
        )
        try:
            stack.proc.wait(60)
            assert "end of file" in stack.output() and stack.proc.returncode == 0
            assert "restarting" not in stack.output()
        finally:
            stack.stop()
    finally:
        stop_rig(files.root, rig_env)
