"""The whole stack against the simulator: real processes, bus, pty serial and emulator."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from rover import bus, topics

RUN_KEYS_THAT_VARY = {"wall_s", "steps_per_s"}


def drive(tmp_path, *args: str, name: str = "run") -> dict:
    out = tmp_path / f"{name}.json"
    namespace = f"t{uuid.uuid4().hex[:10]}"
    cmd = [
        sys.executable,
        "-m",
        "rover.cli",
        "drive",
        "--headless",
        "--namespace",
        namespace,
        "--metrics-out",
        str(out),
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # a finished run leaves nothing behind: its socket folder (and its logs) are gone
    assert not os.path.exists(topics.BusConfig(namespace=namespace).ipc_path())
    return json.loads(out.read_text())


@pytest.mark.slow
def test_lockstep_runs_are_identical_and_keep_up(tmp_path):
    args = ("--sim", "forest", "--seed", "5", "--model", "expert", "--lockstep", "--duration", "8")
    first = drive(tmp_path, *args, name="a")
    second = drive(tmp_path, *args, name="b")
    assert first["late_frames"] == 0 and first["steps"] == 240
    assert first["distance_m"] > 8  # it really drove, through control, serial and emulator
    same = {k: v for k, v in first.items() if k not in RUN_KEYS_THAT_VARY}
    assert same == {k: v for k, v in second.items() if k not in RUN_KEYS_THAT_VARY}
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.slow
def test_lockstep_run_is_the_same_however_long_each_frame_takes_on_the_wall_clock(tmp_path):
    """Time is the frame count in lock-step: frames that each take longer (150 ms) than the
    control node's silence limit (5 x stale_ms = 100 ms here), as on a loaded machine, give
    the figures of a quick run to the last digit."""
    args = ("--sim", "forest", "--seed", "5", "--model", "expert", "--lockstep")
    args += ("--duration", "1.5", "--set", "control.stale_ms=20")
    quick = drive(tmp_path, *args, name="quick")
    slow = drive(tmp_path, *args, "--camera-latency-ms", "150", name="slow")
    assert quick["late_frames"] == slow["late_frames"] == 0 and quick["distance_m"] > 1
    assert slow["injected"]["camera_latency_ms"] == 150.0  # the run says what it was given
    same = {k: v for k, v in quick.items() if k not in RUN_KEYS_THAT_VARY}
    assert same == {
        k: v for k, v in slow.items() if k not in RUN_KEYS_THAT_VARY and k != "injected"
    }


def test_realtime_sim_publishes_camera_and_motor_state_like_the_robot(tmp_path):
    ns = f"t{uuid.uuid4().hex[:10]}"
    bus_cfg = topics.BusConfig(namespace=ns)
    frames = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg, newest=False)
    states = bus.Subscriber(topics.MOTOR_STATE, bus_cfg)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rover.cli",
            "drive",
            "--headless",
            "--namespace",
            ns,
            "--sim",
            "open",
            "--model",
            "expert",
            "--duration",
            "4",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    got, first_ns, last_ns, state = 0, 0, 0, None
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        for sub in bus.wait_any([frames, states], 200):
            if sub is frames:
                for f in sub.drain():
                    assert f.left.shape == (240, 320, 3) and f.frame_seq == f.seq
                    got += 1
                    first_ns = first_ns or f.stamp_ns
                    last_ns = f.stamp_ns
            else:
                state = sub.receive() or state
    assert proc.wait(30) == 0, proc.stderr.read()
    assert got > 10, got
    # real-time mode is paced by the camera rate, never faster (how close to it a loaded
    # machine keeps: `rover bench sim`, realtime_steps_per_s)
    assert (got - 1) / ((last_ns - first_ns) / 1e9) <= 33
    assert state is not None and state.connected and state.armed


def test_drive_with_record_writes_every_lockstep_frame(tmp_path):
    drive(
        tmp_path,
        "--sim",
        "open",
        "--model",
        "expert",
        "--lockstep",
        "--duration",
        "3",
        "--record",
        str(tmp_path / "recs"),
    )
    (session,) = (tmp_path / "recs").iterdir()
    info = subprocess.run(
        [sys.executable, "-m", "rover.cli", "recordings", "info", "--json", str(session)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(info.stdout.strip().splitlines()[-1])
    assert report["stereo_pairs"] == 90 and report["dropped_frames"] == 0


def test_stack_keeps_driving_through_injected_faults(tmp_path):
    run = drive(
        tmp_path,
        "--sim",
        "open",
        "--model",
        "expert",
        "--lockstep",
        "--duration",
        "4",
        "--frame-drop",
        "0.2",
        "--serial-loss",
        "0.2",
        "--camera-latency-ms",
        "2",
    )
    assert run["steps"] == 120 and run["collisions"] == 0
    assert run["distance_m"] > 4  # dropped frames and garbled DRIVEs: it still gets through


@pytest.mark.slow
def test_traversability_node_and_guard_run_in_the_stack(tmp_path):
    snap = tmp_path / "window.png"
    run = drive(
        tmp_path,
        "--sim",
        "forest",
        "--model",
        "expert",
        "--lockstep",  # frame by frame: a loaded machine drives as far as a quiet one
        "--duration",
        "3",
        "--traversability",
        "--snapshot",
        str(snap),
    )
    assert run["collisions"] == 0 and run["distance_m"] > 2
    assert snap.stat().st_size > 10_000  # the window, with the map tinted on the left eye


@pytest.mark.slow
def test_lockstep_guard_turns_a_straight_drivers_crashes_into_driving(tmp_path):
    """In lock-step the control node answers frame N only with frame N's map: the guard
    steers the straight-ahead driver around the forest, every frame on time."""
    args = ("--sim", "forest", "--seed", "5", "--model", "straight", "--lockstep")
    blind = drive(tmp_path, *args, "--duration", "10", name="blind")
    guarded = drive(tmp_path, *args, "--duration", "10", "--traversability", name="guarded")
    assert blind["collisions"] >= 3
    assert guarded["collisions"] == 0 and guarded["distance_m"] > 10
    assert guarded["late_frames"] == 0 and guarded["steps"] == 300


@pytest.mark.slow
def test_a_safety_driver_takes_over_after_each_collision_in_the_stack(tmp_path):
    """`--safety-driver S`: after a collision the expert drives for S seconds, then the stack
    drives again; the straight-ahead driver's crashes in a row become one each."""
    args = ("--sim", "forest", "--seed", "5", "--model", "straight", "--lockstep")
    blind = drive(tmp_path, *args, "--duration", "10", name="blind")
    rescued = drive(tmp_path, *args, "--duration", "10", "--safety-driver", "3", name="rescued")
    assert blind["takeover_m"] == 0.0
    assert 1 <= rescued["collisions"] < blind["collisions"]
    assert rescued["takeover_m"] > 2.0  # the expert's metres, not counted as the driver's
    assert rescued["late_frames"] == 0 and rescued["steps"] == 300


