"""Expert demonstrations and closed-loop drives in-process: the simulator without the bus.

The fast path for experiments and tests. ``expert_samples`` yields frames shaped like the
recording reader's samples (so the same dataset code takes both); ``drive_in_process`` runs a
steering model in closed loop through the control node's own arbitration logic.

Demonstrations use only the training scenario families (forest, open, corridor) with world
seeds below ``sim.scenario.RESERVED_SEED_MIN`` and away from the regression suite's seeds, so
evaluation never scores a world the model has seen. With ``randomise`` a share of the worlds
repaints the family's obstacles, borders, ground and sky with other materials of the training
families (domain randomisation): a model that cannot rely on "trunks are brown" has to learn
shapes and stereo. Materials reserved for held-out scenarios are never used.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from drivers.protocol import to_milli
from rover import messages as m
from rover.control import ControlConfig, Controller
from rover.perturb import PerturbConfig, Perturber, perturbed
from sim.episodes import (
    TRAINING_FAMILIES,
    MaterialPools,
    WorldSequence,
    repaint,
    training_materials,
    training_worlds,
)
from sim.expert import Expert, ExpertConfig
from sim.scenario import Scenario
from sim.simulation import Simulation
from sim.takeover import TakeoverConfig, TakeoverOperator

__all__ = ["MaterialPools", "repaint", "training_materials"]
FRAME_RATE_HZ = 30.0


@dataclass(frozen=True)
class DemoSample:
    """One demonstration frame, with the fields of the recording reader's ``Sample``."""

    left: np.ndarray
    right: np.ndarray
    steering: float
    throttle: float
    stamp_ns: int
    frame_seq: int
    session: str
    index: int
    perturbation: float = 0.0  # steering added on top of the label (DART), as recorded
    source: str = "expert"  # who drove: "expert" (demonstrations, take-overs), "model"


def demo_worlds(count: int, seed: int = 0, families=TRAINING_FAMILIES) -> list[tuple[str, int]]:
    """(family, world seed) pairs: families in turn, seeds drawn from the training range."""
    return training_worlds(count, seed, families)


def expert_samples(spec: EpisodeSpec, minutes: float) -> Iterator[DemoSample]:
    """The expert driving world after world until ``minutes`` of frames; one session each.

    With perturbations the expert drifts off its line now and then (DART): the label is its
    clean command, so the data show how to recover, not how to drift. ``spec.randomise`` is
    the share of worlds repainted with other training materials (see `repaint`).
    """
    return _frames_for(minutes, lambda episode, limit: episode_samples(spec, episode, limit))


def _frames_for(minutes: float, episode_frames) -> Iterator[DemoSample]:
    """``episode_frames(episode, limit)`` for episodes 0, 1, ... until ``minutes`` of frames."""
    total = int(minutes * 60 * FRAME_RATE_HZ)
    produced = 0
    for episode in range(10_000):
        for sample in episode_frames(episode, total - produced):
            yield sample
            produced += 1
        if produced >= total:
            return


@dataclass(frozen=True)
class EpisodeWorlds:
    """Which world each episode drives: everything but the episode's index. Episode ``i`` gets
    the same world, paint and seed in any process."""

    WORLD_SEED_OFFSET: ClassVar[int] = 0  # corrections drive other worlds than demonstrations

    seed: int = 0
    families: tuple[str, ...] = TRAINING_FAMILIES
    randomise: float = 0.0  # share of worlds repainted with other training materials
    max_episode_s: float | None = None
    first_seed: int | None = None  # episode 0's world, as `rover drive --sim F --seed S`

    def world(self, episode: int) -> tuple[Scenario, int]:
        """Episode ``episode``'s scenario (repainted for a ``randomise`` share), world seed:
        the sequence `rover drive --sim` drives (``sim.episodes``)."""
        sequence = WorldSequence(
            tuple(self.families),
            self.seed + self.WORLD_SEED_OFFSET,
            self.randomise,
            self.first_seed,
        )
        return sequence.world(episode)

    def over(self, sim: Simulation, step: int, limit: int | None) -> bool:
        """True once the episode is done: goal, time limit, ``max_episode_s`` or ``limit``."""
        if sim.done or (limit is not None and step >= limit):
            return True
        return self.max_episode_s is not None and sim.state.time_s >= self.max_episode_s


@dataclass(frozen=True)
class EpisodeSpec(EpisodeWorlds):
    """A demonstration episode: its world and the control node's perturbations (DART), as
    ``rover drive --sim F --model expert --lockstep --perturb RATE,SIZE --record`` makes them."""

    perturb_rate_hz: float = 0.3
    perturb_steering: float = 0.5

    def perturb(self, episode: int) -> PerturbConfig:
        """The control node's [perturb] for this episode (its own seed: episodes in parallel)."""
        seed = self.seed * 10_000 + episode
        if self.perturb_rate_hz <= 0:
            return PerturbConfig(seed=seed)
        return PerturbConfig(rate_hz=self.perturb_rate_hz, size=self.perturb_steering, seed=seed)


