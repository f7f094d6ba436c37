"""Topic-by-topic, field-by-field comparison of two sessions' answers to the same frames.

Per node: how many answers each side holds for the frames compared, and per field the largest
and the mean absolute difference (numbers and arrays; for booleans and strings, how many
frames differ), and the first frame that differs beyond the field's tolerance. A node passes
when both sides answered the same frames and every field is within tolerance.

Tolerances: against another replay (same inputs, the decoded JPEGs) every field must be equal:
0. Against a live recording they cannot be: the live nodes saw the camera's raw pixels, the
recording keeps JPEG; the `RECORDED` tolerances allow for that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rover.replay.answers import BY_NODE

EXACT: dict[str, float] = {}  # every field: 0
RECORDED: dict[str, float] = {  # live answers from raw pixels vs replayed ones from JPEG
    "steering.steering": 0.05,
    "steering.throttle": 0.05,
    "control.steering": 0.05,
    "control.throttle": 0.05,
}


@dataclass
class FieldDiff:
    """One field of one node's answers."""

    name: str
    tolerance: float
    max_abs: float = 0.0
    mean_abs: float = 0.0
    differing: int = 0  # frames beyond tolerance
    first_frame: int | None = None  # frame_seq of the first of those

    @property
    def ok(self) -> bool:
        return self.differing == 0


@dataclass
class NodeDiff:
    """One node's answers on both sides."""

    node: str
    replay: int  # answers in the replay, over the frames compared
    reference: int
    missing: list[int] = field(default_factory=list)  # frames answered on one side only
    fields: list[FieldDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and all(f.ok for f in self.fields)

    @property
    def verdict(self) -> str:
        return "same" if self.ok else "DIFFERS"


def _distance(a, b) -> np.ndarray:
    """Absolute difference: elementwise for numbers and arrays, 0/1 for anything else."""
    if isinstance(a, bool | str) or isinstance(b, bool | str) or a is None or b is None:
        return np.asarray(float(a != b))
    try:
        return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    except ValueError:  # arrays of different shapes
        return np.asarray(np.inf)


def diff_node(
    node: str,
    replay: dict[int, dict],
    reference: dict[int, dict],
    frames: list[int],
    tolerances: dict[str, float],
) -> NodeDiff:
    """Compare one node's answers to `frames` (frame_seqs) on both sides."""
    spec = BY_NODE[node]
    both = [f for f in frames if f in replay and f in reference]
    result = NodeDiff(
        node,
        sum(f in replay for f in frames),
        sum(f in reference for f in frames),
        missing=[f for f in frames if (f in replay) != (f in reference)],
    )
    for name in spec.fields:
        tol = tolerances.get(f"{node}.{name}", tolerances.get(name, 0.0))
        fd = FieldDiff(name, tol)
        total, count = 0.0, 0
        for f in both:
            d = _distance(replay[f].get(name), reference[f].get(name))
            worst = float(d.max()) if d.size else 0.0
            fd.max_abs = max(fd.max_abs, worst)
            total, count = total + float(d.sum()), count + max(int(d.size), 1)
            if worst > tol:
                fd.differing += 1
                fd.first_frame = f if fd.first_frame is None else fd.first_frame
        fd.mean_abs = total / count if count else 0.0
        result.fields.append(fd)
    return result


def diff_answers(
    replay: dict[str, dict[int, dict]],
    reference: dict[str, dict[int, dict]],
    nodes: list[str],
    frames: list[int],
    tolerances: dict[str, float],
) -> list[NodeDiff]:
    """Compare every node of `nodes` that the reference holds answers of."""
    return [
        diff_node(n, replay.get(n, {}), reference[n], frames, tolerances)
        for n in nodes
        if reference.get(n)
    ]


def format_report(diffs: list[NodeDiff], skipped: list[str]) -> list[str]:
    """The human table: a verdict per node, then each field that moved."""
    lines = []
    for d in diffs:
        lines.append(
            f"{d.node:<15} {d.verdict:<8} answers {d.replay} replayed / {d.reference} reference"
            + (
                f", {len(d.missing)} frame(s) on one side only (first {d.missing[0]})"
                if d.missing
                else ""
            )
        )
        for f in d.fields:
            if f.max_abs == 0 and f.ok:
                continue
            first = f"first at frame {f.first_frame}" if f.first_frame is not None else ""
            lines.append(
                f"  {f.name:<16} max {f.max_abs:.6g}  mean {f.mean_abs:.3g}  tolerance "
                f"{f.tolerance:g}  {f.differing} frame(s) beyond  {first}".rstrip()
            )
    for node in skipped:
        lines.append(f"{node:<15} -        the reference holds no answers of {node}")
    return lines


def diff_json(diffs: list[NodeDiff]) -> dict:
    """Flat figures for the last JSON line: per node, verdict and differing fields."""
    out: dict = {"differing_fields": sum(not f.ok for d in diffs for f in d.fields)}
    for d in diffs:
        out[f"{d.node}_ok"] = d.ok
        out[f"{d.node}_answers"] = d.replay
        out[f"{d.node}_reference_answers"] = d.reference
        out[f"{d.node}_differing_fields"] = sum(not f.ok for f in d.fields)
        for f in d.fields:
            if f.max_abs:
                out[f"{d.node}_{f.name}_max_abs"] = f.max_abs
    out["ok"] = all(d.ok for d in diffs)
    return out
