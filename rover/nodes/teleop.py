"""Teleop node: the operator's input → teleop/command at 50 Hz and at once on each input
event (a key press does not wait for the next tick), naming the input in use.

Which input (drivers/gamepad.py): ``--script F`` replays a scripted twin; with a display (and
no ``--headless``) a small keyboard window that also reads gamepads; else gamepads alone. In
``--mode drive`` it starts on the autopilot and any drive key or stick takes over. Each command
names the input that can stop the robot (``operator``; empty while none is connected: the
control node then does not arm) and whether the operator paused the recording (the record key;
the HUD shows what ``recorder/status`` reports). A gamepad plugged in or out is a health
event. Closing the window ends the run.
"""

from __future__ import annotations

import time

from drivers.gamepad import OperatorInput, has_display, open_input
from rover import bus, topics
from rover.node import (
    HealthPublisher,
    NodeFinished,
    Shutdown,
    node_argparser,
    node_config,
    run_main,
)

RATE_HZ = 50.0


def input_kind(headless: bool, script: str | None) -> str:
    """Which operator input this node opens."""
    if script is not None:
        return "script"
    if headless or not has_display():
        return "gamepad"
    return "window"


class TeleopNode:
    """Reads one operator input and publishes what it asks for."""

    def __init__(self, operator: OperatorInput, bus_cfg: topics.BusConfig, autopilot: bool):
        self.input = operator
        self.input.latches.autopilot = autopilot  # drive mode: the human takes over at will
        self.pub = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
        self.health = HealthPublisher(topics.HEALTH_TELEOP, bus_cfg, "teleop")
        self.recorder = bus.Subscriber(topics.RECORDER_STATUS, bus_cfg)  # silent: no --record
        self.was_connected = False
        self.next_tick = time.monotonic() + 1.0 / RATE_HZ

    def step(self) -> None:
        """Read the input once, publish the command and any change of the input's presence."""
        self.recorder.receive()
        self.input.latches.follow_recorder(self.recorder.last if self.recorder.alive() else None)
        now_ns = time.monotonic_ns()
        state = self.input.read(now_ns / 1e9)
        connected = self.input.connected
        name = self.input.name
        self.pub.publish(state.command(0, now_ns, operator=name if connected else ""))
        if connected:
            self.health.set("input", False, f"{name} connected again")
            self.was_connected = True
        elif self.was_connected:  # never connected: the control node says what to connect
            self.health.set("input", True, f"{name} disconnected: throttle zeroed")
        self.health.tick()

    def wait_for_next(self) -> None:
        """Until the next heartbeat (every period, never a burst after a stall), or sooner
        when the operator does something: that goes out at once."""
        while True:
            left = self.next_tick - time.monotonic()
            if left <= 0:
                self.next_tick = max(self.next_tick + 1.0 / RATE_HZ, time.monotonic())
                return
            if self.input.wait(left):
                return

    def close(self) -> None:
        self.input.close()
        self.recorder.close()
        self.health.close()
        self.pub.close()


def main() -> None:
    parser = node_argparser(__doc__)
    parser.add_argument("--headless", action="store_true", help="gamepad only, no window")
    parser.add_argument("--mode", default="teleop", choices=("teleop", "drive"))
    parser.add_argument("--script", metavar="JSON", help="replay these timed inputs")
    args = parser.parse_args()
    cfg, bus_cfg = node_config(args)
    stop = Shutdown()
    kind = input_kind(args.headless, args.script)
    node = TeleopNode(open_input(kind, cfg.teleop, args.script), bus_cfg, args.mode == "drive")
    try:
        while not stop.requested:
            node.step()
            if node.input.closed:
                raise NodeFinished("window closed: stopping")
            node.wait_for_next()
    finally:
        node.close()


if __name__ == "__main__":
    run_main("teleop", main)