def episode_samples(spec: EpisodeSpec, episode: int, limit: int | None = None):
    """The frames of demonstration episode ``episode`` (at most ``limit``): its world, paint
    and perturbations depend only on the spec and the index, so episodes run in any process.

    The lock-step stack without the bus: the expert answers each frame, the control logic
    slews its command and adds the perturbation, the motors get it in the serial link's
    thousandths. The label is the driver's command before the perturbation, as the recording
    reader gives it; the recorded path differs only by the JPEG of each frame (a test
    compares them)."""
    scenario, world_seed = spec.world(episode)
    sim = Simulation(scenario, world_seed)
    expert = Expert(ExpertConfig())
    controller = Controller(ControlConfig(autopilot_without_teleop=True))
    perturber = Perturber(spec.perturb(episode))
    name = f"sim-{scenario.name}-{world_seed}"
    period_ns = int(1e9 / FRAME_RATE_HZ)
    step = 0
    while not spec.over(sim, step, limit):
        stamp = step * period_ns
        left, right, _ = sim.render()
        steering, throttle = expert.act(sim.observation())
        est = m.SteeringEstimate(stamp_ns=stamp, frame_seq=step, steering=steering,
                                 throttle=throttle, source="expert")  # fmt: skip
        controller.on_estimate(est, stamp)
        out = controller.output(stamp)
        ok = not out.stale and perturber.allowed(out.throttle, True, out.estop)
        sent, offset = perturbed(out.steering, perturber.update(stamp, ok))
        yield DemoSample(left, right, out.steering, out.throttle, stamp, step, name, step, offset)
        sim.step(to_milli(sent) / 1000, to_milli(out.throttle) / 1000)
        step += 1


def _prepare_episode(spec: EpisodeSpec, episode: int, model_cfg) -> Any:
    from perception.dataset import collect

    return collect(episode_samples(spec, episode), model_cfg)


def collect_demos(
    minutes: float,
    model_cfg,
    spec: EpisodeSpec,
    workers: int = 1,
    progress: bool = False,
    cluster: str | None = None,
):
    """`expert_samples` prepared into a FrameSet, episodes driven in ``workers`` processes.

    The same frames, labels and sessions in the same order as the serial stream: each worker
    drives whole episodes, this process keeps them in order and cuts the last one at
    ``minutes``. At most ``workers`` episodes run ahead of the one awaited. ``cluster``: a
    Dask scheduler's address or ``local[:N]``, whose workers drive the episodes instead.
    """
    from perception.dataset import collect

    if workers <= 1 and not cluster:
        samples = expert_samples(spec, minutes)
        return collect(samples, model_cfg, progress)
    return _collect_episodes(_prepare_episode, spec, minutes, model_cfg, workers, progress, cluster)


@contextmanager
def _episode_pool(workers: int, cluster: str | None):
    """(submit, how many may run ahead): local forkserver processes, or the workers of a Dask
    cluster (`--cluster`, perception.steering.executor), whose tasks are retried."""
    if not cluster:
        from perception.workers import worker_context

        with ProcessPoolExecutor(workers, mp_context=worker_context()) as pool:
            yield pool.submit, workers
        return
    from perception.steering import executor

    client = executor.connect(cluster, workers)
    try:
        ahead = max(workers, sum(client.nthreads().values()))
        yield partial(client.submit, retries=executor.RETRIES, pure=False), ahead
    finally:
        executor.close(client)


def _collect_episodes(
    job, spec, minutes: float, model_cfg, workers: int, progress: bool, cluster=None
):
    """``job(spec, episode, model_cfg)`` -> FrameSet for episodes 0, 1, ... in ``workers``
    processes (or on a cluster), kept in order, the last cut at ``minutes``; at most
    ``workers`` (the cluster's threads) run ahead."""
    from perception.dataset import concat_frames, head

    total = int(minutes * 60 * FRAME_RATE_HZ)
    parts, have, episode = [], 0, 0
    with (
        _episode_pool(workers, cluster) as (submit, ahead),
        tqdm(total=total, desc="driving", unit="frame", disable=not progress) as bar,
    ):
        running: deque = deque()
        while have < total:
            while len(running) < ahead:
                running.append(submit(job, spec, episode, model_cfg))
                episode += 1
            part = running.popleft().result()
            take = min(len(part), total - have)
            parts.append(head(part, take))
            have += take
            bar.update(take)
        for future in running:
            future.cancel()
    return concat_frames(parts)


@dataclass(frozen=True)
class CorrectionSpec(EpisodeWorlds):
    """A correction episode: its world, when the expert takes the wheel, and the model a
    worker process loads (`collect_corrections`). See `corrected_samples`."""

    WORLD_SEED_OFFSET: ClassVar[int] = 7919

    seed: int = 1
    takeover_clearance_m: float = 0.35
    takeover_s: float = 1.0
    model: str = ""


