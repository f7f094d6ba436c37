"""A replay's outputs as a rover session: the input frames (optional) and each node's answers.

Written through the recorder's own `SessionWriter`, so every `rover recordings` verb and
Foxglove read it. Every answer to frame N is logged at frame N's original log time: the output
lines up with the source session in Foxglove, and a replay of the same inputs through the same
code writes the same messages.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from mcap_protobuf.schema import register_schema

from rover import messages as m
from rover import topics
from rover.recording import format as fmt
from rover.recording.recorder import TopicCounts
from rover.recording.writer import RecorderConfig, SessionWriter
from rover.replay.answers import COST_CHANNEL, META_REPLAY, TRAV_CHANNEL, encode_png

_TRAV_SCHEMA = {
    "title": "rover.TraversabilityMap",
    "description": "Free distance along each candidate arc, the ground plane, the online head.",
    "type": "object",
    "properties": {
        "arcs_steering": {"type": "array", "items": {"type": "number"}},
        "arcs_free_m": {"type": "array", "items": {"type": "number"}},
        "plane_height_m": {"type": "number"},
        "plane_fitted": {"type": "boolean"},
        "online_updates": {"type": "integer"},
        "model": {"type": "string"},
    },
}


class ReplayOutput:
    """One output session folder: call `frame`, `answer`, then `close`."""

    def __init__(self, out_dir: Path, robot_config: dict, replay_meta: dict[str, str]):
        config = RecorderConfig(segment_s=1e12, flush_s=1e12, fsync=False)
        self.writer = SessionWriter(out_dir, config, robot_config, namespace="replay")
        self.writer.open_segment(0)
        seg = self.writer.segment
        seg.mcap.add_metadata(META_REPLAY, replay_meta)
        schema = seg.mcap.register_schema(
            "rover.TraversabilityMap", "jsonschema", json.dumps(_TRAV_SCHEMA).encode()
        )
        seg.channels[TRAV_CHANNEL] = seg.mcap.register_channel(TRAV_CHANNEL, "json", schema)
        image_schema = register_schema(seg.mcap, CompressedImage)
        seg.channels[COST_CHANNEL] = seg.mcap.register_channel(
            COST_CHANNEL, "protobuf", image_schema
        )
        self.counts = {t.name: TopicCounts() for t in fmt.recorded_topics()}
        self.counts[topics.PERCEPTION_TRAVERSABILITY.name] = TopicCounts()

    @property
    def path(self) -> Path:
        return self.writer.dir

    def frame(
        self, left_jpeg: bytes, right_jpeg: bytes, frame_seq: int, stamp_ns: int, log_ns: int
    ):
        """Copy one input stereo pair (its JPEG bytes, untouched)."""
        seg = self.writer.segment
        for channel, data in ((fmt.LEFT_TOPIC, left_jpeg), (fmt.RIGHT_TOPIC, right_jpeg)):
            pb = CompressedImage(frame_id=channel.split("/")[2], data=data, format="jpeg")
            pb.timestamp.FromNanoseconds(log_ns)
            seg.mcap.add_message(
                seg.channels[channel],
                log_time=log_ns,
                data=pb.SerializeToString(),
                publish_time=stamp_ns,
                sequence=frame_seq & 0xFFFFFFFF,
            )
        seg.frames += 1
        seg.pairs += 1
        seg.first_stamp_ns = seg.first_stamp_ns or stamp_ns
        seg.last_stamp_ns = stamp_ns
        self._count(topics.CAMERA_STEREO)

    def answer(self, topic: topics.Topic, msg: m.Message, log_ns: int) -> None:
        """Write one node's answer to a frame."""
        if topic is topics.PERCEPTION_TRAVERSABILITY:
            self._trav(msg, log_ns)
        else:
            self.writer.write_json(
                fmt.channel_topic(topic), fmt.message_json(msg), log_ns, msg.stamp_ns, msg.seq
            )
        self._count(topic)

    def _trav(self, msg: m.TraversabilityMap, log_ns: int) -> None:
        arcs = np.asarray(msg.arcs, np.float32).reshape(2, -1)
        data = json.loads(fmt.message_json(msg))
        data["arcs_steering"] = arcs[0].tolist()
        data["arcs_free_m"] = arcs[1].tolist()
        self.writer.write_json(
            TRAV_CHANNEL, json.dumps(data).encode(), log_ns, msg.stamp_ns, msg.seq
        )
        seg = self.writer.segment
        cost = np.ascontiguousarray(msg.cost)
        pb = CompressedImage(frame_id="traversability", data=encode_png(cost), format="png")
        pb.timestamp.FromNanoseconds(log_ns)
        seg.mcap.add_message(
            seg.channels[COST_CHANNEL],
            log_time=log_ns,
            data=pb.SerializeToString(),
            publish_time=msg.stamp_ns,
            sequence=msg.frame_seq & 0xFFFFFFFF,
        )

    def _count(self, topic: topics.Topic) -> None:
        counts = self.counts[topic.name]
        counts.received += 1
        counts.written += 1

    def close(self) -> None:
        """Counts, index and footer; release the folder."""
        try:
            self.writer.close_segment(self.counts, final=True)
        finally:
            self.writer.release()
