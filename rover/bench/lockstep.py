"""The whole stack in lock-step: sim → camera/stereo → control → serial pty → emulator → sim."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from rover.stack import run_stack


def measure_lockstep(scenario: str, seed: int | None, seconds: float, model: str = "expert"):
    """Run `rover drive --sim --lockstep` headless; return the simulator's run summary."""
    out = Path(tempfile.mkdtemp(prefix="rover-bench-")) / "run.json"
    args = argparse.Namespace(
        mode="drive",
        sim=scenario,
        model=model,
        seed=seed,
        headless=True,
        lockstep=True,
        duration=seconds,
        metrics_out=str(out),
        snapshot=None,
        config=None,
        set=[],
        namespace=f"bench{os.getpid()}",
    )
    if run_stack(args) != 0 or not out.exists():
        raise RuntimeError("the lock-step stack run failed (see the error above)")
    return json.loads(out.read_text())
