"""The whole stack in lock-step: sim → camera/stereo → control → serial pty → emulator → sim."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rover.runspec import sim_request
from rover.stack import run_stack


def measure_lockstep(scenario: str, seed: int | None, seconds: float, model: str = "expert"):
    """Run `rover drive --sim --lockstep` headless; return the simulator's run summary."""
    with tempfile.TemporaryDirectory(prefix="rover-bench-") as tmp:
        out = Path(tmp) / "run.json"
        request = sim_request(scenario, model, out, duration_s=seconds, seed=seed, summary=False)
        if run_stack(request) != 0 or not out.exists():
            raise RuntimeError("the lock-step stack run failed (see the error above)")
        return json.loads(out.read_text())
