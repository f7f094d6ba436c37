"""Remote node: what an operator off the robot sees, and what it may send.

    python -m rover.nodes.remote --namespace NS [--listen HOST:PORT] [--console [HOST:]PORT]

``--listen``: an authenticated ZeroMQ link (CURVE, keys from `rover keys`; a ZAP authenticator
in this process): PORT publishes the camera preview (JPEG, wall-clock stamped), motor state,
control commands, steering estimates, traversability maps and stack health; PORT+1 (ROUTER)
takes operators' commands. Nothing else of the bus leaves ipc. ``--console``: the web console.
Both feed one `OperatorGate`; the commands it lets through go out on teleop/remote, which the
control node arbitrates with the local teleop/command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time

import zmq
import zmq.asyncio

from rover import bus, topics
from rover import messages as m
from rover import remote as r
from rover.console.hub import ConsoleHub
from rover.curve import curve_server
from rover.errors import ConfigError
from rover.node import node_argparser, node_config, run_main
from rover.operators import OperatorGate, OperatorInput

log = logging.getLogger("rover.remote")
TOKEN_ENV = "ROVER_CONSOLE_TOKEN"
LINK_LOST_MS = 1000.0  # an operator silent this long lost its link (the console says so too)


class Bridge:
    """The CURVE link: one PUB for what operators see, one ROUTER for what they send."""

    def __init__(self, host: str, port: int, keys_dir: str | None):
        ctx = bus.context()
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 50)
        self.pub.setsockopt(zmq.LINGER, 0)
        curve_server(self.pub, keys_dir)
        self.cmd = ctx.socket(zmq.ROUTER)
        self.cmd.setsockopt(zmq.LINGER, 0)
        self.allowed = curve_server(self.cmd, keys_dir)
        for sock, p in ((self.pub, port), (self.cmd, port + r.COMMAND_PORT_OFFSET)):
            try:
                sock.bind(f"tcp://{host}:{p}")
            except zmq.ZMQError as exc:
                raise ConfigError(
                    f"--listen {host}:{port}: cannot listen on port {p} ({exc}): pick another "
                    "PORT (the link uses PORT and PORT+1)"
                ) from None
        self.heard: dict[bytes, float] = {}  # identity -> when last heard (monotonic s)
        self.roles: dict[bytes, bytes] = {}

    def send(self, topic: topics.Topic, msg: m.Message) -> None:
        with contextlib.suppress(zmq.Again):  # a slow operator's queue is full: it gets the next
            self.pub.send_multipart(m.encode(topic.wire_name, msg), copy=False, flags=zmq.NOBLOCK)

    def handle(self, hub: ConsoleHub) -> None:
        """Every operator message waiting now."""
        while True:
            try:
                frames = self.cmd.recv_multipart(copy=False, flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) >= 2:
                self._one(hub, frames)
        self._tell_roles(hub)

    def _one(self, hub: ConsoleHub, frames: list) -> None:
        identity, kind = frames[0].bytes, frames[1].bytes
        sid = "op-" + identity.hex()
        name = self.allowed.name(frames[1].get("User-Id") or "")
        if name is None:  # revoked since it connected: not one more command
            self._drop(hub, identity)
            self._reply(identity, r.ROLE, b"refused")
            return
        if identity not in self.heard:
            hub.gate.join(sid, name)
            log.info("operator %s connected (%s)", name, hub.gate.role(sid))
        self.heard[identity] = time.monotonic()
        if kind == r.PING and len(frames) > 2:
            self._reply(identity, r.PING, frames[2].bytes)
        elif kind == r.RELEASE:
            hub.send_command(hub.gate.release(sid))
        elif kind == r.REARM:
            hub.gate.rearm(sid)
        elif kind == topics.TELEOP_REMOTE.wire_name:
            try:
                cmd = m.decode(frames[1:], m.TeleopCommand)
            except m.DecodeError:
                return
            hub.send_command(hub.gate.command(sid, _operator_input(cmd), time.monotonic_ns()))

    def _reply(self, identity: bytes, kind: bytes, body: bytes) -> None:
        with contextlib.suppress(zmq.Again, zmq.ZMQError):  # that operator is gone
            self.cmd.send_multipart([identity, kind, body], flags=zmq.NOBLOCK)

    def _drop(self, hub: ConsoleHub, identity: bytes) -> None:
        if self.heard.pop(identity, None) is not None:
            hub.leave("op-" + identity.hex())
        self.roles.pop(identity, None)

    def _tell_roles(self, hub: ConsoleHub) -> None:
        for identity in list(self.heard):
            role = hub.gate.role("op-" + identity.hex()).encode()
            if self.roles.get(identity) != role:
                self.roles[identity] = role
                self._reply(identity, r.ROLE, role)

    def expire(self, hub: ConsoleHub) -> None:
        """Sessions silent for SESSION_TIMEOUT_S have left (the control node stopped the
        motors long before: stale_ms)."""
        now = time.monotonic()
        for identity, heard in list(self.heard.items()):
            if now - heard > r.SESSION_TIMEOUT_S:
                log.info("operator session %s timed out", identity.hex())
                self._drop(hub, identity)
        self._tell_roles(hub)

    def close(self) -> None:
        self.pub.close(linger=0)
        self.cmd.close(linger=0)


def _operator_input(cmd: m.TeleopCommand) -> OperatorInput:
    return OperatorInput(
        steering=cmd.steering,
        throttle=cmd.throttle,
        deadman=cmd.deadman,
        autopilot=cmd.autopilot,
        estop=cmd.estop,
    )


class RemoteNode:
    """Bus -> preview, state and health for operators; operators' commands -> teleop/remote."""

    def __init__(self, args, bus_cfg: topics.BusConfig, stale_ms: float):
        self.args = args
        self.pub = bus.Publisher(topics.TELEOP_REMOTE, bus_cfg)
        gate = OperatorGate(resume_gap_ms=max(LINK_LOST_MS, stale_ms))
        self.hub = ConsoleHub(gate, self.pub.publish)
        self.camera = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg)
        self.handlers = {
            topics.MOTOR_STATE: self.on_motor,
            topics.CONTROL_COMMAND: self.on_control,
            topics.PERCEPTION_STEERING: self.on_steering,
            topics.PERCEPTION_TRAVERSABILITY: self.on_trav,
        }
        self.recorder = bus.Subscriber(topics.RECORDER_STATUS, bus_cfg)  # REC or PAUSED
        self.subs = [self.camera, self.recorder]
        self.subs += [bus.Subscriber(t, bus_cfg) for t in self.handlers]
        self.preview = r.PreviewEncoder(args.preview_hz, args.jpeg_quality)
        self.health = r.HealthTracker(args.disk or ".", recording=args.recording)
        self.trav: m.TraversabilityMap | None = None
        self.bridge = None
        if args.listen:
            host, port = r.parse_address(args.listen)
            self.bridge = Bridge(host, port, args.keys)
            robot_key = self.bridge.allowed.store.public("robot").decode()
            print(
                f"listening for operators: tcp://{host}:{port} (CURVE, robot key {robot_key})",
                flush=True,
            )

    def on_frame(self, frame: m.StereoImage, now: int) -> None:
        self.health.on_frame(frame, self.camera.stats.skipped, now)
        preview = self.preview.offer(frame, now)
        if preview is None:
            return
        if self.trav is not None:
            self.hub.overlay = r.overlay_jpeg(self.trav.cost)
        self.hub.on_preview(preview)
        if self.bridge:
            self.bridge.send(topics.REMOTE_PREVIEW, preview)
            if self.trav is not None:
                self.bridge.send(topics.PERCEPTION_TRAVERSABILITY, self.trav)

    def on_motor(self, msg: m.MotorState) -> None:
        self.hub.state.update(
            motor_steering=msg.steering,
            motor_throttle=msg.throttle,
            armed=msg.armed,
            estop=msg.estop,
            motor_connected=msg.connected,
        )

    def on_control(self, msg: m.ControlCommand) -> None:
        source = msg.source
        self.hub.state.update(
            cmd_steering=msg.steering,
            cmd_throttle=msg.throttle,
            source=source,
            stale=msg.stale,
            autopilot=not source.startswith(("teleop", "none", "remote")),
        )

    def on_steering(self, msg: m.SteeringEstimate) -> None:
        self.hub.state.update(estimate_steering=msg.steering)

    def on_trav(self, msg: m.TraversabilityMap) -> None:
        self.trav = msg

    def dispatch(self, sub: bus.Subscriber) -> None:
        msg = sub.receive()
        if msg is None:
            return
        now = time.monotonic_ns()
        if sub is self.camera:
            self.on_frame(msg, now)
            return
        if sub is self.recorder:
            self.health.recording_paused = msg.paused
            return
        kind = {
            topics.MOTOR_STATE: "motor",
            topics.CONTROL_COMMAND: "control",
            topics.PERCEPTION_STEERING: "steering",
            topics.PERCEPTION_TRAVERSABILITY: "trav",
        }[sub.topic]
        self.health.on_message(kind, msg, now)
        self.handlers[sub.topic](msg)
        if self.bridge and sub.topic is not topics.PERCEPTION_TRAVERSABILITY:
            self.bridge.send(sub.topic, msg)

    async def pump(self, stop: asyncio.Event) -> None:
        """Hand every arriving message to its handler, on this event loop."""
        poller = zmq.asyncio.Poller()
        shadows = {}
        for sub in self.subs:
            shadow = zmq.asyncio.Socket.from_socket(sub.socket)
            shadows[shadow] = sub
            poller.register(shadow, zmq.POLLIN)
        if self.bridge:
            cmd_shadow = zmq.asyncio.Socket.from_socket(self.bridge.cmd)
            poller.register(cmd_shadow, zmq.POLLIN)
        while not stop.is_set():
            for sock, _ in await poller.poll(timeout=200):
                if sock in shadows:
                    self.dispatch(shadows[sock])
                else:
                    self.bridge.handle(self.hub)

    async def report(self, stop: asyncio.Event) -> None:
        """Stack health twice a second; expire silent bridge sessions."""
        while not stop.is_set():
            gate = self.hub.gate
            self.hub.health = self.health.snapshot(
                time.monotonic_ns(), len(gate.sessions), gate.driver_name()
            )
            if self.bridge:
                self.bridge.send(topics.REMOTE_HEALTH, self.hub.health)
                self.bridge.expire(self.hub)
            await asyncio.sleep(1 / topics.REMOTE_HEALTH.rate_hz)  # the report's period


