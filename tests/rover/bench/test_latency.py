"""`rover bench latency`: glass-to-motor on a rig of its own, stages that add up, a JSON line,
and the figure the simulator's camera delay defaults to."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

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
def test_bench_latency_times_glass_to_motor_stage_by_stage(rig_env, tmp_path, rover_cli):
    env = {**rig_env, "XDG_STATE_HOME": str(tmp_path / "state")}
    done = rover_cli(
        "bench", "latency", "--seconds", "3", "--baud", "115200", env=env, timeout_s=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["frames"] >= 30 and result["baud"] == 115200 and result["traversability"]
    stages = ("capture_publish", "bus", "steering", "control", "serial")
    for key in ("p50_ms", "p99_ms", "floor_p50_ms", "floor_p99_ms", "ctrl_c_s"):
        assert result[key] > 0
    assert result["floor_p99_ms"] >= result["floor_p50_ms"]
    for stage in stages:
        assert f"{stage}_p50_ms" in result and result[f"{stage}_floor_p50_ms"] > 0
        assert result[f"{stage}_floor_p99_ms"] >= result[f"{stage}_floor_p50_ms"]
    # 13 bytes at 115200 baud take 1.1 ms on the wire: the serial floor sees it (the stage in
    # the stack is timed from control's ControlCommand stamp, taken just after its write, so a
    # loaded machine can make it read shorter than the wire; it is never negative)
    assert result["serial_floor_p50_ms"] >= 1.1 and result["serial_p50_ms"] > 0
    assert result["bus_p50_ms"] >= 0 and result["control_p50_ms"] >= 0  # causal, never negative
    assert "end to end" in done.stdout and "floor p50 ms" in done.stdout
    assert _sim_default(env) == result["capture_publish_p50_ms"]


def test_stages_add_up_to_glass_to_motor_and_a_late_listener_moves_no_time_backwards():
    from rover.bench.latency import Trace

    ms = 1_000_000
    trace = Trace()
    # frame 1: heard on time; frame 2: this listener heard the frame and the estimate late
    for frame, (seen_frame, seen_est) in {1: (2, 6), 2: (9, 12)}.items():
        base = frame * 1000 * ms
        trace.frame_recv_ns[frame] = base + seen_frame * ms
        trace.estimates[frame] = (base, base + seen_est * ms, 3.0)  # capture, seen, in node
        trace.drives[frame] = (frame, base + 7 * ms)  # drive_seq, written
    arrivals = {1: 1000 * ms + 8 * ms, 2: 2000 * ms + 8 * ms}
    stages = trace.stages(arrivals)
    assert stages["e2e"] == [8.0, 8.0]
    for i in range(2):
        parts = [stages[s][i] for s in ("capture_publish", "bus", "steering", "control", "serial")]
        assert sum(parts) == pytest.approx(stages["e2e"][i]) and min(parts) >= 0
    assert stages["capture_publish"] == [2.0, 4.0]  # frame 2: capped at written - in node
    assert stages["control"] == [1.0, 0.0] and stages["serial"] == [1.0, 1.0]


def test_the_floors_tail_is_that_of_the_stages_work_added_up():
    from rover.bench.latency import STAGES, floor_sum_p99

    steady = {s: [1.0] * 100 for s in STAGES}
    assert floor_sum_p99(steady) == 5.0
    # one stage slow in 1 of 10 samples: its 1-in-10 tail shows in the sum's p99, whole
    spiky = {**steady, "steering": [1.0] * 90 + [11.0] * 10}
    assert floor_sum_p99(spiky) == 15.0
    assert np.isnan(floor_sum_p99({**steady, "serial": []}))
