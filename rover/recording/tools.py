"""What `rover recordings list|info|verify|trim` compute: plain dicts, printed by cli.py.

`recover` lives in recover.py and `export` in export.py. Every function takes paths the user
typed and raises DataError, in one line, for a missing, foreign or corrupt file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from google.protobuf.message import DecodeError
from mcap.reader import SeekingReader
from mcap.records import Metadata

from rover.errors import DataError, RoverError
from rover.health import HealthLog
from rover.messages import HealthEvent
from rover.recording import format as fmt
from rover.recording import segment as seg
from rover.recording.labels import is_stale, read_counts
from rover.recording.reader import FrameIndexer, Session, decode_jpeg, walk_session
from rover.recording.takeover import drive_mode
from rover.recording.trims import TrimSpan, add_trim, load_trims, undo_trim
from rover.recording.writer import session_is_live

HISTOGRAM_BINS = 10  # steering histogram over [-1, 1]
GAP_FACTOR = 1.5  # a frame interval this many periods long is a gap
STEADY_FRAMES = 10  # gaps before the first run of this many regular frames are start-up


def progress(total: int, desc: str):
    """A byte progress bar on stderr, shown only on a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=None, leave=False)


def resolve(path: str | Path) -> tuple[Path, list[Path]]:
    """A session folder, or one segment of it -> (session folder, the segments meant)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist: give a session folder or a segment file")
    if path.is_file():
        seg.read_header(path)
        if fmt.segment_index(path) is None:
            raise DataError(f"{path} is not named segment-NNNN.mcap: it is not part of a session")
        return path.parent, [path]
    segments = fmt.segment_paths(path)
    if not segments:
        raise DataError(
            f"{path} holds no segment-NNNN.mcap files: give a session folder "
            "(`rover recordings list` shows them)"
        )
    for p in segments:
        seg.read_header(p)
    return path, segments


def find_sessions(roots: list[str | Path]) -> list[Path]:
    """Session folders: each root is a session or a folder of sessions."""
    found: list[Path] = []
    for root in map(Path, roots):
        if not root.exists():
            raise DataError(f"{root} does not exist: give a folder of recordings")
        if root.is_file() or fmt.segment_paths(root):
            found.append(resolve(root)[0])
            continue
        found += sorted(p for p in root.iterdir() if p.is_dir() and fmt.segment_paths(p))
    return found


def list_sessions(roots: list[str | Path]) -> list[dict]:
    """One row per session, from the segment indexes (no full scan of finished segments)."""
    rows = []
    for session_dir in find_sessions(roots):
        segments = fmt.segment_paths(session_dir)
        live = session_is_live(session_dir)
        pairs, first, last, status = 0, None, None, "ok"
        labels: dict[str, int] | None = {"frames": 0, "stale": 0, "none": 0}
        for p in segments:
            try:
                seg.read_header(p)
            except DataError:
                status = "damaged"
                continue
            if not seg.is_complete(p):
                status = "live" if live and p == segments[-1] else "damaged"
                continue
            info = _segment_summary(p)
            pairs += info["pairs"]
            first = first or info["first_stamp_ns"]
            last = info["last_stamp_ns"] or last
            if labels is not None and info["labels"] is not None:
                labels = {k: labels[k] + info["labels"][k] for k in labels}
            else:
                labels = None  # a segment from before the counts: only `info` can tell
        duration = (last - first) / 1e9 * pairs / (pairs - 1) if pairs > 1 and first else 0.0
        if status == "ok" and labels is not None and is_stale(labels["frames"], labels["stale"]):
            status = "stale"  # as `info` says: the frames are labelled by dead commands
        rows.append(
            {
                "session": session_dir.name,
                "path": str(session_dir),
                "segments": len(segments),
                "duration_s": round(duration, 2),
                "stereo_pairs": pairs,
                "size_bytes": sum(p.stat().st_size for p in segments),
                "trims": len(load_trims(session_dir)),
                "status": status,
                "labels_checked": labels is not None,  # False: recorded before the counts
            }
        )
    return rows


def recording_summary(session_dir: str | Path) -> dict:
    """What a finished recording holds, from its indexes (no scan): stereo pairs, duration,
    size, and the frames the recorder's final counts say were lost (skipped + dropped) and
    left out while the operator paused it."""
    (row,) = list_sessions([session_dir])
    drops = paused = None
    segments = fmt.segment_paths(Path(session_dir))
    if segments and seg.is_complete(segments[-1]):
        with open(segments[-1], "rb") as f:
            meta = {m.name: m.metadata for m in SeekingReader(f).iter_metadata()}
        counts = json.loads(meta.get(fmt.META_COUNTS, {}).get("counts", "null") or "null")
        stereo = (counts or {}).get("camera/stereo")
        drops = None if stereo is None else stereo.get("skipped", 0) + stereo.get("dropped", 0)
        paused = None if stereo is None else stereo.get("paused", 0)
    return {**row, "dropped_frames": drops, "paused_frames": paused}


def _segment_summary(path: Path) -> dict:
    with open(path, "rb") as f:
        reader = SeekingReader(f)
        summary = reader.get_summary()
        if summary is None:  # a valid MCAP without an index: nothing cheap to report
            return {"pairs": 0, "first_stamp_ns": 0, "last_stamp_ns": 0, "labels": None}
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
    left = [c.id for c in summary.channels.values() if c.topic == fmt.LEFT_TOPIC]
    counts = summary.statistics.channel_message_counts if summary.statistics else {}
    segment = meta.get(fmt.META_SEGMENT, {})
    return {
        "pairs": int(segment.get("pairs", sum(counts.get(i, 0) for i in left))),
        "first_stamp_ns": int(segment.get("first_stamp_ns", 0)),
        "last_stamp_ns": int(segment.get("last_stamp_ns", 0)),
        "labels": read_counts(segment),
    }


@dataclass
class _TopicStats:
    messages: int = 0
    first_log_ns: int = 0
    last_log_ns: int = 0
    last_seq: int | None = None
    seq_gaps: int = 0
    restarts: int = 0

    def add(self, seq: int, log_ns: int) -> None:
        self.messages += 1
        self.first_log_ns = self.first_log_ns or log_ns
        self.last_log_ns = log_ns
        if self.last_seq is not None:
            if seq > self.last_seq + 1:
                self.seq_gaps += seq - self.last_seq - 1
            elif seq <= self.last_seq:
                self.restarts += 1  # the publisher restarted: its seq began again
        self.last_seq = seq


@dataclass
class _Scan:
    topics: dict[str, _TopicStats] = field(default_factory=dict)
    counts: dict | None = None  # the recorder's own: final, else the last periodic
    final: bool = False
    recovered: list[dict] = field(default_factory=list)
    control_sources: Counter[str] = field(default_factory=Counter)  # per control/command
    pause_marks: list[tuple[int, bool]] = field(default_factory=list)  # (stamp_ns, paused)


def session_info(path: str | Path) -> dict:
    """Everything `info` reports, from one pass over the session (images not decoded)."""
    session_dir, _ = resolve(path)
    session = Session(session_dir, partial_ok=session_is_live(session_dir))
    scan, indexer = _Scan(), FrameIndexer(drive_mode(session.metadata["robot_config"]))
    health = HealthLog()

    def on_record(_path: Path, record: object) -> None:
        if isinstance(record, Metadata) and record.name == fmt.META_COUNTS:
            scan.counts, scan.final = json.loads(record.metadata["counts"]), True
        elif isinstance(record, Metadata) and record.name == fmt.META_RECOVERED:
            scan.recovered.append(dict(record.metadata))

    size = sum(p.stat().st_size for p in session.segments)
    with progress(size, f"reading {session.name}") as bar:
        for topic, msg in walk_session(session.segments, session.partial_ok, on_record, bar.update):
            indexer.feed(topic, msg)
            if topic == fmt.STATS_TOPIC:
                if not scan.final:
                    scan.counts = json.loads(msg.data)["topics"]
                continue
            if topic == fmt.PAUSE_TOPIC:
                scan.pause_marks.append((msg.publish_time, bool(json.loads(msg.data)["paused"])))
            if topic == fmt.CONTROL_TOPIC:
                scan.control_sources[json.loads(msg.data).get("source") or "?"] += 1
            scan.topics.setdefault(topic, _TopicStats()).add(msg.sequence, msg.log_time)
            if topic.startswith("/health/"):
                _take_health(health, msg.data)
    session._frames, session._takeovers = indexer.frames(), indexer.takeovers()
    info = _info_dict(session, scan, size)
    info["resent_duplicates"] = indexer.duplicates
    info["faults"] = health.summary()  # lost motor controller, camera stalls, end of file...
    info["takeovers"] = len(session._takeovers)
    info["takeover_s"] = round(session.takeover_s, 3)
    info["takeover_frames"] = sum(f.takeover for f in session._frames)
    return info


HEALTH_FIELDS = ("node", "fault", "active", "count", "event", "text")


def _take_health(health: HealthLog, data: bytes) -> None:
    """One recorded health event (JSON) into the session's fault counts."""
    try:
        fields = json.loads(data)
        health.take(HealthEvent(**{k: fields[k] for k in HEALTH_FIELDS}))
    except (ValueError, KeyError, TypeError):
        return  # a damaged or foreign event: verify reports damage, info counts what it can


