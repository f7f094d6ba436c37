"""Trims: spans of a session excluded from training, kept beside the data (never deleting it).

A session's `trims.json` lists spans by frame capture stamp (CLOCK_MONOTONIC ns, as in the
recording), with the seconds-from-start the user typed for readability. Every write goes to a
temporary file that is fsynced and renamed over the old one, so a crash leaves either the old
list or the new one. Undo removes a span by id (the newest by default).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rover.errors import DataError
from rover.recording import format as fmt

TRIMS_VERSION = 1


@dataclass(frozen=True)
class TrimSpan:
    """Frames whose capture stamp lies in [start_ns, end_ns] are left out of training."""

    id: int
    start_ns: int
    end_ns: int
    start_s: float  # seconds from the session's first frame, as the user gave it
    end_s: float
    reason: str = ""
    created_unix_ns: int = 0

    def covers(self, stamp_ns: int) -> bool:
        return self.start_ns <= stamp_ns <= self.end_ns


def trims_path(session_dir: Path) -> Path:
    return Path(session_dir) / fmt.TRIMS_FILE


def load_trims(session_dir: Path) -> list[TrimSpan]:
    """The session's trims (none when it has no trims file)."""
    path = trims_path(session_dir)
    try:
        raw = json.loads(path.read_text())
        return [TrimSpan(**span) for span in raw["spans"]]
    except FileNotFoundError:
        return []
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path} is corrupt ({exc}): fix it by hand or delete it to drop every trim"
        ) from None


def save_trims(session_dir: Path, spans: list[TrimSpan]) -> None:
    """Replace the trims file atomically (temp file, fsync, rename)."""
    path = trims_path(session_dir)
    data = json.dumps(
        {"version": TRIMS_VERSION, "spans": [asdict(s) for s in spans]}, indent=2
    ).encode()
    fd, tmp = tempfile.mkstemp(prefix=".trims-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_trim(
    session_dir: Path, start_ns: int, end_ns: int, start_s: float, end_s: float, reason: str = ""
) -> TrimSpan:
    """Append a span and return it."""
    spans = load_trims(session_dir)
    span = TrimSpan(
        id=max((s.id for s in spans), default=0) + 1,
        start_ns=start_ns,
        end_ns=end_ns,
        start_s=round(start_s, 3),
        end_s=round(end_s, 3),
        reason=reason,
        created_unix_ns=time.time_ns(),
    )
    save_trims(session_dir, [*spans, span])
    return span


def undo_trim(session_dir: Path, span_id: int | None = None) -> TrimSpan:
    """Remove span `span_id` (default: the newest) and return it."""
    spans = load_trims(session_dir)
    if not spans:
        raise DataError(f"{session_dir} has no trims to undo")
    target = spans[-1] if span_id is None else next((s for s in spans if s.id == span_id), None)
    if target is None:
        known = ", ".join(str(s.id) for s in spans)
        raise DataError(f"{session_dir} has no trim {span_id}: its trims are {known}")
    save_trims(session_dir, [s for s in spans if s is not target])
    return target
