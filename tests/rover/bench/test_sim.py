"""`rover bench sim`: runs headless, prints a table, returns the flat figures."""

from __future__ import annotations

import argparse
import json

from rover.bench import sim as bench


def test_bench_returns_flat_json_ready_figures(capsys):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["--scenario", "open", "--frames", "20", "--repeats", "1", "--lockstep-s", "2"]
        + ["--realtime-s", "1"]
    )
    result = bench.run(args)
    json.dumps(result)
    assert all(not isinstance(v, (dict, list)) for v in result.values())
    for key in (
        "render_pairs_per_s",
        "render_gt_pairs_per_s",
        "sim_steps_per_s",
        "floor_p50_ms",
        "lockstep_steps_per_s",
        "realtime_steps_per_s",
    ):
        assert result[key] > 0, key
    assert result["lockstep_late_frames"] == 0
    assert result["scenario"] == "open" and result["threads"] == 1
    out = capsys.readouterr().out
    assert "render (images)" in out and "sim step" in out and "in real time" in out
    assert result["realtime_target_steps_per_s"] == 30.0
