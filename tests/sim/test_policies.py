"""The expert drives every regression scenario cleanly; the baselines do not survive the forest."""

from __future__ import annotations

import time

import pytest

from rover.errors import ConfigError
from sim.expert import Expert, ExpertConfig
from sim.policies import RandomSteer, Straight
from sim.scenario import list_suite, load_scenario
from sim.simulation import Simulation

SUITE = list_suite("regression")


@pytest.mark.parametrize("path", SUITE, ids=[p.stem for p in SUITE])
def test_expert_drives_each_regression_scenario_without_collision(path):
    sim = Simulation(load_scenario(path))
    start = time.perf_counter()
    metrics = sim.run(Expert())
    wall_s = time.perf_counter() - start
    assert metrics["collisions"] == 0
    assert metrics["reached_goal"] and metrics["goal_progress"] == 1.0
    assert metrics["min_clearance_m"] > 0.1
    assert wall_s < metrics["elapsed_s"], "faster than real time (typically 13-45x)"


def test_expert_weaves_through_a_short_forest_smoothly():
    sim = Simulation("regression/forest_202")
    metrics = sim.run(Expert(), max_steps=330)  # 11 s of driving keeps the test quick
    assert metrics["collisions"] == 0
    assert metrics["distance_m"] > 15.0
    assert metrics["steering_smoothness"] < 1.0  # normalised steering per second


@pytest.mark.parametrize("seed", [2, 12, 22])
def test_straight_and_random_steering_crash_often_in_the_forest(seed):
    for policy in (Straight(), RandomSteer(seed=seed)):
        metrics = Simulation("forest", seed).run(policy)
        assert metrics["collisions"] > 0
        assert metrics["mean_distance_between_collisions_m"] < 20.0, type(policy).__name__


def test_perturbed_expert_records_clean_labels_and_recovers():
    config = ExpertConfig(perturb_rate_hz=0.5, perturb_steering=0.5, noise_steering=0.05, seed=4)
    expert = Expert(config)
    sim = Simulation("regression/open_101")
    differences = 0
    while not sim.done:
        steering, throttle = expert.act(sim.observation())
        differences += abs(steering - expert.label[0]) > 0.2
        sim.step(steering, throttle)
    metrics = sim.metrics()
    assert differences > 10, "the applied command departs from the label during perturbations"
    assert metrics["reached_goal"] and metrics["collisions"] == 0


def test_expert_stops_and_backs_out_of_a_dead_end(box, world_with):
    pocket = [
        box(1.0, 0.55, 0.0, 3.5, 0.2),
        box(1.0, -0.55, 0.0, 3.5, 0.2),
        box(2.85, 0.0, 0.0, 0.2, 1.3),
    ]
    sim = Simulation.from_world(world_with(pocket))
    expert = Expert()
    reversed_ = False
    for _ in range(300):
        steering, throttle = expert.act(sim.observation())
        reversed_ |= throttle < 0
        sim.step(steering, throttle)
    assert sim.state.collisions == 0
    assert reversed_


def test_expert_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="horizon_s"):
        ExpertConfig.from_dict({"horizon_s": 0})
    with pytest.raises(ConfigError, match="lookahead"):
        ExpertConfig.from_dict({"lookahead": 3})
