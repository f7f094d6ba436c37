"""`rover bench camera`: the eye-to-eye skew against one grab, the figure the contract test
leaves to it."""

from __future__ import annotations

from rover.bench import camera as bench


def test_bench_reports_skew_against_one_grab_and_the_target(capsys, cli_args):
    result = bench.run(cli_args(bench, ["--frames", "30"]))
    assert result["frames"] == 30 and result["target_skew_ms"] == 5.0
    assert 0 <= result["skew_p50_ms"] <= result["skew_p99_ms"] and result["floor_p50_ms"] > 0
    assert result["met"] == (result["skew_p50_ms"] < 5.0) and result["pairs_per_s"] > 0
    out = capsys.readouterr().out
    assert "eye-to-eye skew" in out and "one grab (floor)" in out
