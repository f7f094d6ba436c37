"""`rover bench faults`: the fault-reaction figures the stack tests leave to a bench."""

import json
import subprocess
import sys


def test_bench_faults_prints_a_table_and_the_figures_as_json():
    result = subprocess.run(
        [sys.executable, "-m", "rover.cli", "bench", "faults", "--trials", "2", "--restarts", "1"]
        + ["--stops", "1", "--recorder-kills", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    *table, last = result.stdout.strip().splitlines()
    figures = json.loads(last)
    assert "teleop silent -> stale command" in "\n".join(table)
    # the control node never calls an input stale before stale_ms (the floor)
    assert figures["stale_p50_ms"] >= figures["floor_stale_ms"] == 200.0
    assert figures["motors_zero_p50_ms"] >= figures["floor_stale_ms"]
    assert figures["restart_p50_s"] > 0 and figures["stop_p50_s"] > 0
    # frames sent before the kill and lost: never negative, the flush period is the floor
    assert figures["recorder_lost_p50_s"] >= 0 and figures["floor_flush_s"] == 0.5
    assert "recorder killed -> frames lost" in "\n".join(table)
