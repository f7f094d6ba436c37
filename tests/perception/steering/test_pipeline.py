"""The one-command steering pipeline: record, train, correct; reproducible and timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from perception.infer import load_checkpoint

TINY = ["--demo-minutes", "0.3", "--rounds", "1", "--correction-minutes", "0.1"]
TINY += ["--epochs", "1", "--correction-epochs", "1", "--arch", "dave", "--skip-eval", "--quiet"]


@pytest.mark.slow
def test_pipeline_from_nothing_twice_gives_the_same_model_bit_for_bit_and_its_times(tmp_path):
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    outputs = []
    for run in ("a", "b"):
        done = subprocess.run(
            [sys.executable, "-m", "perception.steering.pipeline", "--out", str(tmp_path / run)]
            + TINY,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    a, b = (load_checkpoint(tmp_path / run / "steering.pt").state_dict for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "min from the demonstrations to the model" in outputs[0]
    times = json.loads(outputs[0].strip().splitlines()[-1])
    assert times["to_model_min"] == pytest.approx(
        times["train_min"] + times["correct_min"], abs=0.02
    )
    assert times["total_min"] == pytest.approx(
        times["to_model_min"] + times["record_min"], abs=0.02
    )