# The simulator driven through the compiled firmware (`--mcu avr`): the very bytes a board runs.


@pytest.mark.slow
def test_lockstep_run_drives_through_the_firmware_in_simavr(tmp_path, require_tools):
    require_tools("avr-gcc", "avr-nm", "simavr", "cc", "make")
    args = ("--sim", "forest", "--seed", "5", "--model", "expert", "--lockstep", "--duration", "4")
    avr = drive(tmp_path, *args, "--mcu", "avr", name="avr")
    assert avr["late_frames"] == 0 and avr["steps"] == 120
    # Steered by the pulse widths read back from the firmware's pins, the expert drives on
    # (measured: 7.06 m, the same final pose as with the emulator, on a quiet machine; the
    # stack's wall-clock staleness checks make a heavily loaded run differ, with either MCU).
    assert avr["distance_m"] > 4 and avr["collisions"] == 0


def test_mcu_avr_is_the_simulators_and_says_so_in_one_line(tmp_path, capsys):
    from rover.cli import main

    model = tmp_path / "model.pt"
    model.write_bytes(b"not empty")
    assert main(["drive", "--model", str(model), "--mcu", "avr"]) == 2
    assert capsys.readouterr().err.strip() == (
        "rover: error: --mcu is for the simulator: add --sim SCENARIO, or leave --mcu out on "
        "the robot"
    )
    assert main(["drive", "--sim", "open", "--mcu", "avr", "--serial-loss", "0.1"]) == 2
    assert "--serial-loss" in capsys.readouterr().err


@pytest.mark.slow
def test_tab_in_the_simulator_window_pauses_and_resumes_the_recording(xvfb, tmp_path, bus_cfg):
    from rover.bench.xkeys import Keyboard
    from rover.recording.reader import Session
    from rover.recording.tools import session_info

    env = {**os.environ, "DISPLAY": xvfb}
    env.pop("SDL_VIDEODRIVER", None)  # a real window on the private X server
    argv = ["teleop", "--sim", "forest", "--namespace", bus_cfg.namespace]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rover.cli", *argv, "--record", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    frames = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg)
    keys = Keyboard(xvfb)

    def title_says(word: str):  # the window's title, as the taskbar shows it
        return lambda: keys.title().endswith(f": {word}")

    def frame_after(stamp_ns: int):
        return lambda: (f := frames.receive(100)) and f.stamp_ns > stamp_ns and f

    def until(predicate, what: str):
        deadline = time.monotonic() + 60
        while not (value := predicate()):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)  # polling the window's title, not a fixed wait
        return value

    try:
        keys.focus("rover sim: forest (seed 2)")
        until(title_says("REC"), "REC from the start (--record)")
        keys.tap("Tab")
        until(title_says("PAUSED"), "PAUSED after Tab")
        paused_ns = time.monotonic_ns()
        # frames captured after the window said PAUSED (older ones may wait in the socket)
        unseen = [until(frame_after(paused_ns), "a frame").seq for _ in range(10)]
        keys.tap("Tab")
        until(title_says("REC"), "REC after the second Tab")
        resumed_ns = time.monotonic_ns()
        after = until(frame_after(resumed_ns), "a frame after resuming")
        until(lambda: (f := frames.receive(100)) and f.seq > after.seq + 30, "a second more")
    finally:
        keys.close()
        frames.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    (session,) = tmp_path.iterdir()
    recorded = {f.frame_seq for f in Session(session).frames()}
    assert not recorded & set(unseen), "frames while PAUSED"
    assert after.seq in recorded and paused_ns < resumed_ns
    info = session_info(session)
    assert len(info["pauses"]) == 1 and info["paused_frames"] >= 9 and info["dropped_frames"] == 0
    assert "left out while paused" in out
