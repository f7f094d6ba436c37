"""Take-overs: the spans where the human drove after the autopilot had (HG-DAgger's labels).

The control node names who drives in every command it sends (`control/command` `source`):
"teleop" while the human's command is in force, the autopilot's name ("cnn:steering",
"expert", ...) while it drives, and "<who>:stale" when that input went quiet. A take-over
starts when the source becomes "teleop" after the autopilot drove (not merely was switched on
with nothing to say: "autopilot:stale") in the session (from the
start in `rover drive`, whose config sets `control.autopilot_without_teleop`) and ends at the
first command that is not "teleop" (the autopilot back, or the human's input gone stale).

While recording, the recorder writes a mark on `/rover/takeover` at every start and end
(crash-safe, visible in Foxglove); a session recorded before marks existed is read from its
control commands with the same rule. Spans are in log time (the recorder's wall clock), the
one clock that frames and commands share in a lock-step simulator run too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

HUMAN = "teleop"


@dataclass(frozen=True)
class TakeoverSpan:
    """One take-over: from its first to just after its last human command, in log time."""

    start_log_ns: int
    end_log_ns: int

    @property
    def seconds(self) -> float:
        return (self.end_log_ns - self.start_log_ns) / 1e9

    def covers(self, log_ns: int) -> bool:
        return self.start_log_ns <= log_ns < self.end_log_ns


class TakeoverTracker:
    """Follows control commands' sources; says when a take-over starts or ends."""

    def __init__(self, autopilot_from_start: bool = False):
        self.autopilot_seen = autopilot_from_start
        self.active = False

    def update(self, source: str) -> bool | None:
        """The new state (True: a take-over started, False: it ended), or None: unchanged."""
        if source not in (HUMAN, "none", "") and not source.endswith(":stale"):
            self.autopilot_seen = True  # an autopilot that answered, not one gone quiet
        now = source == HUMAN and self.autopilot_seen
        if now == self.active:
            return None
        self.active = now
        return now


def drive_mode(robot_config: dict) -> bool:
    """True for a session recorded by `rover drive` (the autopilot drives from the start)."""
    return bool(robot_config.get("control", {}).get("autopilot_without_teleop", False))


def mark_json(active: bool, source: str, frame_seq: int) -> bytes:
    """The `/rover/takeover` message written at a start (active) or an end."""
    return json.dumps({"takeover": active, "source": source, "frame_seq": frame_seq}).encode()


def mark_schema() -> bytes:
    """JSON Schema of the take-over marks."""
    return json.dumps(
        {
            "title": "rover.Takeover",
            "description": "true: the human took over from the autopilot; false: handed back.",
            "type": "object",
            "properties": {
                "takeover": {"type": "boolean"},
                "source": {"type": "string"},
                "frame_seq": {"type": "integer"},
            },
        }
    ).encode()


class SpanBuilder:
    """Turns (log time, started/ended) events into spans."""

    def __init__(self) -> None:
        self.spans: list[TakeoverSpan] = []
        self._start: int | None = None
        self.last_log_ns = 0

    def event(self, log_ns: int, active: bool) -> None:
        if active and self._start is None:
            self._start = log_ns
        elif not active and self._start is not None:
            self.spans.append(TakeoverSpan(self._start, log_ns))
            self._start = None

    def result(self) -> list[TakeoverSpan]:
        """The spans so far; one still open ends at the last message seen."""
        if self._start is None:
            return list(self.spans)
        return [*self.spans, TakeoverSpan(self._start, max(self.last_log_ns, self._start))]
