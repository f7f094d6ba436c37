"""Reading one MCAP segment record by record, telling a torn tail from a foreign file.

The `mcap` library's readers either trust the index (absent after a crash) or stop with an
exception at the first bad byte. Recording tools need more: read everything up to the damage,
say exactly where and why it stopped, skip a chunk whose CRC fails, and refuse, in one line,
a file that is not a rover recording at all.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.records import (
    Attachment,
    Channel,
    Chunk,
    Footer,
    Header,
    Message,
    Metadata,
    Schema,
)
from mcap.stream_reader import CRCValidationError, breakup_chunk

from rover.errors import DataError
from rover.recording import format as fmt

MAGIC = bytes([137, 77, 67, 65, 80, 48, 13, 10])
_RECORD_HEAD = struct.Struct("<BQ")
_SIMPLE = {
    Opcode.SCHEMA: Schema.read,
    Opcode.CHANNEL: Channel.read,
    Opcode.METADATA: Metadata.read,
    Opcode.ATTACHMENT: Attachment.read,
    Opcode.FOOTER: Footer.read,
    Opcode.HEADER: Header.read,
}
_PARSE_ERRORS = (McapError, CRCValidationError, struct.error, ValueError, zlib.error, EOFError)
Record = Schema | Channel | Message | Metadata | Attachment


@dataclass
class Damage:
    """Where a segment stops being readable, and why."""

    offset: int
    reason: str
    torn_tail: bool = True  # False: a bad chunk in the middle, skipped


@dataclass
class WalkState:
    """What a walk over a segment found: complete or not, damage, bytes readable."""

    path: Path
    file_size: int = 0
    complete: bool = False  # ends with a valid footer and magic
    good_bytes: int = 0  # end of the last record read whole
    damage: list[Damage] = field(default_factory=list)
    header: Header | None = None

    @property
    def torn_bytes(self) -> int:
        return self.file_size - self.good_bytes if not self.complete else 0


def read_header(path: Path) -> Header:
    """The header of a rover segment; DataError, in one line, for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8 + _RECORD_HEAD.size)
            if head[:8] != MAGIC:
                raise DataError(
                    f"{path} is not an MCAP file (no MCAP magic): "
                    "give a session folder or a segment-NNNN.mcap written by the rover recorder"
                )
            opcode, length = _RECORD_HEAD.unpack(head[8:]) if len(head) == 17 else (0, 0)
            body = f.read(length) if opcode == Opcode.HEADER and length < 1 << 20 else b""
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a segment file") from None
    except FileNotFoundError:
        raise DataError(f"{path} does not exist: check the path") from None
    if opcode != Opcode.HEADER or len(body) != length:
        raise DataError(
            f"{path} is a corrupt MCAP file (its header is unreadable): "
            "it cannot be recovered; delete it or restore it from a backup"
        )
    try:
        header = Header.read(ReadDataStream(io.BytesIO(body)))
    except _PARSE_ERRORS:
        raise DataError(f"{path} is a corrupt MCAP file (bad header record): delete it") from None
    if not header.library.startswith(fmt.LIBRARY):
        raise DataError(
            f"{path} is an MCAP file but not a rover recording (written by "
            f"{header.library or 'an unnamed writer'!r}): rover recordings reads only "
            "sessions written by the rover recorder"
        )
    return header


def is_complete(path: Path) -> bool:
    """True when the segment ends with a footer and magic (closed cleanly or recovered)."""
    size = path.stat().st_size
    footer_size = _RECORD_HEAD.size + 20
    if size < 8 + footer_size + 8:
        return False
    with open(path, "rb") as f:
        f.seek(size - footer_size - 8)
        tail = f.read(footer_size + 8)
    opcode, length = _RECORD_HEAD.unpack_from(tail)
    return tail[-8:] == MAGIC and opcode == Opcode.FOOTER and length == 20


def walk(
    path: Path,
    state: WalkState | None = None,
    validate_crcs: bool = False,
    tolerant: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Record]:
    """Yield the data-section records of a segment in file order (chunks broken up).

    Strict (default): the first damage raises DataError. Tolerant: damage is noted in `state`,
    a chunk that fails its CRC is skipped, and the walk stops at a torn tail. `on_bytes` is
    told how many bytes each top-level record took (for progress bars).
    """
    state = state or WalkState(Path(path))
    state.header = read_header(path)
    with open(path, "rb", buffering=1 << 20) as f:
        state.file_size = f.seek(0, io.SEEK_END)
        f.seek(8)
        offset = 8
        in_summary = False
        while True:
            head = f.read(_RECORD_HEAD.size)
            if len(head) < _RECORD_HEAD.size:
                why = "it ends without an index (the recorder was killed or lost power)"
                _damage(state, Damage(offset, why), tolerant)
                return
            opcode, length = _RECORD_HEAD.unpack(head)
            if length > state.file_size - offset - _RECORD_HEAD.size:
                _damage(state, Damage(offset, "its last record is cut short (torn tail)"), tolerant)
                return
            body = f.read(length)
            end = offset + _RECORD_HEAD.size + length
            if opcode == Opcode.FOOTER:
                state.complete = f.read(8) == MAGIC
                if not state.complete:
                    _damage(
                        state, Damage(end, "its footer is not followed by MCAP magic"), tolerant
                    )
                state.good_bytes = end + 8 if state.complete else end
                return
            if opcode == Opcode.DATA_END:
                in_summary = True  # the summary repeats schemas and channels: skip it
            elif not in_summary:
                try:
                    yield from _parse(opcode, body, validate_crcs)
                except _PARSE_ERRORS as exc:
                    what = f"record {Opcode(opcode).name if opcode in _OPCODES else opcode}"
                    damage = Damage(offset, f"{what} is unreadable ({exc})", torn_tail=False)
                    _damage(state, damage, tolerant)
            state.good_bytes = offset = end
            if on_bytes is not None:
                on_bytes(_RECORD_HEAD.size + length)


_OPCODES = {int(o) for o in Opcode}


def _parse(opcode: int, body: bytes, validate_crcs: bool) -> Iterator[Record]:
    if opcode == Opcode.CHUNK:
        chunk = Chunk.read(ReadDataStream(io.BytesIO(body)))
        yield from (
            r
            for r in breakup_chunk(chunk, validate_crc=validate_crcs)
            if isinstance(r, Schema | Channel | Message)
        )
    elif opcode == Opcode.MESSAGE:
        yield Message.read(ReadDataStream(io.BytesIO(body)), len(body))
    elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.METADATA, Opcode.ATTACHMENT):
        yield _SIMPLE[opcode](ReadDataStream(io.BytesIO(body)))


def _damage(state: WalkState, damage: Damage, tolerant: bool) -> None:
    state.damage.append(damage)
    if not tolerant:
        raise DataError(
            f"{state.path} is damaged at byte {damage.offset}: {damage.reason}: "
            f"run `rover recordings recover {state.path.parent}`"
        )
