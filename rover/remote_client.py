"""The operator's end of a robot's `--listen` link: CURVE client, handshake checked.

`RemoteLink` connects a SUB to ROBOT:PORT (what the robot shows) and a DEALER to PORT+1 (what
the operator sends), each after its CURVE handshake succeeded (a refused key is one line, see
`rover.curve.wait_handshake`). Only wall-clock stamps and round trips timed on this machine's
own clock are compared here: the robot's monotonic stamps mean nothing on a laptop.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import zmq

from rover import bus, topics
from rover import messages as m
from rover import remote as r
from rover.curve import curve_client, operator_keys, wait_handshake
from rover.errors import LinkError


@dataclass
class TopicStats:
    """What arrived of one topic over the link."""

    messages: int = 0
    bytes: int = 0
    drops: int = 0
    malformed: int = 0
    first_s: float = 0.0
    last_s: float = 0.0
    last_seq: int | None = None


class RemoteLink:
    """An operator's connection to one robot."""

    def __init__(
        self,
        address: str,
        keys_dir: str | None = None,
        robot_key: str | None = None,
        timeout_s: float = 5.0,
    ):
        host, port = r.parse_address(address)
        self.where = f"{host}:{port}"
        pair, server = operator_keys(keys_dir, robot_key)
        ctx = bus.context()
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 200)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        curve_client(self.sub, pair=pair, server_public=server)
        self.sub.connect(f"tcp://{host}:{port}")
        wait_handshake(self.sub, self.where, pair, timeout_s)
        self.cmd = ctx.socket(zmq.DEALER)
        self.cmd.setsockopt(zmq.LINGER, 0)
        self.cmd.setsockopt(zmq.SNDHWM, 10)
        curve_client(self.cmd, pair=pair, server_public=server)
        self.cmd.connect(f"tcp://{host}:{port + r.COMMAND_PORT_OFFSET}")
        wait_handshake(self.cmd, f"{host}:{port + r.COMMAND_PORT_OFFSET}", pair, timeout_s)
        self.stats: dict[str, TopicStats] = {}
        self.latest: dict[str, m.Message] = {}
        self.role = "connecting"
        self.rtt_ms = 0.0
        self.cmd.send_multipart([r.HELLO, b""])

    def poll(self, timeout_ms: float = 0) -> list[tuple[topics.Topic, m.Message]]:
        """Everything that arrived (waiting up to `timeout_ms` for the first)."""
        out: list[tuple[topics.Topic, m.Message]] = []
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.cmd, zmq.POLLIN)
        if not poller.poll(timeout_ms):
            return out
        while True:
            try:
                parts = self.sub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            got = self._accept(parts)
            if got is not None:
                out.append(got)
        self._replies()
        return out

    def _accept(self, parts: list) -> tuple[topics.Topic, m.Message] | None:
        name = parts[0].bytes.decode(errors="replace")
        stats = self.stats.setdefault(name, TopicStats())
        topic = topics.BY_NAME.get(name)
        try:
            if topic is None:
                raise m.DecodeError("unknown topic")
            msg = m.decode(parts, topic.msg_type)
        except m.DecodeError:
            stats.malformed += 1
            return None
        now = time.monotonic()
        stats.first_s = stats.first_s or now
        stats.last_s = now
        stats.messages += 1
        stats.bytes += sum(len(p) for p in parts)
        if stats.last_seq is not None and msg.seq > stats.last_seq + 1:
            stats.drops += msg.seq - stats.last_seq - 1
        stats.last_seq = msg.seq
        self.latest[name] = msg
        return topic, msg

    def _replies(self) -> None:
        while True:
            try:
                kind, body = self.cmd.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if kind == r.ROLE:
                if body == b"refused":
                    raise LinkError(
                        f"the robot at {self.where} revoked this operator's key: ask for "
                        "`rover keys authorize` again"
                    )
                self.role = body.decode()
            elif kind == r.PING:
                self.rtt_ms = (time.monotonic_ns() - int(body)) / 1e6  # this machine's clock

    def send(self, cmd: m.TeleopCommand) -> None:
        """An operator command (the robot's gate decides what it moves)."""
        with contextlib.suppress(zmq.Again):  # backed up: the robot calls this input stale
            self.cmd.send_multipart(
                m.encode(topics.TELEOP_REMOTE.wire_name, cmd), flags=zmq.NOBLOCK, copy=False
            )

    def ping(self) -> None:
        self.cmd.send_multipart([r.PING, str(time.monotonic_ns()).encode()])

    def release(self) -> None:
        self.cmd.send_multipart([r.RELEASE, b""])

    def rearm(self) -> None:
        self.cmd.send_multipart([r.REARM, b""])

    def close(self) -> None:
        self.sub.close(linger=0)
        self.cmd.close(linger=0)


def measure_remote(address: str, keys_dir: str | None, robot_key: str | None, seconds: float):
    """`rover topics --connect`: one row per topic that the robot's link carried."""
    link = RemoteLink(address, keys_dir, robot_key)
    try:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            link.poll(left * 1000)
    finally:
        link.close()
    rows = []
    for topic in topics.REMOTE_TOPICS:
        s = link.stats.get(topic.name, TopicStats())
        span = s.last_s - s.first_s
        rows.append(
            {
                "topic": topic.name,
                "type": topic.msg_type.__name__,
                "nominal_hz": topic.rate_hz,
                "rate_hz": round((s.messages - 1) / span, 2) if span > 0 else 0.0,
                "messages": s.messages,
                "bandwidth_kbps": round(s.bytes * 8 / 1000 / seconds, 1),
                "drops": s.drops,
                "malformed": s.malformed,
                "alive": s.messages > 0,
            }
        )
    return rows
