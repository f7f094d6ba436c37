"""Shared helpers for `rover bench ...`: latency summaries and the human table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rover.table import print_table

__all__ = ["expert_frames", "latency_summary", "print_table"]


def latency_summary(values_ms: Sequence[float]) -> dict:
    """p50/p99/max of a list of latencies in milliseconds (NaN when empty)."""
    if not len(values_ms):
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "n": 0}
    arr = np.asarray(values_ms, dtype=float)
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
        "n": int(arr.size),
    }


def expert_frames(
    scenario: str, count: int, seed: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` stereo pairs rendered along the simulator expert's drive (benchmark inputs)."""
    from sim.expert import Expert
    from sim.simulation import Simulation

    sim, expert, pairs = Simulation(scenario, seed), Expert(), []
    while len(pairs) < count:
        if sim.done:
            sim.reset()
            expert.reset()
        left, right, _ = sim.render()
        pairs.append((left, right))
        sim.step(*expert.act(sim.observation()))
    return pairs
