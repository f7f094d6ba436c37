"""Faults a node notices (a lost motor controller, a silent camera, no operator), as events.

Plain logic, no bus: a node keeps one ``Faults`` and sets each fault on or off as it checks;
a change becomes a ``HealthEvent`` (one line for the user, a count for `rover topics` and the
recording). The node publishes the events on its health topic (``rover.node.HealthPublisher``)
and the manager prints each one once.
"""

from __future__ import annotations

from rover.messages import HealthEvent


class Faults:
    """The faults of one node: which are active, how often each happened, the events."""

    def __init__(self, node: str):
        self.node = node
        self.event = 0
        self.latest: dict[str, HealthEvent] = {}  # fault -> its latest event
        self.counts: dict[str, int] = {}
        self.since_ns: dict[str, int] = {}  # fault -> when it became active

    def active(self, fault: str) -> bool:
        """True while `fault` is on."""
        latest = self.latest.get(fault)
        return latest is not None and latest.active

    def set(self, fault: str, active: bool, text: str, now_ns: int) -> HealthEvent | None:
        """Turn `fault` on or off; returns the new event on a change, else None.

        `text` is the line the user reads, without the node's name (it is prefixed)."""
        if self.active(fault) == active:
            return None
        if not active and fault not in self.latest:
            return None  # never happened: nothing recovers
        self.event += 1
        if active:
            self.counts[fault] = self.counts.get(fault, 0) + 1
            self.since_ns[fault] = now_ns
        event = HealthEvent(
            stamp_ns=now_ns,
            node=self.node,
            fault=fault,
            active=active,
            count=self.counts[fault],
            event=self.event,
            text=f"{self.node}: {text}",
        )
        self.latest[fault] = event
        return event

    def active_for_s(self, fault: str, now_ns: int) -> float:
        """Seconds `fault` has been on (0 when off)."""
        if not self.active(fault):
            return 0.0
        return (now_ns - self.since_ns[fault]) / 1e9

    def state(self) -> list[HealthEvent]:
        """The latest event of every fault seen, oldest first (what a repeat publishes)."""
        return sorted(self.latest.values(), key=lambda e: e.event)


class HealthLog:
    """The listener's side: which events are new (to print once), totals per fault."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}  # node -> highest event number taken
        self.faults: dict[tuple[str, str], HealthEvent] = {}  # (node, fault) -> latest

    def take(self, event: HealthEvent) -> bool:
        """Record `event`; True when it is new (not a repeat of one already taken)."""
        key = (event.node, event.fault)
        known = self.faults.get(key)
        if known is None or event.event >= known.event:
            self.faults[key] = event
        if event.event <= self.seen.get(event.node, 0):
            return False
        self.seen[event.node] = event.event
        return True

    def summary(self) -> list[dict]:
        """One dict per fault seen: node, fault, count, active, last line."""
        return [
            {
                "node": e.node,
                "fault": e.fault,
                "count": e.count,
                "active": e.active,
                "text": e.text,
            }
            for (_, _), e in sorted(self.faults.items())
        ]
