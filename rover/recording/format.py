"""The on-disk shape of a recording: session folders, segment names, channels and schemas.

A session is a folder with a readable timestamped name holding MCAP segments
(`segment-0000.mcap`, ...), an optional `trims.json` sidecar and, while a recorder writes it,
a lock file. Inside a segment:

- `/camera/left/compressed`, `/camera/right/compressed`: `foxglove.CompressedImage` (protobuf,
  JPEG), one message per eye per stereo frame; the MCAP `sequence` is the frame's seq.
- `/<topic>` for every other recorded topic (`/control/command`, `/motor/state`, ...): JSON with
  a JSON Schema generated from the message dataclass, so Foxglove plots every field and any
  program with only the `mcap` library reads them.
- `/rover/recorder`: the recorder's running counts (received, written, skipped, dropped), once a
  second, so the counts survive a crash.
- `/rover/takeover`: a mark where the human took over from the autopilot and where they handed
  back (rover.recording.takeover).
- `/rover/pause`: a mark where the operator paused the recording (the record key) and where
  they resumed it; `publish_time` is the key press's stamp. Nothing else is written between.
- Metadata `rover.session` (software version, clocks, camera size), `rover.config` (the robot
  config), `rover.segment` (counts when the segment closed), `rover.counts` (totals, last
  segment); the calibration file as an attachment.

Times: MCAP `log_time` is the wall clock (ns since the epoch) when the recorder received the
message; `publish_time` is the message's capture stamp (`stamp_ns`, CLOCK_MONOTONIC).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
import typing
from datetime import datetime
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path

from rover import messages as m
from rover import topics

FORMAT_VERSION = 1
LIBRARY = "rover-recorder"  # MCAP header `library` prefix: how a rover recording is recognised
LEFT_TOPIC = "/camera/left/compressed"
RIGHT_TOPIC = "/camera/right/compressed"
IMAGE_TOPICS = (LEFT_TOPIC, RIGHT_TOPIC)
STATS_TOPIC = "/rover/recorder"
TAKEOVER_TOPIC = "/rover/takeover"  # marks where the human took over from the autopilot
PAUSE_TOPIC = "/rover/pause"  # marks where the operator paused and resumed the recording
# lossless images (PNG in foxglove.CompressedImage): the cost maps a replay writes
PNG_IMAGE_TOPICS = ("/perception/traversability/cost",)
CONTROL_TOPIC = "/" + topics.CONTROL_COMMAND.name
TELEOP_TOPIC = "/" + topics.TELEOP_COMMAND.name
IMAGE_SCHEMA = "foxglove.CompressedImage"
META_SESSION = "rover.session"
META_CONFIG = "rover.config"
META_SEGMENT = "rover.segment"
META_COUNTS = "rover.counts"
META_RECOVERED = "rover.recovered"
TRIMS_FILE = "trims.json"
LOCK_FILE = ".recorder.lock"
SEGMENT_RE = re.compile(r"^segment-(\d{4,})\.mcap$")

_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def recorded_topics() -> tuple[topics.Topic, ...]:
    """Every topic the registry marks as recorded."""
    return tuple(t for t in topics.ALL_TOPICS if t.recorded)


def channel_topic(topic: topics.Topic) -> str:
    """The MCAP channel of a non-image bus topic."""
    return "/" + topic.name


def segment_name(index: int) -> str:
    """File name of segment number `index` of a session."""
    return f"segment-{index:04d}.mcap"


def segment_index(path: Path) -> int | None:
    """The number of a segment file, or None when `path` is not named like one."""
    match = SEGMENT_RE.match(path.name)
    return int(match.group(1)) if match else None


def segment_paths(session_dir: Path) -> list[Path]:
    """The segment files of a session folder, in recording order."""
    found = [(segment_index(p), p) for p in session_dir.iterdir() if p.is_file()]
    return [p for i, p in sorted((i, p) for i, p in found if i is not None)]


def session_name(now: datetime | None = None) -> str:
    """A readable, sortable session name: local date and time."""
    return (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")


def new_session_dir(root: str | Path = "recordings", now: datetime | None = None) -> Path:
    """Create and return a fresh session folder under `root` (suffix -2, -3... on a clash)."""
    base = Path(root) / session_name(now)
    Path(root).mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free session name under {root}")


@cache
def json_schema(msg_type: type[m.Message]) -> bytes:
    """A JSON Schema for a message type, generated from its dataclass fields."""
    hints = typing.get_type_hints(msg_type)
    properties = {
        f.name: {"type": _JSON_TYPES[hints[f.name]]}
        for f in dataclasses.fields(msg_type)
        if hints[f.name] in _JSON_TYPES
    }
    schema = {
        "title": f"rover.{msg_type.__name__}",
        "description": (msg_type.__doc__ or "").strip(),
        "type": "object",
        "properties": properties,
    }
    return json.dumps(schema).encode()


@cache
def _json_fields(msg_type: type[m.Message]) -> tuple[str, ...]:
    hints = typing.get_type_hints(msg_type)
    return tuple(f.name for f in dataclasses.fields(msg_type) if hints[f.name] in _JSON_TYPES)


def message_json(msg: m.Message) -> bytes:
    """A non-image message as compact JSON (header and fields)."""
    return json.dumps(
        {name: getattr(msg, name) for name in _json_fields(type(msg))}, separators=(",", ":")
    ).encode()


def stats_schema() -> bytes:
    """JSON Schema of the recorder's own counts channel."""
    return json.dumps(
        {
            "title": "rover.RecorderStats",
            "description": "Per topic: received, written, skipped (seq gaps), dropped (queue), "
            "paused (not written: the operator paused the recording).",
            "type": "object",
        }
    ).encode()


def pause_schema() -> bytes:
    """JSON Schema of the pause marks."""
    return json.dumps(
        {
            "title": "rover.RecordPause",
            "description": "true: the operator paused the recording; false: resumed it.",
            "type": "object",
            "properties": {"paused": {"type": "boolean"}},
        }
    ).encode()


@cache
def software_version() -> dict[str, str]:
    """The rover version and, when run from a git checkout, its commit."""
    try:
        version = importlib_metadata.version("rover")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    commit = "unknown"
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
            commit = out.stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            commit = "unknown"  # no git on the robot: the version alone must do
    return {"rover": version, "git": commit, "format": str(FORMAT_VERSION)}


def clock_offset_ns() -> int:
    """Wall clock minus CLOCK_MONOTONIC now: turns a capture stamp into epoch time."""
    return time.time_ns() - time.monotonic_ns()


def flatten_config(raw: dict[str, dict]) -> dict[str, str]:
    """A robot config as MCAP metadata: `section.key` -> JSON value."""
    return {
        f"{section}.{key}": json.dumps(value, default=str)
        for section, values in raw.items()
        for key, value in values.items()
    }


def unflatten_config(flat: dict[str, str]) -> dict[str, dict]:
    """Inverse of flatten_config."""
    out: dict[str, dict] = {}
    for dotted, value in flat.items():
        section, _, key = dotted.partition(".")
        out.setdefault(section, {})[key] = json.loads(value)
    return out
