"""Fault handling with real node processes, a real pty and the firmware emulator."""

import os
import shutil
import signal
import time

import pytest

from drivers.emulator import PtyEmulator
from rover import bus, topics
from rover import messages as m
from rover.manager import NODES, Manager
from rover.runspec import Run

CONTROL_ONLY = tuple(n for n in NODES if n.name == "control")


def _manager(bus_cfg, port: str) -> Manager:
    opts = Run(mode="teleop", bus=bus_cfg, overrides=(f"motor.port={port}",))
    return Manager(opts, nodes=CONTROL_ONLY, stop_timeout_s=3.0)


def _wait(predicate, timeout_s: float, what: str, tick=lambda: None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tick()
        value = predicate()
        if value:
            return value
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def emulator():
    with PtyEmulator() as emu:
        yield emu


def test_control_zeroes_throttle_when_teleop_goes_stale(bus_cfg, emulator):
    mgr = _manager(bus_cfg, emulator.device_path)
    mgr.start()
    try:
        pub = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
        cmds = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=1000)
        teleop = m.TeleopCommand(steering=0.2, throttle=0.6, deadman=True)
        # drive at 50 Hz until the motors follow, then fall silent
        next_t = time.monotonic()

        def drive():
            nonlocal next_t
            if time.monotonic() >= next_t:
                pub.publish(teleop)
                next_t += 0.02
            return None

        _wait(lambda: emulator.outputs.throttle > 0.5, 10, "motors to follow teleop", drive)
        last = pub.publish(teleop)
        cmds.drain()
        stale = _wait(
            lambda: next((c for c in cmds.drain() if c.stale), None), 10, "a stale command"
        )
        # never before stale_ms (how fast after it: `rover bench faults`)
        assert (stale.stamp_ns - last.stamp_ns) / 1e6 >= 200
        assert stale.throttle == 0.0
        emulator.wait_outputs(lambda o: o.throttle == 0.0, timeout_s=5)  # the motors stop
    finally:
        mgr.stop()
        mgr.clean_up()
        shutil.rmtree(mgr.log_dir, ignore_errors=True)  # kept for a failed node


def test_manager_restarts_a_killed_node(bus_cfg, emulator):
    mgr = _manager(bus_cfg, emulator.device_path)
    mgr.start()
    try:
        cmds = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg)
        _wait(lambda: cmds.receive(50), 10, "control to publish")
        old_pid = mgr.pids()["control"]
        os.kill(old_pid, signal.SIGKILL)
        # how fast: `rover bench faults` (the deadlines here only end a hung test)
        _wait(lambda: mgr.pids()["control"] != old_pid, 30, "a restart", mgr.poll)
        assert "control killed by SIGKILL" in mgr.failures[0]
        cmds.drain()
        _wait(lambda: cmds.receive(50), 30, "control to publish again", mgr.poll)
    finally:
        mgr.stop()
        mgr.clean_up()
        shutil.rmtree(mgr.log_dir, ignore_errors=True)  # kept for a failed node
    assert all(n.proc.poll() is not None for n in mgr.nodes)


def test_wrong_serial_port_stops_the_stack_with_one_clear_line(bus_cfg):
    mgr = _manager(bus_cfg, "/dev/ttyUSB-missing")
    sockets = bus_cfg.ipc_root()
    reason = mgr.run(timeout_s=20)
    assert "(node exited with code 3)" in reason
    assert "serial port /dev/ttyUSB-missing does not exist" in reason
    assert mgr.kept_logs == mgr.log_dir  # a node failed: its log stays for the user
    assert "Traceback" not in mgr.nodes[0].log_path.read_text()
    assert not os.path.exists(sockets)  # the stopped stack's sockets do not
    shutil.rmtree(mgr.kept_logs)
