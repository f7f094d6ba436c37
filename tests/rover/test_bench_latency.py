"""`rover bench latency`: glass-to-motor on a rig of its own, stages that add up, a JSON line,
and the figure the simulator's camera delay defaults to."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.rover.rig_helpers import rover

MEASURED = "from rover.bench.latency import measured_camera_latency_ms as m; print(m())"


def _sim_default(env: dict) -> float:
    done = subprocess.run([sys.executable, "-c", MEASURED], env=env, capture_output=True, text=True)
    return float(done.stdout)


def test_the_simulator_default_camera_delay_is_the_committed_figure_until_a_bench_ran(
    rig_env, tmp_path
):
    from rover.bench.latency import DEFAULT_CAMERA_LATENCY_MS

    env = {**rig_env, "XDG_STATE_HOME": str(tmp_path / "state")}
    assert _sim_default(env) == DEFAULT_CAMERA_LATENCY_MS
    (tmp_path / "state" / "rover").mkdir(parents=True)
    (tmp_path / "state" / "rover" / "latency.json").write_text('{"camera_latency_ms": 3.25}')
    assert _sim_default(env) == 3.25


@pytest.mark.slow
def test_bench_latency_times_glass_to_motor_stage_by_stage(rig_env, tmp_path):
    env = {**rig_env, "XDG_STATE_HOME": str(tmp_path / "state")}
    done = rover("bench", "latency", "--seconds", "3", "--baud", "115200", env=env, timeout_s=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["frames"] >= 30 and result["baud"] == 115200 and result["traversability"]
    stages = ("capture_publish", "bus", "steering", "control", "serial")
    for key in ("p50_ms", "p99_ms", "floor_p50_ms", "ctrl_c_s"):
        assert result[key] > 0
    for stage in stages:
        assert f"{stage}_p50_ms" in result and result[f"{stage}_floor_p50_ms"] > 0
    # 13 bytes at 115200 baud take 1.1 ms on the wire: the serial stage and its floor see it
    assert result["serial_floor_p50_ms"] >= 1.1 and result["serial_p50_ms"] >= 1.0
    assert "end to end" in done.stdout and "floor p50 ms" in done.stdout
    assert _sim_default(env) == result["capture_publish_p50_ms"]
