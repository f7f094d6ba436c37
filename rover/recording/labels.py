"""Label counts kept while recording, so `rover recordings list` can say "stale" cheaply.

`rover recordings info` labels every frame with the command in force (rover.recording.reader's
FrameIndexer) and calls a session "stale" when more than STALE_LABELS_MAX_PCT of its frames are
labelled by stale commands; that needs a pass over every chunk, images included (about 1.4 s
per minute of recording here). The writer feeds the same indexer the frames and commands it
writes, and each segment's metadata carries its frames' label counts: `list` reads them from
the index like the other figures. Labels are counted at the segment's close, so a frame whose
answering command lands in the next segment keeps the label it had then (the latest command
at its arrival, stale or not, as a rule the same).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rover.recording import format as fmt
from rover.recording.reader import FrameIndexer

STALE_LABELS_MAX_PCT = 5.0  # more frames than this labelled by stale commands: "stale"
LABEL_TOPICS = (fmt.CONTROL_TOPIC, fmt.TELEOP_TOPIC)


@dataclass(frozen=True)
class _Message:
    """The fields of an MCAP message the indexer reads."""

    log_time: int
    sequence: int
    publish_time: int
    data: bytes = b""


class LabelTally:
    """The frames' labels as the writer writes them; counts per segment."""

    def __init__(self) -> None:
        self._indexer = FrameIndexer()
        self._counted = 0  # frames already counted in an earlier segment

    def feed(self, topic: str, log_time_ns: int, seq: int, stamp_ns: int, data: bytes) -> None:
        """Take one written message (images: only their stamps and sequence matter)."""
        if topic in fmt.IMAGE_TOPICS or topic in LABEL_TOPICS:
            self._indexer.feed(topic, _Message(log_time_ns, seq & 0xFFFFFFFF, stamp_ns, data))

    def segment_counts(self) -> dict[str, int]:
        """Frames since the last call and how they are labelled (stale, none)."""
        frames = self._indexer._frames
        start = min(self._counted, len(frames))
        paired = [i for i in range(start, len(frames)) if frames[i].paired]
        new = [frames[i] for i in paired]
        if paired:  # a last frame still waiting for its right eye counts with the next segment
            self._counted = paired[-1] + 1
        return {
            "frames": len(new),
            "stale": sum(1 for f in new if f.stale),
            "none": sum(1 for f in new if f.command == "none"),
        }


def is_stale(frames: int, stale: int) -> bool:
    """Whether a session's frames are too often labelled by stale commands to train on."""
    return frames > 0 and 100 * stale > STALE_LABELS_MAX_PCT * frames


def read_counts(segment_meta: dict) -> dict[str, int] | None:
    """The label counts a segment's metadata carries (None: recorded before they existed)."""
    raw = segment_meta.get("labels")
    if not raw:
        return None
    counts = json.loads(raw)
    return {k: int(counts.get(k, 0)) for k in ("frames", "stale", "none")}
