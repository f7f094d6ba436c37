"""`rover eval`: pooled figures, regression verdicts, the report, and a real full-stack run."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from perception.infer import save_checkpoint
from perception.steering import evaluate
from perception.steering.model import SteeringModelConfig, build_model
from perception.steering.report import aggregate, compare, mdbc_interval, targets, write_html
from rover.errors import DataError


def run(driver="model", distance=50.0, collisions=0, elapsed=30.0, held_out=False, **kw):
    base = {
        "scenario": kw.pop("scenario", "forest_201"),
        "seed": 201,
        "driver": driver,
        "held_out": held_out,
        "run": "forest_201-s201",
        "distance_m": distance,
        "collisions": collisions,
        "elapsed_s": elapsed,
        "goal_progress": 1.0,
        "reached_goal": True,
        "min_clearance_m": 0.3,
        "steering_smoothness": 0.5,
        "late_frames": 0,
        "trajectory_png": None,
    }
    return base | kw


LIMITS = argparse.Namespace(max_autonomy_drop=2.0, max_mdbc_drop_pct=20.0, max_extra_collisions=1)


def test_aggregate_pools_distance_collisions_and_time():
    fig = aggregate([run(distance=60, collisions=1, elapsed=30), run(distance=40, elapsed=30)])
    assert fig["distance_m"] == 100 and fig["collisions"] == 1
    assert fig["mean_distance_between_collisions_m"] == 100
    assert fig["autonomy_pct"] == pytest.approx(90.0)  # 1 intervention = 6 s of 60 s
    assert fig["takeover_m"] == 0.0
    assert aggregate([run(takeover_m=4.5), run(takeover_m=1.5)])["takeover_m"] == 6.0
    failed = aggregate([run(), {"driver": "model", "error": "boom"}])
    assert failed["runs"] == 1 and failed["failed_runs"] == 1


def _report(model_runs, expert_runs=()):
    model_runs = [r | {"seed": i} for i, r in enumerate(model_runs)]
    runs = list(model_runs) + list(expert_runs)
    report = {
        "duration_s": None,
        "model": "m.pt",
        "model_arch": "dave",
        "suite": "regression",
        "seeds_per_scenario": 1,
        "created": "now",
        "overall": {
            "model": aggregate(list(model_runs)),
            "expert": aggregate(list(expert_runs)),
        },
        "held_out": {"model": aggregate([r for r in model_runs if r["held_out"]])},
        "scenarios": {"forest_201": {"held_out": False, "model": aggregate(list(model_runs))}},
        "runs": runs,
    }
    report["targets"] = targets(report)
    return report


def test_targets_are_judged_on_held_out_scenarios_only():
    clean = _report([run(distance=250, held_out=True), run(collisions=5)])
    assert clean["targets"]["met"]
    crashy = _report([run(distance=250, collisions=2, held_out=True)])
    assert not crashy["targets"]["met"]


def test_targets_say_when_too_little_distance_was_driven_to_judge():
    short = _report([run(distance=150, held_out=True)])["targets"]
    assert not short["met"] and short["verdict"].startswith("too little distance")
    assert short["held_out_mdbc_95ci_m"][1] is None  # no collision: no upper bound
    long = _report([run(distance=300, held_out=True)])["targets"]
    assert long["met"] and long["verdict"].startswith("met on 300 m, too little to be sure")


def test_targets_are_judged_plainly_only_when_the_interval_excludes_the_target():
    unsure = _report([run(distance=201, collisions=1, held_out=True)])["targets"]
    assert unsure["verdict"].startswith("not met on 201 m, too little to be sure")
    sure = _report([run(distance=10_000, collisions=5, held_out=True)])["targets"]
    assert sure["held_out_mdbc_95ci_m"][0] > 200 and sure["verdict"] in ("met", "not met")
    bad = _report([run(distance=1000, collisions=20, held_out=True)])["targets"]
    assert bad["held_out_mdbc_95ci_m"][1] < 200 and bad["verdict"] == "not met"


def test_mdbc_interval_is_the_exact_poisson_one():
    # textbook exact limits for 6 events: mean in [2.2018, 13.0591]
    low, high = mdbc_interval(1000.0, 6)
    assert low == pytest.approx(1000 / 13.0591, rel=1e-3)
    assert high == pytest.approx(1000 / 2.2018, rel=1e-3)
    # none: the 95% upper limit of the mean is 3.689 (the "rule of three" for one side: 3.0)
    assert mdbc_interval(1000.0, 0)[0] == pytest.approx(1000 / 3.6889, rel=1e-3)


def test_a_regression_beyond_the_threshold_is_reported():
    old = _report([run(elapsed=300), run(elapsed=300)])
    # one collision in 10 minutes: autonomy -1 point, MDBC unchanged: within the limits
    same = _report([run(collisions=1, elapsed=300), run(elapsed=300)])
    worse = _report([run(collisions=3, elapsed=300), run(elapsed=300)])
    assert compare(same, old, LIMITS) == []
    problems = compare(worse, old, LIMITS)
    assert any(p.startswith("common runs collisions") for p in problems)
    assert any(p.startswith("common runs autonomy_pct") for p in problems)


def test_a_short_suite_is_compared_on_the_runs_it_shares_with_the_baseline():
    full = _report([run(elapsed=300), run(collisions=4, elapsed=300)])
    first_only = _report([run(elapsed=300)])  # same (scenario, seed) as full's first run
    assert compare(first_only, full, LIMITS) == []
    other = dict(first_only, duration_s=20.0)
    assert "not comparable" in compare(other, full, LIMITS)[0]
    # a report from before the safety driver (none) against one with it: refused too
    rescued = dict(first_only, safety_driver_s=3.0)
    assert "--safety-driver" in compare(rescued, full, LIMITS)[0]
    assert compare(dict(full, safety_driver_s=0.0), full, LIMITS) == []


def test_html_page_has_the_table_and_every_picture(tmp_path):
    png = tmp_path / "runs" / "model" / "forest_201-s201.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG")
    report = _report([run(trajectory_png=str(png))], [run(driver="expert")])
    page = write_html(report, tmp_path / "report.html").read_text()
    assert "<table>" in page and "MDBC m" in page
    assert 'src="runs/model/forest_201-s201.png"' in page


def test_runs_capped_by_duration_say_so_in_the_summary_and_the_page(tmp_path, capsys):
    report = _report([run()]) | {"duration_s": 20.0, "safety_driver_s": 3.0}
    report["data_budget"] = {"total_min": 1.0, "demonstration_min": 1.0, "perturbed_min": 0.3}
    report["data_budget"] |= {"takeover_min": 0.0}
    evaluate._print_summary(report, tmp_path)
    page = write_html(report, tmp_path / "report.html").read_text()
    printed = capsys.readouterr().out
    said = "runs capped at 20 s of simulated time by --duration"
    assert said in printed and said in page
    budget = "1.0 min of data: 1.0 min of demonstrations (0.3 min of them perturbed), 0.0 min of"
    assert budget in printed and budget in page  # every figure with its unit, both places
    full = _report([run()]) | {"safety_driver_s": 3.0}
    evaluate._print_summary(full, tmp_path)
    assert "by --duration" not in capsys.readouterr().out
    assert "by --duration" not in write_html(full, tmp_path / "full.html").read_text()


def test_extra_worlds_come_from_the_reserved_range():
    seeds = evaluate.extra_seeds(201, 3)
    assert seeds[0] == 201 and all(s >= 90_000 for s in seeds[1:]) and len(set(seeds)) == 3


def test_a_bad_config_value_stops_eval_before_any_stack_starts(tmp_path, capsys):
    model = save_checkpoint(
        tmp_path / "m.pt", build_model(SteeringModelConfig(arch="dave")), 0.6, {}
    )
    argv = ["--model", str(model), "--out", str(tmp_path / "eval"), "--quiet"]
    assert evaluate.main([*argv, "--set", "steering.precision=fp8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision = 'fp8'" in err[0]
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_eval_runs_the_full_stack_and_writes_the_report(tmp_path):
    torch.manual_seed(0)
    model = save_checkpoint(
        tmp_path / "m.pt", build_model(SteeringModelConfig(arch="dave")), 0.6, {}
    )
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--only", "open_101", "--duration", "2", "--out", str(out)]
    argv += ["--set", "steering.precision=bf16"]  # every stack's steering node gets it
    code = evaluate.main([*argv, "--quiet"])
    report = json.loads((out / "report.json").read_text())
    assert code == 0, report["runs"]
    for driver in ("model", "expert"):
        fig = report["overall"][driver]
        assert fig["runs"] == 1 and fig["distance_m"] > 0
        for key in ("collisions", "mean_distance_between_collisions_m", "autonomy_pct"):
            assert key in fig and key in report["scenarios"]["open_101"][driver]
    assert (out / "report.html").is_file()
    assert all(r["trajectory_png"] for r in report["runs"])
    assert report["safety_driver_s"] == evaluate.SAFETY_DRIVER_S
    assert all("takeover_m" in r for r in report["runs"])
    assert report["inference"] == {"device": "cpu", "precision": "bf16"}
    assert report["duration_s"] == 2 and report["capped_by_duration"]
    # the same model against its own report: no regression
    assert evaluate.main([*argv, "--quiet", "--baseline", str(out / "report.json")]) == 0


@pytest.mark.slow
def test_bundled_model_drives_the_held_out_scenarios_without_regressing(tmp_path):
    """CI's short suite: the shipped model, full stack, against the report shipped with it."""
    from perception.steering.bundled import BUNDLED_REPORT, bundled_model_path

    model = bundled_model_path()
    assert model is not None, "perception/steering/bundled/steering.pt is missing"
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--only", "heldout_*", "--no-expert", "--out", str(out)]
    code = evaluate.main([*argv, "--quiet", "--baseline", str(BUNDLED_REPORT)])
    report = json.loads((out / "report.json").read_text())
    # no regression against its own report: collisions, MDBC, autonomy and goal progress
    assert code == 0, report.get("regressions")
    held = report["held_out"]["model"]
    assert held["runs"] == 3 and held["distance_m"] > 150, report["runs"]


