"""Lock-step replay: a recording's inputs through the real nodes, one frame at a time.

For each recorded stereo frame N (in recording order): the teleop commands logged before it
go to control, frame N goes out with its recorded header (seq, frame_seq, capture stamp), and
the replay waits until every replayed node answered frame N (the answer's `frame_seq` is N)
before frame N+1 leaves; an answer later than `timeout_ms` counts as a miss. Control answers a
frame only while the autopilot is in charge (during a take-over it follows the human, whose
commands answer no frame), so then only perception is waited for.

Why this is deterministic: every node's state advances only with the inputs (the slew ramps
with the capture stamps, the online traversability head with the frames, once each) and each
node sees every frame after its predecessor's answer. Control runs with `--lockstep`: its 50 Hz
repeats re-send the last command instead of re-judging it at whatever wall time they fall on,
and with traversability it holds frame N's estimate and map until both are in. Where wall time
still enters, the diff leaves it out (latencies, control's send stamp and drive counter), or it
takes a stall: control re-judges (and zeroes throttle) after 5 x `stale_ms` (1 s) without any
input, and the guard crawls when frame N's estimate came more than its `stale_ms` (300 ms)
after frame N's map. A gap of over 1 s between two frames is counted (`stalls`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from rover import messages as m
from rover.config import load_config
from rover.recording import format as fmt
from rover.recording.reader import Session, decode_jpeg, walk_session
from rover.replay.answers import read_answers
from rover.replay.output import ReplayOutput
from rover.replay.stack import ANSWER_TOPICS, ReplayNodes, ReplayStack

REPLAYED_SECTIONS = ("control", "guard", "steering", "traversability")
# lock-step control re-judges its input after 5 x stale_ms (1 s by default) of silence: a
# longer gap between two frames may move its next answer
STALL_MS = 1000.0


@dataclass
class ReplayResult:
    """What a replay did: frames sent, answers per node, misses, timing."""

    out: Path | None
    frames: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)
    frame_ms: list[float] = field(default_factory=list)  # frame sent -> every answer in
    node_ms: list[float] = field(default_factory=list)  # the nodes' own processing, summed
    stalls: int = 0  # gaps between frames longer than STALL_MS
    wall_s: float = 0.0


def config_overrides(robot_config: dict) -> list[str]:
    """The recorded robot config's node sections as `--set` items (nested tables dotted)."""
    items: list[str] = []

    def walk(prefix: str, table: dict) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}.{key}", value)
            else:
                items.append(f"{prefix}.{key}={json.dumps(value)}")

    for section in REPLAYED_SECTIONS:
        if isinstance(robot_config.get(section), dict):
            walk(section, robot_config[section])
    return items


def _teleops(session: Session) -> list[tuple[int, m.TeleopCommand]]:
    """(log time, command) of every recorded teleop command, in file order."""
    out = []
    for channel, msg in walk_session(session.segments):
        if channel == fmt.TELEOP_TOPIC:
            data = json.loads(msg.data)
            names = m.TeleopCommand.__dataclass_fields__
            out.append((msg.log_time, m.TeleopCommand(**{k: data[k] for k in data if k in names})))
    return out


