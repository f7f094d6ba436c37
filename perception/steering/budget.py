"""The data budget: how many minutes of which kind of data a model learned from.

A frame's kind (``FrameSet.kind``): the demonstrator drove it (a person, or the simulator's
expert; perturbed or not); the demonstrator took the wheel from the model (a take-over,
HG-DAgger); or the model drove and a privileged expert labelled it afterwards (DAgger: the
simulator's in-process fast path only, never a user's recording).
"""

from __future__ import annotations

from typing import Any

DEMONSTRATION, TAKEOVER, RELABELLED = 0, 1, 2
KINDS = ("demonstration", "takeover", "relabelled")


def data_budget(frames: Any, rate_hz: float = 30.0) -> dict[str, Any]:
    """Minutes of each kind of data a model learns from (what "20 minutes" means): frames
    the demonstrator drove, the perturbed part of them, take-overs, and frames the model
    drove that a privileged expert labelled (DAgger, simulator only)."""
    minutes = 1.0 / rate_hz / 60.0
    demo = frames.kind == DEMONSTRATION
    return {
        "total_min": round(len(frames) * minutes, 2),
        "demonstration_min": round(int(demo.sum()) * minutes, 2),
        "perturbed_min": round(int((demo & (frames.perturbation != 0)).sum()) * minutes, 2),
        "takeover_min": round(int((frames.kind == TAKEOVER).sum()) * minutes, 2),
        "relabelled_min": round(int((frames.kind == RELABELLED).sum()) * minutes, 2),
        "skipped_learner_frames": frames.skipped_learner,
        "skipped_stale_frames": frames.skipped_stale,
    }


def budget_text(budget: dict[str, Any]) -> str:
    """The data budget in one line, for the training log and `rover eval`."""
    text = (
        f"{budget['total_min']:.1f} min of data: {budget['demonstration_min']:.1f} min of "
        f"demonstrations ({budget['perturbed_min']:.1f} min of them perturbed), "
        f"{budget['takeover_min']:.1f} min of take-overs"
    )
    if budget.get("relabelled_min"):
        text += (
            f", {budget['relabelled_min']:.1f} min of model driving labelled by the sim's expert"
        )
    skipped = budget.get("skipped_learner_frames", 0) + budget.get("skipped_stale_frames", 0)
    if skipped:
        text += f"; skipped {skipped} frames without a demonstrator's live command"
    return text
