"""Publisher and subscriber over ZeroMQ, with liveness and drop accounting.

A `Publisher` binds its topic's endpoint and stamps the header (`seq` gapless per publisher).
A `Subscriber` connects and either takes the newest message (drains the socket and keeps the
last: a slow consumer adds no queueing latency) or every message (the recorder), counting what
it skipped from seq gaps and dropping malformed messages without dying.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace

import zmq

from rover import messages as m
from rover.curve import curve_client, curve_server
from rover.topics import BusConfig, Topic

_context: zmq.Context | None = None


def context() -> zmq.Context:
    """The process's ZeroMQ context (recreated after fork)."""
    global _context
    if _context is None or _context.closed:
        _context = zmq.Context()
    return _context


class Publisher:
    """Publishes one topic; fills in `seq`, `stamp_ns` when zero, and a frame's `frame_seq`."""

    def __init__(self, topic: Topic, bus: BusConfig | None = None, hwm: int = 100):
        self.topic = topic
        bus = bus or BusConfig()
        self.endpoint = bus.endpoint(topic)
        self._sock = context().socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        if bus.curve:
            curve_server(self._sock, bus.keys_dir or None)
        self._sock.bind(self.endpoint)
        self.seq = 0

    def publish(self, msg: m.Message) -> m.Message:
        """Send `msg` with the next seq; returns the message as sent."""
        if not isinstance(msg, self.topic.msg_type):
            raise TypeError(f"{self.topic.name} carries {self.topic.msg_type.__name__}")
        frame_seq = self.seq if self.topic.frames else msg.frame_seq
        msg = replace(
            msg, seq=self.seq, stamp_ns=msg.stamp_ns or time.monotonic_ns(), frame_seq=frame_seq
        )
        self.seq += 1
        self._sock.send_multipart(m.encode(self.topic.wire_name, msg), copy=False)
        return msg

    def close(self, linger_ms: int = 0) -> None:
        """Close; `linger_ms` lets what was just published still go out (a last event)."""
        self._sock.close(linger=linger_ms)


@dataclass
class SubStats:
    """What a subscriber saw: messages arrived and handed out, skipped (seq gaps between those
    handed out: lost in transit, or drained over in newest mode), malformed, bytes."""

    arrived: int = 0
    received: int = 0
    skipped: int = 0
    malformed: int = 0
    bytes: int = 0


class Subscriber:
    """Receives one topic. `newest=True` conflates to the latest message (perception);
    `newest=False` keeps every message up to a high-water mark (the recorder)."""

    def __init__(
        self,
        topic: Topic,
        bus: BusConfig | None = None,
        newest: bool = True,
        hwm: int | None = None,
        window_s: float = 2.0,
    ):
        self.topic = topic
        self.newest = newest
        self.stats = SubStats()
        self.last: m.Message | None = None
        self.last_recv_ns = 0
        self._last_seq: int | None = None
        self._arrivals: deque[int] = deque()
        self._window_ns = int(window_s * 1e9)
        self._sock = context().socket(zmq.SUB)
        default_hwm = 4 if newest else int(topic.rate_hz * 5)
        self._sock.setsockopt(zmq.RCVHWM, hwm or default_hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        bus = bus or BusConfig()
        if bus.curve:  # the robot's own nodes connect with the robot's pair
            curve_client(self._sock, bus.keys_dir or None)
        self._sock.connect(bus.endpoint(topic))

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def poll(self, timeout_ms: float = 0) -> bool:
        """True when a message is waiting (waits up to `timeout_ms`)."""
        return bool(self._sock.poll(timeout_ms, zmq.POLLIN))

    def receive(self, timeout_ms: float = 0) -> m.Message | None:
        """The newest message (newest mode) or the next one (every-message mode), else None."""
        if not self.poll(timeout_ms):
            return None
        result = None
        while True:
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            msg = self._accept(parts)
            if msg is not None:
                result = msg
                if not self.newest:
                    break
        if result is not None:
            # seq gaps between the messages handed out: lost in transit or drained over
            if self._last_seq is not None and result.seq > self._last_seq + 1:
                self.stats.skipped += result.seq - self._last_seq - 1
            self._last_seq = result.seq
            self.stats.received += 1
            self.last = result
        return result

    def drain(self) -> list[m.Message]:
        """Every message waiting now, in order (every-message mode)."""
        out = []
        while (msg := self.receive()) is not None:
            out.append(msg)
        return out

    def _accept(self, parts: list) -> m.Message | None:
        try:
            if parts[0].bytes != self.topic.wire_name:
                raise m.DecodeError("foreign topic")
            msg = m.decode(parts, self.topic.msg_type)
        except m.DecodeError:
            self.stats.malformed += 1
            return None
        now = time.monotonic_ns()
        self.stats.arrived += 1
        self.stats.bytes += sum(len(p) for p in parts)
        self.last_recv_ns = now
        self._arrivals.append(now)
        while self._arrivals and now - self._arrivals[0] > self._window_ns:
            self._arrivals.popleft()
        return msg

    def age_s(self, now_ns: int | None = None) -> float:
        """Seconds since the last message arrived (inf before the first)."""
        if not self.last_recv_ns:
            return float("inf")
        return ((now_ns or time.monotonic_ns()) - self.last_recv_ns) / 1e9

    def rate_hz(self) -> float:
        """Measured arrival rate over the recent window."""
        if len(self._arrivals) < 2:
            return 0.0
        span = (self._arrivals[-1] - self._arrivals[0]) / 1e9
        return (len(self._arrivals) - 1) / span if span > 0 else 0.0

    def alive(self, max_age_s: float | None = None) -> bool:
        """Heard from within `max_age_s` (default: the registry's staleness rule)."""
        return self.age_s() <= (max_age_s if max_age_s is not None else self.topic.stale_after_s())

    def rate_ok(self, tolerance: float = 0.8) -> bool:
        """Alive and arriving at no less than `tolerance` of the registry's nominal rate."""
        return self.alive() and self.rate_hz() >= tolerance * self.topic.rate_hz

    def close(self) -> None:
        self._sock.close(linger=0)


def wait_any(subscribers: list[Subscriber], timeout_ms: float) -> list[Subscriber]:
    """Block until any subscriber has a message (or the timeout); return those ready."""
    poller = zmq.Poller()
    for sub in subscribers:
        poller.register(sub.socket, zmq.POLLIN)
    ready = dict(poller.poll(timeout_ms))
    return [s for s in subscribers if s.socket in ready]