def corrected_samples(spec: CorrectionSpec, predictor: Any, minutes: float) -> Iterator[DemoSample]:
    """The model drives, the expert labels every frame and takes over near trouble (DAgger
    with a safety driver, as a person at the keyboard would).

    Demonstrations only show the expert's own states; a model's small errors lead it where the
    expert never was (facing a wall, an obstacle dead ahead) and it has no example of what to
    do. These frames are exactly those states, labelled with the expert's clean command. The
    expert takes the wheel for ``spec.takeover_s`` when its planned clearance drops below
    ``spec.takeover_clearance_m`` or after a collision, so a run never loops on one mistake.
    """
    return _frames_for(minutes, lambda i, limit: correction_samples(spec, predictor, i, limit))


def correction_samples(spec: CorrectionSpec, predictor: Any, episode: int, limit=None):
    """The frames of correction episode ``episode`` (at most ``limit``): its world, paint and
    expert depend only on the spec and the index, and the predictor keeps nothing from one
    episode to the next (its stamps restart at 0), so episodes can run in any process."""
    scenario, world_seed = spec.world(episode)  # other worlds than the demonstrations'
    sim = Simulation(scenario, world_seed)
    # the rule of `rover drive --takeover` (sim.takeover): the same places, the same hold
    operator = TakeoverOperator(TakeoverConfig(spec.takeover_clearance_m, spec.takeover_s))
    controller = Controller(ControlConfig(autopilot_without_teleop=True))
    name, step = f"dagger-{scenario.name}-{world_seed}", 0
    period_ns = int(1e9 / FRAME_RATE_HZ)
    while not spec.over(sim, step, limit):
        stamp = step * period_ns
        left, right, _ = sim.render()
        said = operator.answer(sim.observation())
        source = "expert" if said.driving else "model"  # who drives this frame
        label = operator.expert.label  # the expert's command, also where the model drives
        yield DemoSample(left, right, *label, stamp, step, name, step, source=source)
        pred = predictor.predict(left, right, stamp)
        est = m.SteeringEstimate(
            stamp_ns=stamp, frame_seq=step, steering=pred.steering, throttle=pred.throttle
        )
        controller.on_estimate(est, stamp)
        out = controller.output(stamp)
        sim.step(
            *((said.steering, said.throttle) if said.driving else (out.steering, out.throttle))
        )
        step += 1


@cache
def fp32_predictor(model: str):
    """A checkpoint's predictor on one CPU thread in fp32, once per process: the same answers
    on every machine, so the same command gives the same correction frames."""
    import torch

    from perception.infer import SteeringPredictor

    torch.set_num_threads(1)  # batch-1 inference: more threads only add overhead here
    return SteeringPredictor(model, device="cpu", precision="fp32")


def _prepare_correction_episode(spec: CorrectionSpec, episode: int, model_cfg) -> Any:
    from perception.dataset import collect

    return collect(correction_samples(spec, fp32_predictor(spec.model), episode), model_cfg)


def collect_corrections(
    spec: CorrectionSpec,
    minutes: float,
    model_cfg,
    workers: int = 1,
    progress: bool = False,
    cluster: str | None = None,
):
    """`corrected_samples` of the model ``spec.model`` prepared into a FrameSet, episodes
    driven in ``workers`` processes (or on ``cluster``, whose workers read ``spec.model``
    at the same path): the same frames in the same order as one process."""
    from perception.dataset import collect

    if workers <= 1 and not cluster:
        stream = corrected_samples(spec, fp32_predictor(spec.model), minutes)
        return collect(stream, model_cfg, progress)
    return _collect_episodes(
        _prepare_correction_episode, spec, minutes, model_cfg, workers, progress, cluster
    )


def drive_in_process(
    predictor: Any,
    scenario: str | Path,
    seed: int | None = None,
    control: ControlConfig | None = None,
    trajectory_png: str | Path | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """Run a predictor (``predict(left, right, stamp_ns)``) closed-loop on one scenario.

    Commands pass through the control node's arbitration and slew limits, stamped one frame
    apart, as in a lock-step run of the full stack; returns the simulator's metrics.
    ``duration_s`` stops the run early (simulated seconds).
    """
    sim = Simulation(scenario, seed)
    controller = Controller(control or ControlConfig(autopilot_without_teleop=True))
    period_ns = int(sim.dt_s * 1e9)
    step = 0
    while not sim.done and (duration_s is None or sim.state.time_s < duration_s - 1e-9):
        stamp = step * period_ns
        left, right, _ = sim.render()
        pred = predictor.predict(left, right, stamp)
        est = m.SteeringEstimate(
            stamp_ns=stamp, frame_seq=step, steering=pred.steering, throttle=pred.throttle
        )
        controller.on_estimate(est, stamp)
        out = controller.output(stamp)
        sim.step(out.steering, out.throttle)
        step += 1
    if trajectory_png is not None:
        sim.write_trajectory_png(trajectory_png)
    return sim.metrics()
