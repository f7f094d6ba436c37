"""The node on a real bus, the message on the wire, and the CLI entry points end to end."""

from __future__ import annotations

import argparse
import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from perception import trav_eval
from perception.traversability import closed_loop, train
from perception.traversability.model import SegmenterNet, load_model, save_model
from perception.traversability.pipeline import TraversabilityConfig, TraversabilityPipeline
from perception.traversability.polar import PolarSummary
from rover import bus, topics
from rover import messages as m
from rover.bench import traversability as bench
from rover.errors import ConfigError, DataError
from rover.messages import TraversabilityMap
from rover.nodes.traversability import TraversabilityNode
from rover.topics import PERCEPTION_TRAVERSABILITY
from sim.policies import Straight
from sim.simulation import Simulation
from tests.perception.test_stereo import GEOM, scene, tree
from tests.perception.test_traversability import TINY

REGRESSION = Path(__file__).resolve().parents[2] / "sim" / "scenarios" / "regression"


def parse(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_message_round_trips_on_the_wire():
    msg = TraversabilityMap(
        seq=3,
        stamp_ns=42,
        frame_seq=7,
        cost=np.arange(60 * 80, dtype=np.uint8).reshape(60, 80),
        arcs=np.stack([np.linspace(-1, 1, 15), np.arange(15)]).astype(np.float32),
        plane_height_m=0.25,
        plane_fitted=True,
        online_updates=5,
        latency_ms=9.5,
        model="abc",
    )
    back = m.decode(m.encode(PERCEPTION_TRAVERSABILITY.wire_name, msg), TraversabilityMap)
    np.testing.assert_array_equal(back.cost, msg.cost)
    polar = PolarSummary.from_arcs(back.arcs)
    assert polar.free_m[14] == 14.0 and polar.steering[0] == -1.0
    assert (back.frame_seq, back.plane_fitted, back.model) == (7, True, "abc")


def test_node_answers_the_newest_frame_with_a_map_and_arcs():
    bus_cfg = topics.BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    left, right, _ = scene([tree(3.15, 0.0, radius=0.2)]).render()
    camera = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
    node = TraversabilityNode(TraversabilityConfig(model=""), bus_cfg, GEOM)
    out = bus.Subscriber(PERCEPTION_TRAVERSABILITY, bus_cfg)
    try:
        deadline = time.monotonic() + 10.0
        got = None
        while got is None and time.monotonic() < deadline:
            # keep sending until both connections are up (ZeroMQ's slow joiner)
            sent = camera.publish(m.StereoImage(left=left, right=right, stamp_ns=123))
            if node.spin_once(timeout_ms=50) is not None:
                got = out.receive(timeout_ms=200)
        assert got is not None, "no traversability map within 10 s"
        assert got.stamp_ns == 123 and got.frame_seq <= sent.frame_seq
        assert got.cost.shape == (60, 80)
        polar = PolarSummary.from_arcs(got.arcs)
        assert polar.free_at(0.0) == pytest.approx(2.65, abs=0.35)
        assert got.latency_ms > 0 and got.model == ""
    finally:
        node.close()
        camera.close()
        out.close()
        bus_cfg.remove_ipc_root()


def test_guard_turns_a_crash_into_a_stop():
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


def test_eval_cli_prints_a_table_and_the_json_keys(tmp_path, capsys):
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(REGRESSION / "heldout_birch_snow_90001.toml", suite)
    model = save_model(tmp_path / "m.pt", SegmenterNet(TINY).eval(), GEOM)
    out_json = tmp_path / "report.json"
    args = ["--model", str(model), "--suite", str(suite), "--max-steps", "7"]
    assert trav_eval.run(parse(trav_eval, [*args, "--json", str(out_json)])) == 0
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
        trav_eval.run(parse(trav_eval, ["--suite", str(tmp_path / "nope")]))


def test_closed_loop_drives_a_steering_checkpoint_over_extra_worlds(tmp_path, capsys):
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
    assert trav_eval.run(parse(trav_eval, args)) == 0
    loop = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["closed_loop"]
    assert loop["steering"] == str(steering) and loop["noise_sigma"] == 0.0
    assert [r["seed"] for r in loop["per_scenario"]][0] == 90001
    assert len({r["seed"] for r in loop["per_scenario"]}) == 2
    assert loop["distance_off_m"] > 0 and loop["distance_on_m"] > 0


def test_train_cli_from_the_simulator_writes_a_loadable_model(tmp_path, capsys):
    out = tmp_path / "trav.pt"
    argv = ["--sim", "open", "--sim-seeds", "4", "--sim-steps", "24"]
    argv += ["--epochs", "1", "--out", str(out), "--quiet"]
    assert train.run(parse(train, argv)) == 0
    net, info = load_model(out)
    assert info["metrics"]["train_frames"] >= 1 and "val_accuracy" in info["metrics"]
    assert "geometry from simulator" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="not both"):
        train.run(parse(train, ["rec", "--sim", "open", "--out", str(out)]))


def test_train_cli_names_the_missing_recording_reader(tmp_path):
    args = parse(train, [str(tmp_path), "--out", str(tmp_path / "m.pt")])
    try:
        import rover.recording.reader  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="rover.recording"):
            train.run(args)
    else:
        with pytest.raises(DataError):
            train.run(args)  # an empty folder holds no recordings


def test_bench_reports_every_stage_against_the_sgbm_floor(tmp_path):
    model = save_model(tmp_path / "m.pt", SegmenterNet(TINY).eval(), GEOM)
    result = bench.run(parse(bench, ["--model", str(model), "--frames", "12", "--repeats", "1"]))
    for stage in bench.STAGES:
        assert result[f"{stage}_p50_ms"] > 0
    assert result["floor_p50_ms"] > 0 and result["p50_ms"] == result["total_p50_ms"]
    assert result["total_over_floor"] > 1.0
    json.dumps(result)
