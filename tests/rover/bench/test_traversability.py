"""`rover bench traversability`: every stage timed against the SGBM floor, flat figures."""

from __future__ import annotations

import json

from perception.traversability.model import SegmenterNet, save_model
from rover.bench import traversability as bench


def test_bench_reports_every_stage_against_the_sgbm_floor(
    tmp_path, cli_args, stereo_geometry, tiny_segmenter
):
    model = save_model(tmp_path / "m.pt", SegmenterNet(tiny_segmenter).eval(), stereo_geometry)
    result = bench.run(cli_args(bench, ["--model", str(model), "--frames", "12", "--repeats", "1"]))
    for stage in bench.STAGES:
        assert result[f"{stage}_p50_ms"] > 0
    assert result["floor_p50_ms"] > 0 and result["p50_ms"] == result["total_p50_ms"]
    assert result["total_over_floor"] > 1.0
    json.dumps(result)
