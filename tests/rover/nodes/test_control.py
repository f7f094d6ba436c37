"""Control node, in this process with real sockets and the firmware emulator on a real pty."""

import time

import numpy as np
import pytest

from drivers.emulator import PtyEmulator
from rover import bus, topics
from rover import messages as m
from rover.config import load_config
from rover.nodes.control import MAP_WAIT_MS, ControlNode


@pytest.fixture
def node(bus_cfg):
    with PtyEmulator() as emu:
        overrides = [f"motor.port={emu.device_path}", "control.autopilot_without_teleop=true"]
        control = ControlNode(load_config(None, overrides), bus_cfg, lockstep_maps=True)
        try:
            yield control
        finally:
            control.close()


def _map(frame_seq: int) -> m.TraversabilityMap:
    arcs = np.array([[-0.5, 0.0, 0.5], [8.0, 8.0, 8.0]], np.float32)  # all clear
    return m.TraversabilityMap(
        frame_seq=frame_seq, cost=np.zeros((60, 80), np.uint8), arcs=arcs, plane_fitted=True
    )


def _commands_while(node, commands, seconds: float, until=lambda c: False) -> list:
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        node.spin_once()
        got += commands.drain()
        if any(until(c) for c in got):
            break
    return got


def test_lockstep_answers_a_frame_only_once_its_map_is_in(node, bus_cfg):
    estimates = bus.Publisher(topics.PERCEPTION_STEERING, bus_cfg)
    maps = bus.Publisher(topics.PERCEPTION_TRAVERSABILITY, bus_cfg)
    commands = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=1000)
    try:
        # connect (slow joiner): frame 0 with its map, until the node answers it
        deadline = time.monotonic() + 10
        answered = False
        while not answered and time.monotonic() < deadline:
            maps.publish(_map(0))
            estimates.publish(m.SteeringEstimate(frame_seq=0, steering=0.0, throttle=0.3))
            got = _commands_while(node, commands, 0.05, lambda c: c.frame_seq == 0)
            answered = any(c.frame_seq == 0 for c in got)
        assert answered, "the control node never answered frame 0"

        estimates.publish(m.SteeringEstimate(frame_seq=5, steering=0.5, throttle=0.3))
        early = _commands_while(node, commands, MAP_WAIT_MS / 3000)
        assert early and all(c.frame_seq == 0 for c in early)  # still repeating frame 0's

        maps.publish(_map(5))
        late = _commands_while(node, commands, 1.0, lambda c: c.frame_seq == 5)
        assert any(c.frame_seq == 5 for c in late), "frame 5 never answered after its map"
    finally:
        estimates.close()
        maps.close()
        commands.close()


def test_perturbs_the_drivers_steering_only_while_the_deadman_is_held(bus_cfg):
    """[perturb]: the motors get the teleop steering plus a perturbation, the command says how
    much of it was added, and releasing the deadman ends it at once."""
    with PtyEmulator() as emu:
        overrides = [f"motor.port={emu.device_path}", "perturb.rate_hz=20", "perturb.size=0.5"]
        node = ControlNode(load_config(None, overrides), bus_cfg)
        teleop = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
        commands = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=1000)
        try:
            got: list = []
            for i in range(400):  # 4 s of 100 Hz teleop, deadman held for the first half
                held = i < 200
                teleop.publish(m.TeleopCommand(
                    stamp_ns=i * 10_000_000, steering=0.2, throttle=0.4 if held else 0.0,
                    deadman=held))  # fmt: skip
                node.spin_once()
                got += [(held, c) for c in commands.drain() if c.source == "teleop"]
            # past the slew ramp from 0 to the driver's 0.2
            perturbed = [c for held, c in got[10:] if held and c.perturbation != 0]
            assert len(perturbed) > 20, "no perturbation while the deadman was held"
            assert all(abs(c.perturbation) <= 0.5 + 1e-9 for _, c in got)
            # what went to the motors less what the node added is the driver's command
            assert all(abs(c.steering - c.perturbation - 0.2) < 1e-9 for c in perturbed)
            released = [c for held, c in got if not held][20:]  # after the release reached it
            assert released and all(c.perturbation == 0 for c in released)
        finally:
            teleop.close()
            commands.close()
            node.close()


def test_lockstep_silence_stops_the_motors_but_changes_no_later_answer(bus_cfg):
    """A stall longer than the silence limit (5 x stale_ms of wall time) stops the motors; the
    next frame's answer is the one the frames call for, as if no time had passed."""
    with PtyEmulator() as emu:
        overrides = [
            f"motor.port={emu.device_path}",
            "control.autopilot_without_teleop=true",
            "control.stale_ms=20",  # silent after 100 ms
        ]
        node = ControlNode(load_config(None, overrides), bus_cfg, lockstep=True)
        estimates = bus.Publisher(topics.PERCEPTION_STEERING, bus_cfg)
        commands = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=1000)
        period_ns = 33_333_333  # frames 1/30 s apart: the throttle ramps 0.1 a frame

        def answer(frame: int) -> m.ControlCommand:
            stamp = (1 + frame) * period_ns  # the frame clock (a zero stamp is the bus's to fill)
            est = m.SteeringEstimate(frame_seq=frame, stamp_ns=stamp, throttle=0.8)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # slow joiner: re-send until answered
                estimates.publish(est)
                got = _commands_while(node, commands, 0.05, lambda c: c.frame_seq == frame)
                if any(c.frame_seq == frame for c in got):
                    return next(c for c in got if c.frame_seq == frame)
            raise AssertionError(f"frame {frame} never answered")

        try:
            assert [round(answer(k).throttle, 3) for k in range(3)] == [0.0, 0.1, 0.2]
            stall = _commands_while(node, commands, 2.0, lambda c: c.stale)
            assert stall and stall[-1].stale and stall[-1].throttle == 0.0  # the motors stop
            assert round(answer(3).throttle, 3) == 0.3  # not 0.1: the stall reset nothing
        finally:
            estimates.close()
            commands.close()
            node.close()
