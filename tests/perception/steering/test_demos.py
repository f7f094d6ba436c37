"""In-process demonstrations: training worlds only, repainting without held-out materials,
corrections labelled by the expert, closed-loop drives through the control logic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from perception.infer import Prediction
from perception.steering.demos import (
    TRAINING_FAMILIES,
    CorrectionSpec,
    EpisodeSpec,
    corrected_samples,
    demo_worlds,
    drive_in_process,
    expert_samples,
    repaint,
    training_materials,
)
from sim.scenario import RESERVED_SEED_MIN, list_suite, load_scenario


class Straight:
    """A 'model' that always goes straight on at cruise."""

    def predict(self, left, right, stamp_ns=0) -> Prediction:
        return Prediction(0.0, 0.6)


def _held_out_only_materials() -> set[str]:
    held = [load_scenario(p) for p in list_suite("regression") if load_scenario(p).held_out]
    shown = set().union(*(s.appearance_materials() for s in held))
    pools = training_materials()
    return shown - set(pools.obstacle + pools.ground + pools.sky)


def test_demonstration_worlds_avoid_the_evaluation_seeds():
    suite_seeds = {load_scenario(p).seed for p in list_suite("regression")}
    worlds = demo_worlds(500, seed=3)
    assert {f for f, _ in worlds} == set(TRAINING_FAMILIES)
    seeds = {s for _, s in worlds}
    assert seeds.isdisjoint(suite_seeds) and max(seeds) < RESERVED_SEED_MIN


def test_repainting_never_uses_a_held_out_material():
    reserved = _held_out_only_materials()
    assert {"bark_birch", "snow", "brick", "sand", "dusk"} <= reserved
    rng = np.random.default_rng(0)
    for family in TRAINING_FAMILIES * 10:
        painted = repaint(load_scenario(family), rng)
        assert painted.appearance_materials().isdisjoint(reserved)
        assert len(painted.obstacle_materials()) <= 8  # the renderer's palette


def test_expert_samples_are_labelled_frames_in_sessions():
    samples = list(itertools.islice(expert_samples(EpisodeSpec(seed=1, randomise=1.0), 0.05), 90))
    assert len(samples) == 90
    assert samples[0].left.shape == (240, 320, 3) and samples[0].left.dtype == np.uint8
    assert "repainted" in samples[0].session
    assert [s.index for s in samples[:3]] == [0, 1, 2]
    assert all(-1 <= s.steering <= 1 for s in samples)


def test_corrections_are_expert_labelled_where_the_model_drove():
    samples = list(corrected_samples(CorrectionSpec(seed=2), Straight(), 0.1))
    assert len(samples) == 180 and samples[0].session.startswith("dagger-")
    steer = np.array([s.steering for s in samples])
    assert np.abs(steer).max() > 0.1  # the expert's labels, not the model's straight line


def test_drive_in_process_scores_a_policy_through_the_control_logic():
    metrics = drive_in_process(Straight(), "regression/open_101", duration_s=3.0)
    assert metrics["elapsed_s"] == pytest.approx(3.0)
    # the control node's throttle slew: 0.6 is reached after 0.2 s, ~1.7 m/s after ~1 s
    assert 3.0 < metrics["distance_m"] < 6.0


@pytest.mark.slow
def test_demonstrations_driven_in_two_processes_match_the_serial_stream():
    from perception.steering.demos import EpisodeSpec, collect_demos
    from perception.steering.model import SteeringModelConfig

    cfg = SteeringModelConfig(arch="dave")
    spec = EpisodeSpec(seed=3, randomise=0.6, max_episode_s=1.0)
    serial = collect_demos(0.1, cfg, spec, workers=1)  # 180 frames over several episodes
    parallel = collect_demos(0.1, cfg, spec, workers=2)
    assert len(serial) == len(parallel) == 180 and len(serial.sessions) >= 5
    assert serial.sessions == parallel.sessions
    assert np.array_equal(serial.session, parallel.session)
    assert np.array_equal(serial.images, parallel.images)
    assert np.array_equal(serial.steering, parallel.steering)


@pytest.mark.slow
def test_corrections_driven_in_two_processes_match_the_serial_stream(tmp_path):
    import torch

    from perception.infer import save_checkpoint
    from perception.steering.demos import CorrectionSpec, collect_corrections
    from perception.steering.model import SteeringModelConfig, build_model

    cfg = SteeringModelConfig(arch="dave")
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / "m.pt", build_model(cfg), 0.6, {})
    spec = CorrectionSpec(seed=2, randomise=0.6, max_episode_s=1.0, model=str(model))
    serial = collect_corrections(spec, 0.1, cfg, workers=1)  # 180 frames, several episodes
    parallel = collect_corrections(spec, 0.1, cfg, workers=2)
    assert len(serial) == len(parallel) == 180 and len(serial.sessions) >= 5
    assert all(name.startswith("dagger-") for name in serial.sessions)
    assert serial.sessions == parallel.sessions
    assert np.array_equal(serial.images, parallel.images)
    assert np.array_equal(serial.steering, parallel.steering)
