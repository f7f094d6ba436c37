"""The simulator core: worlds from scenarios, a vehicle, a stereo renderer, an expert, metrics.

Pure logic (no ZeroMQ, no serial, no window). Quick start::

    from sim import Expert, Simulation

    sim = Simulation("forest", seed=7)  # a bundled scenario name or a path to a .toml
    expert = Expert()
    while not sim.done:
        left, right, truth = sim.render()  # RGB uint8 (240, 320, 3) each, per-pixel truth
        sim.step(*expert.act(sim.observation()))
    print(sim.metrics())
"""

from sim.camera import CameraModel
from sim.expert import Expert, ExpertConfig
from sim.geometry import Obstacle
from sim.metrics import RunLog, compute_metrics, draw_trajectory, write_trajectory_png
from sim.policies import RandomSteer, Straight
from sim.render import GroundTruth, StereoRenderer
from sim.scenario import Scenario, list_suite, load_scenario, resolve_scenario_path
from sim.simulation import FRAME_DT_S, Observation, Policy, SimState, Simulation
from sim.vehicle import VehicleConfig, VehicleState, step_vehicle
from sim.world import Lighting, Trail, World, generate_world

__all__ = [
    "FRAME_DT_S",
    "CameraModel",
    "Expert",
    "ExpertConfig",
    "GroundTruth",
    "Lighting",
    "Obstacle",
    "Observation",
    "Policy",
    "RandomSteer",
    "RunLog",
    "Scenario",
    "SimState",
    "Simulation",
    "StereoRenderer",
    "Straight",
    "Trail",
    "VehicleConfig",
    "VehicleState",
    "World",
    "compute_metrics",
    "draw_trajectory",
    "generate_world",
    "list_suite",
    "load_scenario",
    "resolve_scenario_path",
    "step_vehicle",
    "write_trajectory_png",
]
