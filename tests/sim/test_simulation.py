"""The Simulation: determinism, interventions after collisions, episode ends, observations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rover.errors import ConfigError
from sim.expert import Expert
from sim.policies import RandomSteer
from sim.simulation import FRAME_DT_S, Simulation


def sim_in(world) -> Simulation:
    """A Simulation running a hand-made world."""
    return Simulation.from_world(world)


def drive(sim: Simulation, policy, steps: int) -> None:
    for _ in range(steps):
        if sim.done:
            break
        sim.step(*policy.act(sim.observation()))


@pytest.mark.parametrize("policy", [lambda: RandomSteer(seed=3), Expert])
def test_same_seed_and_inputs_give_identical_runs(policy):
    runs = []
    for _ in range(2):
        sim = Simulation("forest", seed=11)
        drive(sim, policy(), 240)
        left, right, truth = sim.render()
        runs.append((sim.log, sim.metrics(), left, truth.depth_m))
    (log_a, metrics_a, left_a, depth_a), (log_b, metrics_b, left_b, depth_b) = runs
    assert log_a.x_m == log_b.x_m and log_a.y_m == log_b.y_m and log_a.yaw_rad == log_b.yaw_rad
    assert metrics_a == metrics_b
    assert np.array_equal(left_a, left_b) and np.array_equal(depth_a, depth_b)


def test_collision_is_an_intervention_that_puts_the_vehicle_back_on_its_trail(tree, world_with):
    sim = sim_in(world_with([tree(5.0, 0.0, radius=0.3)]))
    cruise = sim.vehicle.cruise_throttle
    while not sim.state.collided:
        sim.step(0.0, cruise)
    state = sim.state
    assert state.collisions == 1
    crash_x = sim.log.collision_xy[0][0]
    assert crash_x == pytest.approx(5.0 - 0.3 - sim.vehicle.length_m / 2, abs=0.1)
    # Back about 1 m along the trail, heading along it, stopped, not touching anything.
    assert crash_x - state.x_m == pytest.approx(sim.reset_back_m, abs=0.1)
    assert state.yaw_rad == pytest.approx(0.0, abs=1e-6)
    assert state.speed_mps == 0.0 and state.clearance_m == 0.0
    nxt = sim.step(0.0, 0.0)
    assert not nxt.collided and nxt.clearance_m > 0.5
    # Driving on into the same trunk counts again; distance keeps adding up.
    while sim.state.collisions < 2:
        sim.step(0.0, cruise)
    metrics = sim.metrics()
    assert metrics["collisions"] == 2
    assert metrics["mean_distance_between_collisions_m"] == pytest.approx(metrics["distance_m"] / 2)


def test_a_safety_driver_takes_over_after_a_collision_so_one_mistake_counts_once(tree, world_with):
    trunk = [tree(5.0, 0.0, radius=0.3)]
    rewind = sim_in(world_with(trunk))
    takeover = Simulation.from_world(world_with(trunk), safety_driver_s=3.0, safety_driver=Expert())
    for sim in (rewind, takeover):
        while sim.state.time_s < 20.0 and not sim.done:
            sim.step(0.0, sim.vehicle.cruise_throttle)  # a policy that never steers
    # Put back on its trail, the policy drives into the same trunk again and again ...
    assert rewind.state.collisions >= 3 and rewind.metrics()["takeover_m"] == 0.0
    # ... while the expert, for 3 s, steers it past the trunk: the mistake counts once.
    assert takeover.state.collisions == 1 and takeover.state.x_m > 5.5
    log, metrics = takeover.log, takeover.metrics()
    crash = next(i for i in range(1, len(log.x_m)) if log.x_m[i] < log.x_m[i - 1] - 0.5)
    driven = np.hypot(np.diff(log.x_m), np.diff(log.y_m))
    handed_back = crash + round(3.0 / FRAME_DT_S)
    assert metrics["takeover_m"] == pytest.approx(driven[crash:handed_back].sum(), rel=0.05)
    assert metrics["takeover_m"] > 2.0
    # The policy's own metres, not the safety driver's, make the distance between collisions.
    assert metrics["distance_m"] == pytest.approx(
        driven[: crash - 1].sum() + driven[handed_back:].sum(), rel=0.05
    )
    assert metrics["mean_distance_between_collisions_m"] == metrics["distance_m"]
    assert not takeover.state.takeover


def test_safety_driver_takeover_shows_in_the_state_while_it_lasts(tree, world_with):
    sim = Simulation.from_world(
        world_with([tree(5.0, 0.0, radius=0.3)]), safety_driver_s=1.0, safety_driver=Expert()
    )
    while not sim.state.collided:
        assert not sim.step(0.0, sim.vehicle.cruise_throttle).takeover or sim.state.collided
    flags = [sim.step(0.0, 0.0).takeover for _ in range(round(1.5 / FRAME_DT_S))]
    assert flags[: round(1.0 / FRAME_DT_S) - 1] == [True] * (round(1.0 / FRAME_DT_S) - 1)
    assert not any(flags[round(1.0 / FRAME_DT_S) + 1 :])
    with pytest.raises(ConfigError, match="safety_driver_s"):
        Simulation("open", safety_driver_s=-1.0)


def test_intervention_heading_follows_a_curved_trail(tree, world_with):
    def steer(t: float) -> float:
        return 0.0 if t < 1.0 else 0.25

    # Find where the arc goes in an empty world, then plant a trunk on it.
    probe = sim_in(world_with([]))
    while probe.state.time_s < 3.0:
        probe.step(steer(probe.state.time_s), probe.vehicle.cruise_throttle)
    s = probe.state
    trunk = tree(s.x_m + 0.6 * math.cos(s.yaw_rad), s.y_m + 0.6 * math.sin(s.yaw_rad), 0.3)
    sim = sim_in(world_with([trunk]))
    while not sim.state.collided and sim.state.time_s < 5:
        sim.step(steer(sim.state.time_s), sim.vehicle.cruise_throttle)
    assert sim.state.collided, "the arc meets the tree"
    state = sim.state
    log = sim.log
    # The logged pose nearest the reset point had (about) the same heading.
    before = np.hypot(np.array(log.x_m[:-1]) - state.x_m, np.array(log.y_m[:-1]) - state.y_m)
    i = int(before.argmin())
    assert before[i] < 0.05
    assert state.yaw_rad == pytest.approx(log.yaw_rad[i], abs=0.05)
    assert state.yaw_rad > 0.1, "the trail was turning left"


def test_episode_ends_at_the_goal_or_the_time_limit(empty_scenario):
    sim = Simulation(empty_scenario(length_m=12.0, time_limit_s=30.0))
    while not sim.done:
        sim.step(0.0, 1.0)
    assert sim.state.reached_goal and not sim.state.timed_out
    assert sim.metrics()["goal_progress"] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        sim.step(0.0, 1.0)
    sim.reset()
    assert sim.state.step == 0 and sim.state.x_m == sim.world.start_pose[0]
    for _ in range(round(30.0 / FRAME_DT_S)):
        sim.step(0.0, 0.0)
    assert sim.done and sim.state.timed_out and not sim.state.reached_goal
    assert sim.metrics()["elapsed_s"] == pytest.approx(30.0)


def test_reset_with_a_new_seed_draws_a_new_world():
    sim = Simulation("forest")
    first = sim.world
    sim.reset()
    assert sim.world is first
    sim.reset(seed=sim.world.seed + 1)
    assert sim.world.obstacles != first.obstacles


def test_bad_simulation_parameters_raise_config_errors():
    with pytest.raises(ConfigError, match="dt_s"):
        Simulation("open", dt_s=0.0)
    with pytest.raises(ConfigError, match="reset_back_m"):
        Simulation("open", reset_back_m=-1.0)


def test_observation_carries_state_world_and_optional_images():
    sim = Simulation("open")
    plain = sim.observation()
    assert plain.left is None and plain.world is sim.world and plain.dt_s == FRAME_DT_S
    seen = sim.observation(images=True)
    assert seen.left.shape == (240, 320, 3) and seen.right.shape == (240, 320, 3)


def test_state_reports_speed_distance_and_progress(empty_scenario):
    sim = Simulation(empty_scenario(length_m=30.0))
    for _ in range(90):
        state = sim.step(0.0, sim.vehicle.cruise_throttle)
    assert state.time_s == pytest.approx(3.0)
    assert state.speed_mps == pytest.approx(2.0, abs=0.05)
    assert state.distance_m == pytest.approx(state.x_m, rel=1e-9)
    assert state.goal_progress == pytest.approx(state.x_m / 30.0)
    assert math.isclose(state.steering_cmd, 0.0) and state.collisions == 0
