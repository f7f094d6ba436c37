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