async def serve(args, bus_cfg: topics.BusConfig, stale_ms: float) -> None:
    node = RemoteNode(args, bus_cfg, stale_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    if args.console:
        from rover.console.server import start_console
        from rover.keys import KeyStore
        from rover.tls import fingerprint

        host, port = r.parse_address(args.console)
        tls = None if r.is_loopback(host) else KeyStore(args.keys).tls_files((host,))
        token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(18)
        try:
            runner, url = await start_console(node.hub, host, port, token, tls)
        except OSError as exc:
            raise ConfigError(
                f"--console {host}:{port}: cannot serve there ({exc.strerror}): pick another "
                "port, e.g. --console 8790"
            ) from None
        print(f"console: {url}", flush=True)
        if tls:
            log.info("console certificate %s, SHA-256 %s", tls[0], fingerprint(tls[0]))
    try:
        await asyncio.gather(node.pump(stop), node.report(stop))
    finally:
        node.hub.publish(m.TeleopCommand(estop=node.hub.gate.estop_latched))  # let go
        if runner is not None:
            await runner.cleanup()
        if node.bridge:
            node.bridge.close()


def main() -> None:
    parser = node_argparser(__doc__)
    parser.add_argument("--listen", metavar="HOST:PORT", help="CURVE link for operators")
    parser.add_argument("--console", metavar="[HOST:]PORT", help="serve the web console")
    parser.add_argument("--keys", metavar="DIR", help="key folder (rover keys)")
    parser.add_argument("--preview-hz", type=float, default=15.0, help="most preview frames/s")
    parser.add_argument("--jpeg-quality", type=int, default=70)
    parser.add_argument("--recording", action="store_true", help="the stack records")
    parser.add_argument("--disk", help="folder whose free space the HUD shows")
    args = parser.parse_args()
    cfg, bus_cfg = node_config(args)
    asyncio.run(serve(args, bus_cfg, cfg.control.stale_ms))


if __name__ == "__main__":
    run_main("remote", main)
