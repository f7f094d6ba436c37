"""The replayed nodes: real node processes in their own namespace, and the sockets around them.

The nodes are the manager's own modules (`rover.nodes.steering`, `.traversability`,
`.control`), started by the `Manager` from a table of their own. Around them the replay binds
the topics they read (camera/stereo, teleop/command, and perception/steering when steering is
not replayed) as XPUB sockets, which tell when each node's subscription arrived, and subscribes
to every answer. The control node drives the firmware emulator on a pty, as on the robot.

Start-up order closes every slow-joiner gap before frame 0: the perception nodes first (their
subscriptions seen on the camera socket, their answer sockets connected to ours), then control
(its subscription seen, and a few of its 50 Hz commands heard, so its own sockets to the
perception nodes are connected). No frame is sent before that: a node's state (the online
traversability head, control's slew ramps) sees exactly the recorded frames, once each.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import zmq

from drivers.emulator import PtyEmulator
from rover import bus, topics
from rover import messages as m
from rover.errors import DeviceError
from rover.manager import Manager, NodeSpec
from rover.ready import mark_ready, ready_path
from rover.runspec import Run
from rover.topics import BusConfig

NODE_MODULES = {
    "steering": "rover.nodes.steering",
    "traversability": "rover.nodes.traversability",
    "control": "rover.nodes.control",
}
ANSWER_TOPICS = {
    "steering": topics.PERCEPTION_STEERING,
    "traversability": topics.PERCEPTION_TRAVERSABILITY,
    "control": topics.CONTROL_COMMAND,
}
START_TIMEOUT_S = 90.0  # torch and the models load in every node at once: slow on 2 cores
CONTROL_TICKS_READY = 3  # control commands heard before frame 0 (its own sockets connected)
_PERCEPTION_UP = "replay-perception"  # marker: control may start
MAP_WAIT_MS = 10_000.0  # control waits this long for frame N's map (the replay's own timeout
# counts a late answer as a miss)


@dataclass(frozen=True)
class ReplayNodes:
    """Which nodes run, with which model and configuration overrides."""

    nodes: tuple[str, ...]
    model: str | None
    overrides: tuple[str, ...] = ()
    config: str | None = None


class XPub:
    """A bound publisher that counts its subscribers' subscriptions (ZeroMQ XPUB)."""

    def __init__(self, topic: topics.Topic, bus_cfg: BusConfig):
        self.topic = topic
        self.sock = bus.context().socket(zmq.XPUB)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.sock.setsockopt(zmq.SNDHWM, 1000)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(bus_cfg.endpoint(topic))
        self.subscribers = 0

    def count_subscriptions(self) -> int:
        while self.sock.poll(0):
            if self.sock.recv()[:1] == b"\x01":
                self.subscribers += 1
        return self.subscribers

    def send(self, msg: m.Message) -> None:
        """Send with the message's own header (the recorded seq, stamp and frame_seq)."""
        self.sock.send_multipart(m.encode(self.topic.wire_name, msg), copy=False)

    def close(self) -> None:
        self.sock.close(linger=0)


class ReplayStack:
    """Starts the replayed nodes, and hands out their answers; a context manager."""

    def __init__(self, spec: ReplayNodes, lockstep_maps: bool):
        self.spec = spec
        self.bus_cfg = BusConfig(namespace=f"replay{os.getpid()}x{uuid.uuid4().hex[:6]}")
        self.emulator = PtyEmulator(link_path=os.path.join(self.bus_cfg.ipc_root(), "mcu")).start()
        self.frames = XPub(topics.CAMERA_STEREO, self.bus_cfg)
        self.teleop = XPub(topics.TELEOP_COMMAND, self.bus_cfg)
        self.estimates = (
            None if "steering" in spec.nodes else XPub(topics.PERCEPTION_STEERING, self.bus_cfg)
        )
        self.answers = {
            n: bus.Subscriber(ANSWER_TOPICS[n], self.bus_cfg, newest=False, hwm=100_000)
            for n in spec.nodes
        }
        # our answer sockets' handshakes: a node's publisher is bound and connected to us
        self._monitors = {
            n: sub.socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            for n, sub in self.answers.items()
        }
        self.manager = Manager.holding(
            self.bus_cfg,
            "rover replay",
            self._run,
            nodes=self._table(lockstep_maps),
            device_timeout_s=START_TIMEOUT_S,
        )
        self._connected: set[str] = set()

    def _run(self) -> Run:
        port = self.emulator.device_path
        return Run(
            mode="drive",
            bus=self.bus_cfg,
            model=self.spec.model,
            traversability="traversability" in self.spec.nodes,
            lockstep=True,
            config=self.spec.config,
            overrides=(*self.spec.overrides, f"motor.port={port}"),
        )

    def _table(self, lockstep_maps: bool) -> tuple[NodeSpec, ...]:
        """The replayed nodes' rows: control in lock-step, its maps waited for as long as the
        replay's own timeout (a map slower than control's default wait must not move the
        answer), and started once the perception nodes are connected."""
        marker = str(ready_path(self.bus_cfg, _PERCEPTION_UP))
        control = ["--lockstep"]
        if lockstep_maps:
            control += ["--lockstep-maps", "--map-wait-ms", str(MAP_WAIT_MS)]
        args = {
            "steering": ["--model", self.spec.model] if self.spec.model else [],
            "control": control,
        }
        return tuple(
            NodeSpec(
                name,
                NODE_MODULES[name],
                lambda r, n=name: n in self.spec.nodes,
                args=lambda r, n=name: args.get(n, []),
                wait_for=(lambda r: marker) if name == "control" else (lambda r: None),
            )
            for name in NODE_MODULES
        )

    def __enter__(self) -> ReplayStack:
        self.manager.start()
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_nodes(self) -> None:
        """Raise DeviceError when a node died (a restarted node would have lost its state)."""
        ended = self.manager.poll()
        if ended or self.manager.failures:
            raise DeviceError(
                f"replay stopped: {ended or self.manager.failures[0]} "
                f"(node logs: {self.manager.log_dir})"
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        perception = [n for n in self.spec.nodes if n != "control"]
        ticks = 0
        while True:
            self.check_nodes()
            self._note_handshakes()
            up = self.frames.count_subscriptions() >= len(perception) and all(
                n in self._connected for n in perception
            )
            if up and "control" in self.spec.nodes:
                mark_ready(self.bus_cfg, _PERCEPTION_UP)  # the manager starts control now
                ticks += len(self.answers["control"].drain())
                up = (
                    self.teleop.count_subscriptions() >= 1
                    and (self.estimates is None or self.estimates.count_subscriptions() >= 1)
                    and ticks >= CONTROL_TICKS_READY
                )
            if up:
                return
            if time.monotonic() > deadline:
                missing = [n for n in self.spec.nodes if n not in self._connected]
                raise DeviceError(
                    f"replay: the nodes never became ready within {START_TIMEOUT_S:.0f} s "
                    f"(not connected: {missing or 'control'}; node logs: {self.manager.log_dir})"
                )
            time.sleep(0.02)  # start-up poll, not synchronisation: each pass re-checks

    def _note_handshakes(self) -> None:
        for name, monitor in self._monitors.items():
            while monitor.poll(0):
                monitor.recv_multipart()
                self._connected.add(name)

    def close(self) -> None:
        self.manager.stop()
        for name, sub in self.answers.items():
            sub.socket.disable_monitor()
            self._monitors[name].close(linger=0)
            sub.close()
        for pub in (self.frames, self.teleop, self.estimates):
            if pub is not None:
                pub.close()
        self.emulator.stop()
        self.manager.clean_up()