def _info_dict(session: Session, scan: _Scan, size: int) -> dict:
    frames = session.frames()
    stamps = np.array([f.stamp_ns for f in frames], dtype=np.int64)
    intervals = np.diff(stamps) if len(stamps) > 1 else np.zeros(0, np.int64)
    period = float(np.median(intervals)) if len(intervals) else 0.0
    slow = intervals > GAP_FACTOR * period if period > 0 else np.zeros(len(intervals), bool)
    pauses = pause_spans(scan.pause_marks, int(stamps[-1]) if len(stamps) else 0)
    slow &= ~_within(stamps, pauses)  # the operator paused there: no frames were lost
    steady_from = _steady_start(slow)
    gaps = [
        {"at_s": round((stamps[i] - stamps[0]) / 1e9, 3), "length_s": round(intervals[i] / 1e9, 3)}
        for i in np.nonzero(slow)[0]
    ]
    startup = [g for g, i in zip(gaps, np.nonzero(slow)[0], strict=True) if i < steady_from]
    gaps = gaps[len(startup) :]
    left = scan.topics.get(fmt.LEFT_TOPIC, _TopicStats())
    stereo_counts = (scan.counts or {}).get("camera/stereo", {})
    counted_drops = stereo_counts.get("skipped", 0) + stereo_counts.get("dropped", 0)
    paused_frames = stereo_counts.get("paused", 0)
    t0 = int(stamps[0]) if len(stamps) else 0
    hist, edges = np.histogram([f.steering for f in frames], bins=HISTOGRAM_BINS, range=(-1.0, 1.0))
    wall_s = (left.last_log_ns - left.first_log_ns) / 1e9 if left.messages > 1 else 0.0
    labels = _labels(frames, scan.control_sources)
    status = "live" if session.partial_ok else "ok"
    if status == "ok" and is_stale(len(frames), labels["stale_label_frames"]):
        status = "stale"  # "ok" only when the frames are labelled by commands that were live
    return {
        "session": session.name,
        "path": str(session.path),
        "status": status,
        **labels,
        "segments": len(session.segments),
        "size_bytes": size,
        "duration_s": round(session.duration_s, 3),
        "wall_s": round(wall_s, 3),
        "stereo_pairs": len(frames),
        "training_pairs": len(session),
        "dropped_frames": max(left.seq_gaps - paused_frames, counted_drops),
        "pauses": [
            {"at_s": round((a - t0) / 1e9, 3), "length_s": round((b - a) / 1e9, 3)}
            for a, b in pauses
        ],
        "paused_s": round(sum(b - a for a, b in pauses) / 1e9, 3),
        "paused_frames": paused_frames,
        "frame_seq_gaps": left.seq_gaps,
        "camera_restarts": left.restarts,
        "bytes_per_min": round(size / (session.duration_s / 60)) if session.duration_s else 0,
        "frame_period_ms": round(period / 1e6, 3),
        "gaps": gaps,
        "startup_s": round((stamps[steady_from] - stamps[0]) / 1e9, 3) if startup else 0.0,
        "startup_gaps": len(startup),
        "topics": [
            {
                "topic": topic,
                "messages": t.messages,
                "rate_hz": round((t.messages - 1) / ((t.last_log_ns - t.first_log_ns) / 1e9), 2)
                if t.messages > 1 and t.last_log_ns > t.first_log_ns
                else 0.0,
                "nominal_hz": _nominal_hz(topic),
                "seq_gaps": t.seq_gaps,
                "restarts": t.restarts,
            }
            for topic, t in sorted(scan.topics.items())
        ],
        "recorder_counts": scan.counts or {},
        "command_source": dict(Counter(f.command for f in frames)),
        "steering_histogram": {"edges": edges.round(2).tolist(), "counts": hist.tolist()},
        "trims": [asdict(t) for t in session.trims],
        "recovered": scan.recovered,
        "software": session.metadata["software"],
        "camera": session.metadata["camera"],
    }


