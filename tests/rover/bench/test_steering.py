"""`rover bench infer` and `rover bench train`: a table, then flat figures with their floors."""

from __future__ import annotations

import argparse
import json

import pytest

from rover.bench import infer, train


def _args(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def _flat(result: dict) -> None:
    json.dumps(result)
    assert all(not isinstance(v, (dict, list)) for v in result.values())


@pytest.mark.slow
def test_bench_train_compares_the_loop_with_bare_forward_backward(capsys):
    argv = ["--arch", "dave", "--batch-size", "8", "--batches", "4", "--repeats", "1"]
    result = train.run(_args(train, [*argv, "--workers", "1", "--threads", "1"]))
    _flat(result)
    assert result["samples_per_s"] > 0 and result["floor_samples_per_s"] > 0
    assert result["efficiency_pct"] == pytest.approx(
        100 * result["samples_per_s"] / result["floor_samples_per_s"], rel=0.01
    )
    assert "training loop" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_infer_times_the_node_against_the_bare_forward(capsys):
    result = infer.run(_args(infer, ["--arch", "dave", "--frames", "15", "--model", ""]))
    _flat(result)
    for key in ("p50_ms", "p99_ms", "e2e_p50_ms", "floor_p50_ms", "predict_p50_ms"):
        assert result[key] > 0, key
    # the node's own time per frame lies inside the end-to-end time of the same frame
    assert result["e2e_p50_ms"] > result["p50_ms"], result
    assert result["e2e_p99_ms"] > result["p99_ms"], result
    assert result["drops"] <= 1, result  # a 1 s stall on a shared machine: not a bug
    assert "node: frame received -> estimate sent" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_train_times_the_real_recipe_on_a_recording(tmp_path, capsys):
    import os
    import subprocess
    import sys
    import uuid

    from rover.topics import BusConfig

    bus_cfg = BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    cmd = [sys.executable, "-m", "rover.cli", "drive", "--sim", "forest", "--headless"]
    cmd += ["--lockstep", "--duration", "6", "--record", str(tmp_path / "rec")]
    try:
        done = subprocess.run(
            [*cmd, "--namespace", bus_cfg.namespace], env=env, capture_output=True, timeout=180
        )
    finally:
        bus_cfg.remove_ipc_root()
    assert done.returncode == 0, done.stderr[-2000:]
    argv = ["--batch-size", "8", "--batches", "2", "--repeats", "1", "--workers", "0"]
    result = train.run(_args(train, [*argv, "--recording", str(tmp_path / "rec")]))
    _flat(result)
    assert result["recipe_frames"] == 180 and result["recipe_epochs"] == 2  # the defaults
    assert result["recipe_total_s"] > 0 and result["recipe_floor_s"] > 0
    assert result["load_avg_before"] >= 0
    assert "recipe: rover train steering REC" in capsys.readouterr().out
