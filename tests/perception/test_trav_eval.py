"""`rover eval traversability`: the table and JSON keys, and the closed loop with the guard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from perception import trav_eval
from perception.traversability import closed_loop
from perception.traversability.model import SegmenterNet, save_model
from perception.traversability.pipeline import TraversabilityPipeline
from rover.errors import DataError
from sim.policies import Straight
from sim.simulation import Simulation

REGRESSION = Path(__file__).resolve().parents[2] / "sim" / "scenarios" / "regression"


def test_guard_turns_a_crash_into_a_stop(scene, tree):
    wall = [tree(6.0 + 0.0, y, radius=0.25, height=3.0) for y in np.arange(-3.0, 3.01, 0.45)]
    noise = closed_loop.NoiseConfig(sigma=0.0)

    def run(with_guard: bool) -> dict:
        sim = Simulation.from_world(scene(wall).world)
        pipe = TraversabilityPipeline() if with_guard else None
        return closed_loop.drive(sim, noise, pipe, None, max_steps=120, policy=Straight())

    blind, guarded = run(False), run(True)
    assert blind["collisions"] >= 1
    assert guarded["collisions"] == 0 and guarded["guard_limited_steps"] > 0
    assert guarded["distance_m"] > 4.0  # it drove up to the trees, then stopped


def test_eval_cli_prints_a_table_and_the_json_keys(
    tmp_path, capsys, cli_args, stereo_geometry, tiny_segmenter
):
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(REGRESSION / "heldout_birch_snow_90001.toml", suite)
    model = save_model(tmp_path / "m.pt", SegmenterNet(tiny_segmenter).eval(), stereo_geometry)
    out_json = tmp_path / "report.json"
    args = ["--model", str(model), "--suite", str(suite), "--max-steps", "7"]
    assert trav_eval.run(cli_args(trav_eval, [*args, "--json", str(out_json)])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    for key in (
        "near_iou_stereo",
        "near_iou_learned",
        "far_iou_stereo",
        "far_iou_learned",
        "far_iou_online",
        "far_iou_stereo_fullrange",
        "near_acc_fused",
    ):
        assert key in report
    assert report["pooled_over"] == "held_out" and report["scenarios"][0]["frames"] == 7
    assert report["near_iou_stereo"] > 0.5  # birches stand near the start
    assert json.loads(out_json.read_text())["near_iou_stereo"] == report["near_iou_stereo"]
    assert any(line.startswith("stereo ") for line in lines)
    with pytest.raises(DataError, match="not a folder"):
        trav_eval.run(cli_args(trav_eval, ["--suite", str(tmp_path / "nope")]))


def test_closed_loop_drives_a_steering_checkpoint_over_extra_worlds(tmp_path, capsys, cli_args):
    """`--steering MODEL --seeds 2`: the CNN drives the held-out world and one reserved world,
    guard off and on, and the report names it."""
    from perception.infer import save_checkpoint
    from perception.steering.model import SteeringModelConfig, build_model

    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(REGRESSION / "heldout_birch_snow_90001.toml", suite)
    steering = save_checkpoint(
        tmp_path / "s.pt", build_model(SteeringModelConfig(arch="dave")), 0.6, {}
    )
    args = ["--model", "", "--suite", str(suite), "--max-steps", "20", "--closed-loop"]
    args += ["--steering", str(steering), "--seeds", "2"]
    assert trav_eval.run(cli_args(trav_eval, args)) == 0
    loop = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["closed_loop"]
    assert loop["steering"] == str(steering) and loop["noise_sigma"] == 0.0
    assert [r["seed"] for r in loop["per_scenario"]][0] == 90001
    assert len({r["seed"] for r in loop["per_scenario"]}) == 2
    assert loop["distance_off_m"] > 0 and loop["distance_on_m"] > 0