def pause_spans(marks: list[tuple[int, bool]], end_ns: int) -> list[tuple[int, int]]:
    """(start, end) stamps of each span the operator paused the recording; one still paused
    when the recording ended runs to `end_ns`."""
    spans, since = [], None
    for stamp_ns, paused in sorted(marks):
        if paused and since is None:
            since = stamp_ns
        elif not paused and since is not None:
            spans.append((since, stamp_ns))
            since = None
    if since is not None:
        spans.append((since, max(since, end_ns)))
    return spans


def _within(stamps: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Per frame interval: whether it overlaps one of `spans`."""
    hit = np.zeros(max(len(stamps) - 1, 0), bool)
    for a, b in spans:
        hit |= (stamps[:-1] <= b) & (stamps[1:] >= a)
    return hit


def _steady_start(slow: np.ndarray) -> int:
    """The first frame interval from which STEADY_FRAMES come at the regular rate: slow
    intervals before it are the stack starting up (the simulator re-sends its first frame
    until every node answers), not lost data."""
    run = 0
    for i, is_slow in enumerate(slow):
        run = 0 if is_slow else run + 1
        if run == STEADY_FRAMES:
            return i - STEADY_FRAMES + 1
    return 0  # never steady: report every gap as a gap


def _labels(frames: list, control_sources: Counter[str]) -> dict:
    """How the frames are labelled: by a live command (the vehicle followed it), by a stale
    one (the control node had no live input and sent zero throttle), or by none at all (only
    frames before the first command: the stack starting)."""
    stale = sum(1 for f in frames if f.stale)
    unlabelled = sum(1 for f in frames if f.command == "none")
    live = len(frames) - stale - unlabelled
    return {
        "live_labels_pct": round(100.0 * live / len(frames), 1) if frames else 0.0,
        "stale_label_frames": stale,
        "unlabelled_frames": unlabelled,
        "control_sources": dict(control_sources.most_common()),
    }


def _nominal_hz(channel: str) -> float | None:
    """The rate the topic registry declares for a recorded channel (None: not a bus topic)."""
    from rover import topics

    name = "camera/stereo" if channel in fmt.IMAGE_TOPICS else channel.lstrip("/")
    topic = topics.BY_NAME.get(name)
    return topic.rate_hz if topic else None


@dataclass
class SegmentCheck:
    """The verdict on one segment."""

    path: Path
    messages: int = 0
    pairs: int = 0
    problems: list[str] = field(default_factory=list)
    live: bool = False
    resent: int = 0  # left images repeating the previous capture (the simulator's start-up)


def verify(path: str | Path, decode: bool = False) -> list[SegmentCheck]:
    """Read every record and message of the session (or segment); note every problem."""
    session_dir, segments = resolve(path)
    live = session_is_live(session_dir)
    checks = []
    size = sum(p.stat().st_size for p in segments)
    with progress(size, "verifying") as bar:
        for p in segments:
            check = SegmentCheck(p, live=live and p == fmt.segment_paths(session_dir)[-1])
            _verify_segment(check, decode, bar.update)
            checks.append(check)
    return checks


def _verify_segment(check: SegmentCheck, decode: bool, on_bytes) -> None:
    states: list[seg.WalkState] = []
    per_topic: Counter[str] = Counter()
    segment_meta: dict = {}

    def on_record(_path: Path, record: object) -> None:
        if isinstance(record, Metadata) and record.name == fmt.META_SEGMENT:
            segment_meta.update(record.metadata)

    last_left_ns = None
    for topic, msg in walk_session([check.path], True, on_record, on_bytes, states):
        per_topic[topic] += 1
        if topic == fmt.LEFT_TOPIC:
            check.resent += msg.publish_time == last_left_ns
            last_left_ns = msg.publish_time
        problem = _check_message(topic, msg.data, decode)
        if problem:
            check.problems.append(f"{topic} message {msg.sequence}: {problem}")
    state = states[0]
    check.messages = sum(per_topic.values())
    check.pairs = min(per_topic[fmt.LEFT_TOPIC], per_topic[fmt.RIGHT_TOPIC])
    for d in state.damage:
        if check.live and d.torn_tail:
            continue  # the recorder is still writing it
        lost = f", {state.torn_bytes} bytes unreadable" if d.torn_tail and state.torn_bytes else ""
        check.problems.append(f"damaged at byte {d.offset}: {d.reason}{lost}")
    if per_topic[fmt.LEFT_TOPIC] != per_topic[fmt.RIGHT_TOPIC] and state.complete:
        check.problems.append(
            f"{per_topic[fmt.LEFT_TOPIC]} left but {per_topic[fmt.RIGHT_TOPIC]} right images"
        )
    if "frames" in segment_meta and int(segment_meta["frames"]) != check.pairs:
        check.problems.append(
            f"the recorder wrote {segment_meta['frames']} frames but {check.pairs} are readable"
        )
    if state.complete:
        _check_statistics(check, per_topic)


def _check_message(topic: str, data: bytes, decode: bool) -> str | None:
    if topic in fmt.PNG_IMAGE_TOPICS:
        try:
            png = CompressedImage.FromString(data).data
        except DecodeError:
            return "not a foxglove.CompressedImage"
        return None if png[:4] == b"\x89PNG" else "its PNG data is corrupt"
    if topic in fmt.IMAGE_TOPICS:
        try:
            jpeg = CompressedImage.FromString(data).data
        except DecodeError:
            return "not a foxglove.CompressedImage"
        if jpeg[:2] != b"\xff\xd8" or jpeg[-2:] != b"\xff\xd9":
            return "its JPEG data is cut or corrupt"
        if decode:
            try:
                decode_jpeg(jpeg)
            except DataError:
                return "its JPEG data does not decode"
        return None
    try:
        json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "not valid JSON"
    return None


def _check_statistics(check: SegmentCheck, per_topic: Counter[str]) -> None:
    with open(check.path, "rb") as f:
        summary = SeekingReader(f).get_summary()
    if summary is None or summary.statistics is None:
        check.problems.append("its index has no statistics record")
        return
    indexed = Counter()
    for cid, n in summary.statistics.channel_message_counts.items():
        indexed[summary.channels[cid].topic] += n
    if indexed != per_topic:
        check.problems.append(f"its index counts {dict(indexed)} but {dict(per_topic)} were read")


def trim(
    path: str | Path,
    from_s: float | None = None,
    to_s: float | None = None,
    frames: tuple[int, int] | None = None,
    reason: str = "",
) -> TrimSpan:
    """Exclude a span (seconds from the first frame, or frame indices [a, b)) from training."""
    session = Session(resolve(path)[0])
    infos = session.frames()
    if not infos:
        raise DataError(f"{session.path} has no frames to trim")
    first = infos[0].stamp_ns
    if frames is not None:
        a, b = frames
        if not 0 <= a < b <= len(infos):
            raise RoverError(f"--frames {a}:{b}: give A:B with 0 <= A < B <= {len(infos)}")
        start_ns, end_ns = infos[a].stamp_ns, infos[b - 1].stamp_ns
        from_s, to_s = (start_ns - first) / 1e9, (end_ns - first) / 1e9
    else:
        from_s = 0.0 if from_s is None else from_s
        to_s = session.duration_s if to_s is None else to_s
        if not 0 <= from_s < to_s:
            raise RoverError(f"--from {from_s} --to {to_s}: give 0 <= FROM < TO (seconds)")
        # matched to the millisecond, as times are shown: "--from 0.5" includes frame 0.4999999
        start_ns = first + round(from_s * 1e9) - 500_000
        end_ns = first + round(to_s * 1e9) + 500_000
    return add_trim(session.path, start_ns, end_ns, from_s, to_s, reason)


def untrim(path: str | Path, span_id: int | None = None) -> TrimSpan:
    """Undo a trim (the newest by default)."""
    return undo_trim(resolve(path)[0], span_id)
