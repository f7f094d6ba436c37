"""Operators on another machine: real CURVE keys, the robot's control and remote nodes as real
processes, each operator in its own process, the firmware emulator on a real pty."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drivers.emulator import PtyEmulator
from rover import bus, topics
from rover import messages as m
from rover.keys import OPERATOR, KeyStore
from rover.manager import NODES, Manager
from rover.remote import free_port_pair
from rover.runspec import Run

OPERATOR_SCRIPT = Path(__file__).with_name("remote_operator.py")
ROBOT_NODES = tuple(n for n in NODES if n.name in ("control", "remote"))


def _wait_listening(address: str, timeout_s: float) -> None:
    """Until the robot's remote node accepts TCP connections (its start may be slow here)."""
    host, port = address.split(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a condition with a deadline
    raise AssertionError(f"the robot never listened on {address}")


@pytest.fixture
def keys(tmp_path):
    names = ("robot", "laptop", "former", "stranger")
    robot, laptop, former, stranger = (KeyStore(tmp_path / n) for n in names)
    for store in (robot, laptop, former, stranger):
        store.init()
    robot.authorize(laptop.public(OPERATOR).decode(), name="laptop")
    robot.authorize(former.public(OPERATOR).decode(), name="former")
    robot.revoke("former")
    return robot, laptop, former, stranger


@pytest.fixture
def robot(bus_cfg, keys):
    """The robot: control + remote nodes, --listen on loopback; yields (address, emulator)."""
    address = f"127.0.0.1:{free_port_pair()}"
    with PtyEmulator() as emu:
        opts = Run(
            mode="teleop",
            bus=bus_cfg,
            overrides=(f"motor.port={emu.device_path}",),
            listen=address,
            keys=str(keys[0].root),
        )
        mgr = Manager(opts, nodes=ROBOT_NODES)
        mgr.start()
        try:
            _wait_listening(address, 60)
            yield address, emu
        finally:
            mgr.stop()
            mgr.clean_up()
            shutil.rmtree(mgr.log_dir, ignore_errors=True)


def _operator(address, store, robot_store, seconds, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(OPERATOR_SCRIPT), address, str(store.root)]
        + [str(robot_store.root / "robot.key"), str(seconds), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _topics(address, store, robot_store) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rover.cli", "topics", "--connect", address, "--json"]
        + ["--seconds", "1", "--keys", str(store.root)]
        + ["--robot-key", str(robot_store.root / "robot.key")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_peers_without_an_authorized_key_get_nothing_and_move_nothing(robot, keys, bus_cfg):
    address, emu = robot
    robot_keys, laptop, former, stranger = keys
    reached = bus.Subscriber(topics.TELEOP_REMOTE, bus_cfg, newest=False, hwm=1000)
    # an authorized operator first: the robot is up, listening, and shows what it should
    ok = _operator(address, laptop, robot_keys, 1.0)
    out, err = ok.communicate(timeout=30)
    assert ok.returncode == 0, out + err
    seen = json.loads(out)["topics"]
    assert seen.get("motor/state", 0) > 10 and seen.get("remote/health", 0) >= 1
    assert set(seen) <= {t.name for t in topics.REMOTE_TOPICS}  # nothing else leaves ipc
    reached.drain()
    listed = _topics(address, laptop, robot_keys)  # `rover topics --connect` from the laptop
    assert listed.returncode == 0, listed.stderr
    rows = {r["topic"]: r for r in json.loads(listed.stdout)["topics"]}
    assert rows["motor/state"]["messages"] > 10 and rows["motor/state"]["rate_hz"] > 20
    refused = [_topics(address, stranger, robot_keys)]  # never authorized
    proc = _operator(address, former, robot_keys, 1.0)  # authorized, then revoked
    out, err = proc.communicate(timeout=30)
    refused.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    for result in refused:
        assert result.returncode == 5, result.stderr
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert len(lines) == 1 and "refused this operator's key" in lines[0]
        assert "rover keys authorize" in lines[0]
    proc = _operator(address, laptop, robot_keys, 1.5, "--plain")  # no CURVE at all
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["received"] == 0
    # not one of their commands reached the control node's input (the authorized laptop's
    # session may still hand back its controls meanwhile: that one names it, and may keep the
    # motors armed at zero throttle for stale_ms); the outputs are read first, so a hand-back
    # that armed them is already in what the subscriber drains
    outputs = emu.outputs
    late = reached.drain()
    assert {c.operator for c in late} <= {"remote laptop"}
    assert outputs.throttle == 0.0  # nothing moved
    assert not outputs.armed or late, "armed by nobody the robot authorized"


def test_authorized_operator_drives_and_a_revoked_key_stops_at_once(robot, keys):
    address, emu = robot
    robot_keys, laptop, _, _ = keys
    proc = _operator(address, laptop, robot_keys, 20.0)
    try:
        emu.wait_outputs(lambda o: o.armed and o.throttle > 0.3, timeout_s=20)
        second = _operator(address, laptop, robot_keys, 1.5)  # another operator meanwhile
        out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        assert json.loads(out)["role"] == "viewer"  # the view, not the controls
        robot_keys.revoke("laptop")
        emu.wait_outputs(lambda o: o.throttle == 0.0, timeout_s=2)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 5, err
    assert "revoked this operator's key" in out


def _lines_until(proc, needle: str, timeout_s: float) -> str:
    found = threading.Event()
    seen: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            seen.append(line)
            if needle in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout_s), f"no {needle!r} in {seen}"
    return "".join(seen)


def test_laptop_window_shows_both_eyes_drives_with_keys_and_a_cut_link_stops(
    robot, keys, bus_cfg, xvfb
):
    address, emu = robot
    robot_keys, laptop, _, _ = keys
    camera = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)  # the robot's camera node, in short
    eye = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    env = {**os.environ, "DISPLAY": xvfb, "SDL_AUDIODRIVER": "dummy"}
    env.pop("SDL_VIDEODRIVER", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rover.cli", "teleop", "--connect", address]
        + ["--keys", str(laptop.root), "--robot-key", str(robot_keys.root / "robot.key")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )

    def xdotool(*args: str) -> None:
        subprocess.run(["xdotool", *args], env=env, capture_output=True, timeout=10)

    try:
        stop_frames = threading.Event()

        def frames() -> None:
            while not stop_frames.is_set():
                camera.publish(m.StereoImage(left=eye, right=eye))
                stop_frames.wait(1 / 30)  # the camera's frame period

        threading.Thread(target=frames, daemon=True).start()
        _lines_until(proc, "live view: first images (160x120)", 30)
        # no window manager: X gives the keyboard to the window under the pointer
        xdotool("mousemove", "100", "100")
        xdotool("keydown", "Up")  # holding a drive key is the deadman
        emu.wait_outputs(lambda o: o.armed and o.throttle > 0.2, timeout_s=10)
        xdotool("keyup", "Up")
        emu.wait_outputs(lambda o: o.throttle == 0.0, timeout_s=5)
        xdotool("keydown", "Up")
        emu.wait_outputs(lambda o: o.armed and o.throttle > 0.2, timeout_s=10)
        proc.kill()  # the link cut, key still held: no goodbye, not one more packet
        # the robot stops by itself (how fast after stale_ms: `rover bench faults`)
        emu.wait_outputs(lambda o: o.throttle == 0.0, timeout_s=5)
        xdotool("keyup", "Up")
    finally:
        stop_frames.set()
        proc.kill()
        camera.close()


def test_the_operators_hud_shows_the_recorder_paused_by_the_record_key(bus_cfg, tmp_path):
    import argparse

    from rover.nodes.remote import RemoteNode
    from rover.nodes.remote_teleop import _recording_word

    args = argparse.Namespace(
        listen=None, console=None, keys=None, preview_hz=15.0, jpeg_quality=70,
        recording=True, disk=str(tmp_path),
    )  # fmt: skip
    node = RemoteNode(args, bus_cfg, stale_ms=200)
    status = bus.Publisher(topics.RECORDER_STATUS, bus_cfg)
    try:
        deadline = time.monotonic() + 10
        while not node.health.recording_paused:  # the recorder says PAUSED until it is heard
            assert time.monotonic() < deadline, "the remote node never heard the recorder"
            status.publish(m.RecorderStatus(paused=True))
            for sub in bus.wait_any(node.subs, 50):
                node.dispatch(sub)
        health = node.health.snapshot(time.monotonic_ns(), operators=1, driver="")
        assert health.recording and health.recording_paused
        assert _recording_word(health) == "PAUSED"
        assert _recording_word(replace(health, recording_paused=False)) == "REC"
        assert _recording_word(replace(health, recording=False)) == ""
    finally:
        status.close()
        for sub in node.subs:
            sub.close()
        node.pub.close()
