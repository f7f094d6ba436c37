"""Control node: arbitrated command → DRIVE over serial at a fixed rate; STATE → motor/state.

A new input is forwarded at once (lowest latency) and the DRIVE is repeated at `rate_hz`
whether or not inputs change, so the firmware's watchdog trips only when something is wrong.
On shutdown it sends a last zero-throttle, disarmed DRIVE.
"""

from __future__ import annotations

import time

from drivers.protocol import DriveCommand
from drivers.serial_link import SerialMotorLink
from perception.traversability.closed_loop import GuardedController
from rover import bus, topics
from rover import messages as m
from rover.control import ControlOutput
from rover.node import RateKeeper, Shutdown, node_argparser, node_config, run_main


class ControlNode:
    """Wires the Controller to the bus and the motor link."""

    def __init__(self, cfg, bus_cfg: topics.BusConfig):
        # the traversability guard acts only while perception/traversability is published
        self.controller = GuardedController(cfg.control, cfg.guard)
        self.link = SerialMotorLink(cfg.motor)
        self.teleop = bus.Subscriber(topics.TELEOP_COMMAND, bus_cfg)
        self.autopilot = bus.Subscriber(topics.PERCEPTION_STEERING, bus_cfg)
        self.trav = bus.Subscriber(topics.PERCEPTION_TRAVERSABILITY, bus_cfg)
        self.command_pub = bus.Publisher(topics.CONTROL_COMMAND, bus_cfg)
        self.state_pub = bus.Publisher(topics.MOTOR_STATE, bus_cfg)
        self.rate = RateKeeper(cfg.control.rate_hz)
        self.drive_seq = 0

    def send(self, out: ControlOutput) -> None:
        self.drive_seq = (self.drive_seq + 1) & 0xFFFF
        self.link.send(
            DriveCommand(
                seq=self.drive_seq,
                steering=out.steering,
                throttle=out.throttle,
                arm=out.arm,
                estop=out.estop,
            )
        )
        self.command_pub.publish(
            m.ControlCommand(
                frame_seq=out.frame_seq,
                steering=out.steering,
                throttle=out.throttle,
                drive_seq=self.drive_seq,
                source=out.source,
                stale=out.stale,
                estop=out.estop,
            )
        )

    def forward_states(self) -> None:
        health = self.link.health()
        for state in self.link.poll():
            self.state_pub.publish(
                m.MotorState(
                    steering=state.steering,
                    throttle=state.throttle,
                    armed=state.armed,
                    estop=state.estop,
                    watchdog_tripped=state.watchdog_tripped,
                    connected=health.connected,
                    drive_seq_echo=state.seq,
                    rtt_ms=health.rtt_p50_ms or 0.0,
                    reconnects=health.reconnects,
                    bad_frames=health.bad_frames,
                )
            )

    def spin_once(self) -> None:
        """Wait for input until the next tick; forward new inputs at once, then keep the rate."""
        timeout_ms = max(0.0, self.rate.remaining_s() * 1000)
        for sub in bus.wait_any([self.teleop, self.autopilot, self.trav], timeout_ms):
            msg = sub.receive()
            if msg is None:
                continue
            now = time.monotonic_ns()
            if sub is self.trav:
                self.controller.on_traversability(msg.polar(), now)
                continue
            if sub is self.teleop:
                self.controller.on_teleop(msg, now)
            else:
                self.controller.on_estimate(msg, now)
            self.send(self.controller.output(now))
        if self.rate.remaining_s() <= 0:
            self.send(self.controller.output(time.monotonic_ns()))
            self.rate.keep_time()
        self.forward_states()

    def close(self) -> None:
        self.link.send(
            DriveCommand(
                seq=(self.drive_seq + 1) & 0xFFFF,
                steering=0.0,
                throttle=0.0,
                arm=False,
                estop=False,
            )
        )
        self.link.close()


def main() -> None:
    args = node_argparser(__doc__).parse_args()
    cfg, bus_cfg = node_config(args)
    stop = Shutdown()
    node = ControlNode(cfg, bus_cfg)
    try:
        while not stop.requested:
            node.spin_once()
    finally:
        node.close()


if __name__ == "__main__":
    run_main("control", main)
