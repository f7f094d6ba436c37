"""The user's path and the fast path give the same demonstrations: `rover drive --sim --model
expert --perturb --record` through the real stack, and the in-process generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from perception.steering.demos import EpisodeSpec, episode_samples
from rover.recording.reader import open_sessions
from rover.topics import BusConfig

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def bus_cfg() -> BusConfig:
    """A private namespace for the stack, removed afterwards."""
    cfg = BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    yield cfg
    cfg.remove_ipc_root()


ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def _record(tmp_path: Path, namespace: str, *extra: str) -> list:
    drive = subprocess.run(
        [sys.executable, "-m", "rover.cli", "drive", "--model", "expert", "--headless",
         "--lockstep", "--namespace", namespace, "--record", str(tmp_path / "recs"), *extra],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert drive.returncode == 0, drive.stderr[-2000:]
    (session,) = open_sessions([tmp_path / "recs"])
    return list(session.samples())


@pytest.mark.slow
def test_a_perturbed_recording_has_the_in_process_labels_and_frames(bus_cfg, tmp_path):
    recorded = _record(
        tmp_path, bus_cfg.namespace, "--sim", "forest", "--seed", "1234", "--duration", "4",
        "--perturb", "0.8,0.5",
    )  # fmt: skip
    spec = EpisodeSpec(
        families=("forest",), first_seed=1234, perturb_rate_hz=0.8, perturb_steering=0.5
    )
    fast = list(episode_samples(spec, 0, limit=len(recorded)))
    assert len(recorded) == len(fast) == 120
    perturbation = np.array([s.perturbation for s in recorded])
    assert (perturbation != 0).sum() > 10, "a 4 s run at 0.8 spans/s perturbs some frames"
    for name in ("steering", "throttle", "perturbation"):
        mine = np.array([getattr(s, name) for s in recorded])
        theirs = np.array([getattr(s, name) for s in fast])
        np.testing.assert_allclose(mine, theirs, atol=1e-9, err_msg=name)
    # the label is the expert's command, not what the motors got
    assert all(s.source == "expert" for s in recorded)
    # the same views; the recording's are JPEG q90
    for a, b in zip(recorded[::30], fast[::30], strict=True):
        diff = np.abs(a.left.astype(np.int16) - b.left).mean()
        assert diff < 6.0, diff


@pytest.mark.slow
def test_a_long_recording_goes_on_with_the_next_worlds_of_each_family(bus_cfg, tmp_path):
    families = []
    for base in ("open", "corridor"):  # 8 m worlds: a few seconds each
        path = tmp_path / f"short_{base}.toml"
        path.write_text(f'base = "{base}"\n[task]\nlength_m = 8.0\n')
        families.append(str(path))
    metrics = tmp_path / "m.json"
    recorded = _record(
        tmp_path, bus_cfg.namespace, "--sim", ",".join(families), "--duration", "14",
        "--randomise-materials", "1", "--metrics-out", str(metrics),
    )  # fmt: skip
    summary = json.loads(metrics.read_text())
    assert len(recorded) == 14 * 30  # one session, frames of every world, no gap
    worlds = summary["episodes"]
    assert len(worlds) >= 3 and summary["elapsed_s"] == pytest.approx(14.0, abs=0.05)
    names = [e["scenario"] for e in worlds]
    assert names[:3] == ["short_open-repainted", "short_corridor-repainted", "short_open-repainted"]
    assert summary["goals_reached"] >= 2
    assert all(1000 <= e["seed"] < 90_000 for e in worlds[1:])  # the training range
