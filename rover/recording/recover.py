"""`rover recordings recover`: rebuild damaged segments, losing only what is unreadable.

A segment cut short (SIGKILL, power cut) has every chunk the recorder flushed, but no index or
footer. Recovery reads it record by record up to the torn tail (skipping a chunk whose CRC
fails), writes the readable records into a new file with a fresh index, and renames that over
the damaged one (or writes it into a copy of the session). The rename is atomic: a crash during
recovery leaves the damaged segment as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mcap.records import Attachment, Channel, Message, Metadata, Schema
from mcap.writer import CompressionType, Writer

from rover.errors import DataError
from rover.recording import format as fmt
from rover.recording import segment as seg
from rover.recording.tools import progress, resolve
from rover.recording.writer import fsync_dir, session_is_live


@dataclass
class Recovery:
    """What recovering one segment kept and lost."""

    path: Path
    rebuilt: bool  # False: it was intact and left alone (or copied)
    messages: int = 0
    frames: int = 0  # images per eye
    pairs: int = 0  # distinct captures
    first_stamp_ns: int = 0
    last_stamp_ns: int = 0
    lost_bytes: int = 0
    last_log_ns: int = 0
    reason: str = ""


def recover(path: str | Path, out: str | Path | None = None) -> list[Recovery]:
    """Rebuild the damaged segments of a session (or the one segment given), in place or in
    the session copy `out`."""
    session_dir, segments = resolve(path)
    if session_is_live(session_dir):
        raise DataError(f"{session_dir} is being recorded right now: stop the recorder first")
    target_dir = session_dir if out is None else Path(out)
    if out is not None:
        if target_dir.resolve() == session_dir.resolve():
            raise DataError(f"--out {out} is the session itself: omit --out to recover in place")
        target_dir.mkdir(parents=True, exist_ok=True)
        for extra in (fmt.TRIMS_FILE,):
            if (session_dir / extra).exists():
                shutil.copy2(session_dir / extra, target_dir / extra)
    results = []
    size = sum(p.stat().st_size for p in segments)
    with progress(size, "recovering") as bar:
        for p in segments:
            results.append(_recover_segment(p, target_dir / p.name, bar.update))
    return results


def _recover_segment(src: Path, dst: Path, on_bytes) -> Recovery:
    state = seg.WalkState(src)
    damaged = not seg.is_complete(src)
    if not damaged:
        for _ in seg.walk(src, state, validate_crcs=True, tolerant=True, on_bytes=on_bytes):
            pass
        damaged = bool(state.damage)
    if not damaged:
        if src != dst:
            _copy_atomic(src, dst)
        return Recovery(src, rebuilt=False)
    return _rebuild(src, dst)


def _rebuild(src: Path, dst: Path) -> Recovery:
    state = seg.WalkState(src)
    result = Recovery(src, rebuilt=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}-", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            header = seg.read_header(src)
            writer = Writer(f, compression=CompressionType.ZSTD)
            writer.start(profile=header.profile, library=header.library)
            _copy_records(src, state, writer, result)
            writer.add_metadata(
                fmt.META_SEGMENT,
                {
                    "index": str(fmt.segment_index(src)),
                    "pairs": str(result.pairs),
                    "frames": str(result.frames),
                    "first_stamp_ns": str(result.first_stamp_ns),
                    "last_stamp_ns": str(result.last_stamp_ns),
                    "closed_unix_ns": str(time.time_ns()),
                },
            )
            writer.add_metadata(
                fmt.META_RECOVERED,
                {
                    "recovered_unix_ns": str(time.time_ns()),
                    "messages": str(result.messages),
                    "lost_bytes": str(state.torn_bytes),
                    "damage": "; ".join(f"byte {d.offset}: {d.reason}" for d in state.damage),
                },
            )
            writer.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
    result.lost_bytes = state.torn_bytes
    result.reason = "; ".join(d.reason for d in state.damage)
    return result


def _copy_records(src: Path, state: seg.WalkState, writer: Writer, result: Recovery) -> None:
    schema_ids: dict[int, int] = {}
    channel_ids: dict[int, int] = {}
    eyes: dict[int, str] = {}
    held: list[Message] = []  # a left image and what followed it, until its right eye comes

    def add(record: Message) -> None:
        writer.add_message(
            channel_ids[record.channel_id],
            log_time=record.log_time,
            data=record.data,
            publish_time=record.publish_time,
            sequence=record.sequence,
        )
        result.messages += 1
        result.last_log_ns = max(result.last_log_ns, record.log_time)
        if eyes.get(record.channel_id) == fmt.LEFT_TOPIC:
            result.frames += 1
            result.pairs += record.publish_time != result.last_stamp_ns  # re-sent: once
            result.first_stamp_ns = result.first_stamp_ns or record.publish_time
            result.last_stamp_ns = record.publish_time

    for record in seg.walk(src, state, validate_crcs=True, tolerant=True):
        if isinstance(record, Schema):
            schema_ids[record.id] = writer.register_schema(
                record.name, record.encoding, record.data
            )
        elif isinstance(record, Channel):
            channel_ids[record.id] = writer.register_channel(
                record.topic,
                record.message_encoding,
                schema_ids.get(record.schema_id, 0),
                dict(record.metadata),
            )
            if record.topic in fmt.IMAGE_TOPICS:
                eyes[record.id] = record.topic
        elif isinstance(record, Message) and record.channel_id in channel_ids:
            eye = eyes.get(record.channel_id)
            if eye == fmt.LEFT_TOPIC or held:
                held.append(record)
            else:
                add(record)
            if eye == fmt.RIGHT_TOPIC and held:
                for message in held:
                    add(message)
                held.clear()
        elif isinstance(record, Metadata) and record.name != fmt.META_SEGMENT:
            writer.add_metadata(record.name, dict(record.metadata))  # its own is rewritten
        elif isinstance(record, Attachment):
            writer.add_attachment(
                record.create_time, record.log_time, record.name, record.media_type, record.data
            )
    for message in held[1:]:  # the torn tail split the last pair: drop its lone left eye
        add(message)


def _copy_atomic(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}-", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
