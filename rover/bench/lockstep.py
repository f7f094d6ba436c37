"""The whole stack in lock-step (or real time): sim → camera/stereo → control → serial pty → emulator → sim."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rover.runspec import sim_request
from rover.stack import run_stack


def measure_lockstep(
    scenario: str,
    seed: int | None,
    seconds: float,
    model: str = "expert",
    lockstep: bool = True,
):
    """Run `rover drive --sim [--lockstep]` headless; return the simulator's run summary."""
    with tempfile.TemporaryDirectory(prefix="rover-bench-") as tmp:
        out = Path(tmp) / "run.json"
        request = sim_request(
            scenario, model, out, duration_s=seconds, seed=seed, lockstep=lockstep, summary=False
        )
        if run_stack(request) != 0 or not out.exists():
            mode = "lock-step" if lockstep else "real-time"
            raise RuntimeError(f"the {mode} stack run failed (see the error above)")
        return json.loads(out.read_text())
