"""Control node: arbitrated command → DRIVE over serial at a fixed rate; STATE → motor/state.

A new input is forwarded at once (lowest latency) and the DRIVE is repeated at `rate_hz`
whether or not inputs change, so the firmware's watchdog trips only when something is wrong.
On shutdown it sends a last zero-throttle, disarmed DRIVE.

`--lockstep-maps` (the stack passes it for a lock-step simulator run with the traversability
node): an estimate for frame N waits until the map of frame N arrived (or `MAP_WAIT_MS`
passed), so the guard judges the same frame as the CNN and a run is reproducible. The map itself is held
until its frame's estimate is answered: a 50 Hz repeat that fell between map N and estimate N
would otherwise brake with map N first, and where it fell (wall time) would move the answer.
In real time the node never waits: the newest map is the best there is.

`--lockstep` (implied by `--lockstep-maps`; `rover replay` passes it): inputs come in lock-step,
so their age is the frames' business, not the wall clock's. The 50 Hz repeat re-sends the last
command instead of re-judging it at the wall time it fell on, and an answer released after
waiting for its map is judged as of its estimate's arrival. A run then depends on its inputs
only. An input silent for `LOCKSTEP_STALE_FACTOR` x `stale_ms` still stops the motors.
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

MAP_WAIT_MS = 300.0  # lock-step: longest wait for the map of an estimate's frame
LOCKSTEP_STALE_FACTOR = 5.0  # lock-step: the repeats re-judge (and stop) after this x stale_ms


class ControlNode:
    """Wires the Controller to the bus and the motor link."""

    def __init__(
        self,
        cfg,
        bus_cfg: topics.BusConfig,
        lockstep_maps: bool = False,
        lockstep: bool = False,
        map_wait_ms: float = MAP_WAIT_MS,
    ):
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
        self.lockstep_maps = lockstep_maps
        self.lockstep = lockstep or lockstep_maps
        self.map_wait_ms = map_wait_ms
        self.last_out: ControlOutput | None = None
        self.last_input_ns = 0
        self.lockstep_stale_ns = int(cfg.control.stale_ms * LOCKSTEP_STALE_FACTOR * 1e6)
        self.map_frame = m.NO_FRAME  # frame_seq of the newest traversability map
        self.pending: tuple[m.SteeringEstimate, int] | None = None  # waiting for its map
        self.held_map: tuple[m.TraversabilityMap, int] | None = None  # lock-step: for its estimate

    def send(self, out: ControlOutput) -> None:
        self.last_out = out
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
        if self.pending is not None:
            timeout_ms = min(timeout_ms, 1.0)
        for sub in bus.wait_any([self.teleop, self.autopilot, self.trav], timeout_ms):
            msg = sub.receive()
            if msg is None:
                continue
            now = self.last_input_ns = time.monotonic_ns()
            if sub is self.trav:
                self.held_map = (msg, now)
                if not self.lockstep_maps:
                    self._apply_map()
                self.map_frame = msg.frame_seq
            elif sub is self.teleop:
                self.controller.on_teleop(msg, now)
                self.send(self.controller.output(now))
            elif self.lockstep_maps and msg.frame_seq > self.map_frame:
                self.pending = (msg, now)
            else:
                self._apply_map()
                self.controller.on_estimate(msg, now)
                self.send(self.controller.output(now))
        if self.controller.estimate is None:
            self._apply_map()  # no autopilot in this run (teleop): no estimate to wait for
        self._release_pending()
        if self.rate.remaining_s() <= 0:
            self.send(self._repeat(time.monotonic_ns()))
            self.rate.keep_time()
        self.forward_states()

    def _release_pending(self) -> None:
        """Lock-step: answer the held estimate once its frame's map is in (or waited enough)."""
        if self.pending is None:
            return
        est, received = self.pending
        now = time.monotonic_ns()
        if self.map_frame >= est.frame_seq or (now - received) / 1e6 >= self.map_wait_ms:
            self.pending = None
            self._apply_map()
            self.controller.on_estimate(est, received)
            self.send(self.controller.output(received if self.lockstep else now))

    def _repeat(self, now_ns: int) -> ControlOutput:
        """The 50 Hz repeat: re-judged now, or in lock-step the last command again."""
        quiet = now_ns - self.last_input_ns > self.lockstep_stale_ns
        waiting = self.pending is not None  # an input is in, held for its map
        if self.lockstep and self.last_out is not None and (waiting or not quiet):
            return self.last_out
        return self.controller.output(now_ns)

    def _apply_map(self) -> None:
        """Hand the newest map to the guard (lock-step: just before its frame's estimate)."""
        if self.held_map is not None:
            msg, received = self.held_map
            self.held_map = None
            self.controller.on_traversability(msg.polar(), received)

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
    parser = node_argparser(__doc__)
    parser.add_argument(
        "--lockstep-maps", action="store_true", help="answer frame N only with its map in"
    )
    parser.add_argument(
        "--map-wait-ms",
        type=float,
        default=MAP_WAIT_MS,
        help="lock-step: longest wait for a frame's map (default: %(default)s)",
    )
    parser.add_argument(
        "--lockstep", action="store_true", help="inputs in lock-step: repeats re-send, not re-judge"
    )
    args = parser.parse_args()
    cfg, bus_cfg = node_config(args)
    stop = Shutdown()
    node = ControlNode(
        cfg, bus_cfg, args.lockstep_maps, lockstep=args.lockstep, map_wait_ms=args.map_wait_ms
    )
    try:
        while not stop.requested:
            node.spin_once()
    finally:
        node.close()


if __name__ == "__main__":
    run_main("control", main)
