"""What a node answers, as it lives in a session: the answer channels and how to read them.

A replay's outputs are a rover session (MCAP) holding, per camera frame, each replayed node's
answer to that frame: `/perception/steering`, `/perception/traversability` (JSON scalars and
arcs) with its cost map on `/perception/traversability/cost` (lossless PNG, so Foxglove shows
it), and `/control/command`. A live recording holds the first two of those channels as well
(the traversability map is not recorded live). "The answer to frame N" is the first message on
the channel whose `frame_seq` is N: the control node repeats its last command at its own rate,
and only the first one was computed from frame N.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

from rover import topics
from rover.recording import format as fmt
from rover.recording.reader import Session, walk_session

STEERING_CHANNEL = fmt.channel_topic(topics.PERCEPTION_STEERING)
CONTROL_CHANNEL = fmt.channel_topic(topics.CONTROL_COMMAND)
TRAV_CHANNEL = fmt.channel_topic(topics.PERCEPTION_TRAVERSABILITY)
COST_CHANNEL = fmt.PNG_IMAGE_TOPICS[0]
META_REPLAY = "rover.replay"  # metadata of a replay's output session: source, nodes, model


@dataclass(frozen=True)
class AnswerSpec:
    """One node's answers: its channel, the fields compared, the fields left out and why."""

    node: str
    channel: str
    fields: tuple[str, ...]
    ignored: dict[str, str]


ANSWERS: tuple[AnswerSpec, ...] = (
    AnswerSpec(
        "steering",
        STEERING_CHANNEL,
        ("steering", "throttle", "source", "stamp_ns"),
        {"latency_ms": "wall-clock processing time", "seq": "the publisher's own count"},
    ),
    AnswerSpec(
        "traversability",
        TRAV_CHANNEL,
        (
            "arcs_steering",
            "arcs_free_m",
            "cost",
            "plane_height_m",
            "plane_fitted",
            "online_updates",
            "model",
            "stamp_ns",
        ),
        {"latency_ms": "wall-clock processing time", "seq": "the publisher's own count"},
    ),
    AnswerSpec(
        "control",
        CONTROL_CHANNEL,
        ("steering", "throttle", "source", "stale", "estop"),
        {
            "stamp_ns": "the control node stamps its command with the wall time it sent it",
            "drive_seq": "counts the 50 Hz repeats too, which follow the wall clock",
            "seq": "the publisher's own count",
        },
    ),
)
BY_NODE: dict[str, AnswerSpec] = {a.node: a for a in ANSWERS}
BY_CHANNEL: dict[str, AnswerSpec] = {a.channel: a for a in ANSWERS}


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 image as PNG bytes (lossless)."""
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"PNG encoding failed for a {image.shape} array")
    return png.tobytes()


def read_answers(
    path: str | Path, nodes: Iterable[str] | None = None
) -> dict[str, dict[int, dict]]:
    """node -> frame_seq -> the fields of its first answer to that frame, from a session."""
    wanted = {BY_NODE[n].channel for n in (nodes or BY_NODE)}
    if "traversability" in (nodes or BY_NODE):
        wanted.add(COST_CHANNEL)
    session = Session(path)
    out: dict[str, dict[int, dict]] = {}
    costs: dict[int, np.ndarray] = {}
    for channel, msg in walk_session(session.segments):
        if channel not in wanted:
            continue
        if channel == COST_CHANNEL:
            if msg.sequence not in costs:
                png = CompressedImage.FromString(msg.data).data
                costs[msg.sequence] = cv2.imdecode(
                    np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED
                )
            continue
        data = json.loads(msg.data)
        frame_seq = int(data.get("frame_seq", -1))
        if frame_seq < 0:
            continue  # a command that answers no frame (teleop, or before the first)
        out.setdefault(BY_CHANNEL[channel].node, {}).setdefault(frame_seq, data)
    for frame_seq, answer in out.get("traversability", {}).items():
        if frame_seq in costs:
            answer["cost"] = costs[frame_seq]
    return out


def session_replay_meta(path: str | Path) -> dict[str, str] | None:
    """The `rover.replay` metadata of a replay's output session; None for a live recording."""
    from mcap.records import Message, Metadata

    from rover.recording import segment as seg

    session = Session(path)
    for record in seg.walk(session.segments[0]):
        if isinstance(record, Metadata) and record.name == META_REPLAY:
            return dict(record.metadata)
        if isinstance(record, Message):
            break  # metadata come first in a segment
    return None