class LockstepReplay:
    """Feeds one session through a ReplayStack, writing the answers to a ReplayOutput."""

    def __init__(
        self,
        session: Session,
        stack: ReplayStack,
        output: ReplayOutput | None,
        timeout_ms: float,
        autopilot_without_teleop: bool,
        frames_out: bool = True,
    ):
        self.session = session
        self.stack = stack
        self.output = output
        self.timeout_ms = timeout_ms
        self.autopilot_default = autopilot_without_teleop
        self.frames_out = frames_out
        nodes = stack.spec.nodes
        self.result = ReplayResult(
            out=output.path if output else None,
            answers=dict.fromkeys(nodes, 0),
            misses=dict.fromkeys(nodes, 0),
        )
        self.recorded_estimates = (
            read_answers(session.path, ["steering"]).get("steering", {})
            if stack.estimates is not None
            else {}
        )
        self.poller = zmq.Poller()
        for sub in stack.answers.values():
            self.poller.register(sub.socket, zmq.POLLIN)

    def run(self, limit: int | None = None) -> ReplayResult:
        """Replay every frame (or the first `limit`); returns what happened."""
        frames = self.session.frames()
        teleops = _teleops(self.session)
        k, last_teleop = 0, None
        started = previous = time.monotonic()
        samples = self.session.samples(honour_trims=False, decode=False)
        for sample, pair in _prefetched(samples):
            if limit is not None and self.result.frames >= limit:
                break
            info = frames[sample.index]
            while k < len(teleops) and teleops[k][0] <= info.log_time_ns:
                last_teleop = teleops[k][1]
                self.stack.teleop.send(last_teleop)
                k += 1
            autopilot = last_teleop.autopilot if last_teleop else self.autopilot_default
            now = time.monotonic()
            self.result.stalls += (now - previous) * 1e3 > STALL_MS and self.result.frames > 0
            self._one_frame(sample, pair, info.log_time_ns, autopilot)
            previous = time.monotonic()
            self.stack.check_nodes()
        self.result.wall_s = time.monotonic() - started
        return self.result

    def _one_frame(self, sample, pair, log_ns: int, autopilot: bool) -> None:
        seq = sample.frame_seq
        left, right = pair
        stamp = sample.stamp_ns
        frame = m.StereoImage(
            seq=seq,
            stamp_ns=stamp,
            frame_seq=seq,
            left=left,
            right=right,
            left_stamp_ns=stamp,
            right_stamp_ns=stamp,
        )
        if self.output is not None and self.frames_out:
            self.output.frame(sample.left, sample.right, seq, stamp, log_ns)
        sent = time.monotonic()
        self.stack.frames.send(frame)
        expected = set(self.stack.spec.nodes)
        if self.stack.estimates is not None:
            estimate = self.recorded_estimates.get(seq)
            if estimate is not None:
                names = m.SteeringEstimate.__dataclass_fields__
                self.stack.estimates.send(
                    m.SteeringEstimate(**{k: v for k, v in estimate.items() if k in names})
                )
            elif "control" in expected:
                expected.discard("control")  # nothing to answer: no estimate was recorded
        if not autopilot:
            expected.discard("control")  # the human drives: control answers no frame
        got = self._collect(seq, expected, sent)
        self.result.frames += 1
        for node in expected - set(got):
            self.result.misses[node] += 1
        if got.keys() >= expected:
            self.result.frame_ms.append((time.monotonic() - sent) * 1e3)
        self.result.node_ms.append(sum(getattr(a, "latency_ms", 0.0) for a in got.values()))
        for node, answer in got.items():
            self.result.answers[node] += 1
            if self.output is not None:
                self.output.answer(ANSWER_TOPICS[node], answer, log_ns)

    def _collect(self, seq: int, expected: set[str], sent: float) -> dict[str, m.Message]:
        got: dict[str, m.Message] = {}
        deadline = sent + self.timeout_ms / 1e3
        while not got.keys() >= expected:
            left_ms = (deadline - time.monotonic()) * 1e3
            if left_ms <= 0:
                break
            if not self.poller.poll(left_ms):
                continue
            for node, sub in self.stack.answers.items():
                for msg in sub.drain():
                    if msg.frame_seq == seq and node not in got:
                        got[node] = msg
        return got


def _decode_pair(sample) -> tuple:
    return decode_jpeg(sample.left), decode_jpeg(sample.right)


def _prefetched(samples: Iterator) -> Iterator[tuple]:
    """(sample, decoded pair), the next pair decoded on a thread while the nodes work on this
    one (OpenCV releases the GIL): JPEG decoding stays off the lock-step's critical path."""
    with ThreadPoolExecutor(1, thread_name_prefix="replay-decode") as pool:
        current = next(samples, None)
        pending = pool.submit(_decode_pair, current) if current is not None else None
        while current is not None:
            following = next(samples, None)
            ahead = pool.submit(_decode_pair, following) if following is not None else None
            yield current, pending.result()
            current, pending = following, ahead


def replay_session(
    session_path: str | Path,
    spec: ReplayNodes,
    out_dir: Path | None,
    timeout_ms: float = 2000.0,
    frames_out: bool = True,
    limit: int | None = None,
) -> ReplayResult:
    """Replay a recorded session through `spec`'s nodes; write the outputs under `out_dir`."""
    session = Session(session_path)
    recorded = session.metadata.get("robot_config", {})
    spec = ReplayNodes(
        spec.nodes,
        spec.model,
        (*config_overrides(recorded), *spec.overrides),
        spec.config,
    )
    control_cfg = load_config(spec.config, list(spec.overrides)).control
    meta = {
        "source": str(Path(session_path).resolve().name),
        "nodes": ",".join(spec.nodes),
        "model": Path(spec.model).name if spec.model else "",
        "model_sha256": _sha256(spec.model) if spec.model else "",
        "overrides": json.dumps(list(spec.overrides)),
    }
    output = ReplayOutput(out_dir, recorded, meta) if out_dir is not None else None
    lockstep_maps = "traversability" in spec.nodes and "control" in spec.nodes
    try:
        with ReplayStack(spec, lockstep_maps) as stack:
            replay = LockstepReplay(
                session,
                stack,
                output,
                timeout_ms,
                control_cfg.autopilot_without_teleop,
                frames_out,
            )
            result = replay.run(limit)
    finally:
        if output is not None:
            output.close()
    return result


def _sha256(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


__all__ = ["ReplayNodes", "ReplayResult", "replay_session"]
