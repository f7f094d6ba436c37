"""Collisions per km with degraded steering, with and without the traversability guard.

In-process and deterministic: the simulator, the expert with its steering degraded by
Ornstein-Uhlenbeck noise (slowly wandering, like a policy that is wrong for a while rather than
jittery), `rover.control.Controller` (slew limits, as the control node runs it) and, when on,
the traversability pipeline feeding `rover.control.GuardedController`, the controller the
control node runs: what is measured is what drives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from perception.traversability.guard import GuardConfig
from perception.traversability.pipeline import TraversabilityConfig, TraversabilityPipeline
from rover import messages as m
from rover.control import ControlConfig, Controller, GuardedController
from rover.perturb import OrnsteinUhlenbeck


@dataclass(frozen=True)
class NoiseConfig:
    """Steering noise: stationary std ``sigma`` (normalised units), correlation time ``tau_s``."""

    sigma: float = 0.8
    tau_s: float = 0.7
    seed: int = 0


class NoisySteering:
    """Wraps a policy; adds Ornstein-Uhlenbeck noise to its steering."""

    def __init__(self, policy, cfg: NoiseConfig):
        self.policy, self.cfg = policy, cfg
        self.ou = OrnsteinUhlenbeck(cfg.sigma, cfg.tau_s, np.random.default_rng(cfg.seed))

    def act(self, observation) -> tuple[float, float]:
        steering, throttle = self.policy.act(observation)
        noise = self.ou.step(observation.dt_s)
        return float(np.clip(steering + noise, -1.0, 1.0)), throttle


class ModelSteering:
    """A steering checkpoint as a policy: the CNN drives from the rendered stereo pair."""

    needs_images = True

    def __init__(self, model: str | Path):
        import torch

        from perception.infer import SteeringPredictor

        torch.set_num_threads(1)  # batch-1 inference, as the steering node runs it
        # fp32 whatever the CPU: the in-process figures are the same on every machine
        self.predictor = SteeringPredictor(model, device="cpu", precision="fp32")

    def act(self, observation) -> tuple[float, float]:
        stamp_ns = 1_000_000_000 + int(round(observation.state.time_s * 1e9))
        pred = self.predictor.predict(observation.left, observation.right, stamp_ns)
        return pred.steering, pred.throttle


def drive(
    scenario,
    noise: NoiseConfig,
    pipeline: TraversabilityPipeline | None,
    guard_cfg: GuardConfig | None = None,
    max_steps: int | None = None,
    policy=None,
) -> dict:
    """One episode of ``scenario`` (a name, path or a ready `Simulation`); ``pipeline`` None
    drives without the guard; ``policy`` defaults to the expert (a `ModelSteering` gets the
    rendered pair). Returns the run's metrics plus how often the guard capped throttle or
    moved steering."""
    from sim.expert import Expert
    from sim.simulation import Simulation

    sim = scenario if isinstance(scenario, Simulation) else Simulation(scenario)
    policy = NoisySteering(policy or Expert(), noise)
    control_cfg = ControlConfig(autopilot_without_teleop=True)
    if pipeline is None:
        controller = Controller(control_cfg)
    else:
        controller = GuardedController(control_cfg, guard_cfg)
    stamp_ns, period_ns = 1_000_000_000, int(sim.dt_s * 1e9)
    steps = 0
    images = getattr(policy.policy, "needs_images", False)
    while not sim.done and (max_steps is None or steps < max_steps):
        observation = sim.observation()
        if pipeline is not None or images:
            left, right, _ = sim.render()
            observation = replace(observation, left=left, right=right)
        if pipeline is not None:
            controller.on_traversability(pipeline.process(left, right).polar, stamp_ns)
        steering, throttle = policy.act(observation)
        controller.on_estimate(
            m.SteeringEstimate(stamp_ns=stamp_ns, steering=steering, throttle=throttle), stamp_ns
        )
        out = controller.output(stamp_ns)
        sim.step(out.steering, out.throttle)
        stamp_ns += period_ns
        steps += 1
    metrics = sim.metrics()
    km = max(metrics["distance_m"], 1e-9) / 1000.0
    metrics.update(
        collisions_per_km=round(metrics["collisions"] / km, 2),
        guard_limited_steps=getattr(controller, "limited_steps", 0),
        guard_biased_steps=getattr(controller, "biased_steps", 0),
        steps=steps,
    )
    return metrics


def compare(
    scenarios: list[Path],
    noise: NoiseConfig,
    trav_cfg: TraversabilityConfig,
    guard_cfg: GuardConfig | None = None,
    max_steps: int | None = None,
    steering: str | Path | None = None,
    seeds: int = 1,
) -> dict:
    """Collisions per km over ``scenarios`` with the guard off and on (pooled distance).

    ``steering``: a steering checkpoint drives instead of the expert (add ``noise`` to it or
    not); ``seeds``: worlds per scenario, the extra ones from the reserved range.
    """
    from perception.steering.evaluate import extra_seeds
    from sim.scenario import load_scenario
    from sim.simulation import Simulation

    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for path in scenarios:
        for seed in extra_seeds(load_scenario(path).seed, seeds):
            for key in runs:
                pipeline = TraversabilityPipeline.from_config(trav_cfg) if key == "on" else None
                policy = ModelSteering(steering) if steering else None
                sim = Simulation(path, seed)
                runs[key].append(drive(sim, noise, pipeline, guard_cfg, max_steps, policy))
    out: dict = {"noise_sigma": noise.sigma, "noise_tau_s": noise.tau_s}
    for key, rs in runs.items():
        dist = sum(r["distance_m"] for r in rs)
        hits = sum(r["collisions"] for r in rs)
        out[f"collisions_{key}"] = hits
        out[f"distance_{key}_m"] = round(dist, 1)
        out[f"collisions_per_km_{key}"] = round(hits / max(dist / 1000.0, 1e-9), 2)
        out[f"goal_reached_{key}"] = sum(bool(r["reached_goal"]) for r in rs)
    out["per_scenario"] = [
        {
            "scenario": off["scenario"],
            "seed": off["seed"],
            "collisions_off": off["collisions"],
            "collisions_on": on["collisions"],
            "distance_off_m": off["distance_m"],
            "distance_on_m": on["distance_m"],
            "guard_limited_steps": on["guard_limited_steps"],
        }
        for off, on in zip(runs["off"], runs["on"], strict=True)
    ]
    return out