# The verdict never reads as perfect for a driver that does not move: distance and goals are
# in it, and a stalled driver fails the targets whatever its autonomy says.


def test_a_driver_that_barely_moves_fails_with_the_reason():
    stalled = [run(distance=1.3, held_out=True, goal_progress=0.0, reached_goal=False)] * 3
    report = _report(stalled)
    t = report["targets"]
    assert report["held_out"]["model"]["autonomy_pct"] == 100.0  # no collision: no intervention
    assert not t["met"]
    assert t["verdict"].startswith("not met: the model barely moved (3.9 m in 3 run(s))")
    assert t["driven"] == "3.9 m driven, 0 of 3 goals reached (goal progress 0.00)"


def test_the_verdict_says_what_was_driven(tmp_path):
    report = _report([run(distance=300, held_out=True)])
    assert (
        report["targets"]["driven"] == "300.0 m driven, 1 of 1 goals reached (goal progress 1.00)"
    )
    page = write_html(report, tmp_path / "report.html").read_text()
    assert "300.0 m driven, 1 of 1 goals reached" in page
    assert "<th>goals reached</th>" in page and "<td>1/1</td>" in page


def test_an_empty_model_fails_before_any_run(tmp_path, cli_args):
    """Not after the suite's expert runs: at once, in one line."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    args = cli_args(evaluate, ["--model", str(empty), "--out", str(tmp_path / "out")])
    with pytest.raises(DataError, match=r"is empty \(0 bytes\)"):
        evaluate.run(args)
    assert not (tmp_path / "out").exists()
