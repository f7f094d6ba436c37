"""`rover eval --model MODEL --suite DIR`: closed-loop regression test through the full stack.

Every scenario of the suite runs as ``rover drive --sim S --model M --lockstep --headless
--metrics-out ...`` in its own bus namespace, several at once in worker processes, for the
model and for the simulator's expert (and, with ``--straight``, the straight-ahead baseline).
The report (``report.json`` and ``report.html``) has, overall, for the held-out scenarios and
per scenario: distance, collisions, mean distance between collisions and autonomy for each
driver, and a trajectory picture per run. Given ``--baseline REPORT`` it exits 1 when a
figure of the model regressed beyond its threshold.

After each collision a safety driver (the expert) drives for ``--safety-driver`` seconds, then
hands back, as on PilotNet's test car; its metres are ``takeover_m``, apart from the driver's.
With zero collisions the mean distance between collisions is the distance driven: a lower
bound. ``--seeds K`` adds K-1 worlds per scenario from the reserved (never trained on) seed
range, for more kilometres and a tighter figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from tqdm import tqdm

from perception.steering.budget import budget_text
from perception.steering.report import (
    aggregate,
    capped_text,
    compare,
    interval_text,
    targets,
    write_html,
)
from perception.steering.settings import SteeringNodeConfig
from rover.config import load_config
from rover.errors import ConfigError, DataError
from rover.runspec import sim_request
from sim.scenario import RESERVED_SEED_MIN, list_suite, load_scenario
from sim.simulation import check_safety_driver_s

JOB_TIMEOUT_S = 900.0
SAFETY_DRIVER_S = 3.0  # a takeover: steer past the obstacle, then hand back
REPORT_KEYS = (
    "distance_m",
    "collisions",
    "mean_distance_between_collisions_m",
    "takeover_m",
    "autonomy_pct",
    "goal_progress",
    "reached_goal",
    "min_clearance_m",
    "steering_smoothness",
    "elapsed_s",
    "late_frames",
)


@dataclass(frozen=True)
class Job:
    """One closed-loop run: a driver on one world of one scenario."""

    scenario: str  # scenario name
    path: Path  # its .toml
    seed: int
    held_out: bool
    driver: str  # "model", "expert" or "straight"
    model: str  # checkpoint path, or the simulator policy's name
    metrics_out: Path
    guard: bool = False  # run the traversability node: the control node's guard acts
    safety_driver_s: float = 0.0  # after a collision the expert drives this long
    overrides: tuple[str, ...] = ()  # robot-config values (`--set`) of every stack

    @property
    def run_name(self) -> str:
        return f"{self.scenario}-s{self.seed}"


def extra_seeds(seed: int, count: int) -> list[int]:
    """The scenario's own seed, then `count - 1` seeds from the reserved held-out range."""
    return [seed] + [RESERVED_SEED_MIN + 1000 * i + seed % 1000 for i in range(1, count)]


def plan_jobs(
    model: str,
    suite: str,
    out_dir: Path,
    drivers: list[str],
    only: str | None,
    seeds: int,
    guard: bool = False,
    safety_driver_s: float = 0.0,
    overrides: tuple[str, ...] = (),
) -> list[Job]:
    """Every (scenario, seed, driver) of the suite, model runs first; ``guard``: the model's
    runs have the traversability guard on; every driver gets the same safety driver."""
    jobs = []
    for path in list_suite(suite):
        scenario = load_scenario(path)
        if only and not fnmatch(scenario.name, only):
            continue
        for seed in extra_seeds(scenario.seed, seeds):
            for driver in drivers:
                target = model if driver == "model" else driver
                out = out_dir / "runs" / driver / f"{scenario.name}-s{seed}.json"
                jobs.append(
                    Job(
                        scenario.name,
                        path,
                        seed,
                        scenario.held_out,
                        driver,
                        target,
                        out,
                        guard and driver == "model",
                        safety_driver_s,
                        overrides,
                    )
                )
    if not jobs:
        raise ConfigError(f"no scenario in suite {suite!r} matches --only {only!r}")
    return sorted(jobs, key=lambda j: j.driver != "model")


def drive_command(job: Job, namespace: str, duration: float | None) -> list[str]:
    """The full-stack process for one job: `rover drive --lockstep --headless ...`'s request,
    typed (rover.runspec), run by `python -m rover.stack`."""
    request = sim_request(
        str(job.path),
        job.model,
        job.metrics_out,
        duration_s=duration,
        seed=job.seed,
        traversability=job.guard,
        safety_driver_s=job.safety_driver_s,
        overrides=job.overrides,
        namespace=namespace,
    )
    return [sys.executable, "-m", "rover.stack", request.to_json()]


def run_job(job: Job, duration: float | None) -> dict[str, Any]:
    """Run one job to the end; its metrics, or an ``error`` entry saying why it failed."""
    job.metrics_out.parent.mkdir(parents=True, exist_ok=True)
    job.metrics_out.unlink(missing_ok=True)
    namespace = f"eval{os.getpid()}{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            drive_command(job, namespace, duration),
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            env=env,
        )
        failure = None if proc.returncode == 0 else _last_line(proc.stderr, proc.returncode)
    except subprocess.TimeoutExpired:
        failure = f"no result after {JOB_TIMEOUT_S:.0f} s"
    result: dict[str, Any] = {"scenario": job.scenario, "seed": job.seed}
    result |= {"driver": job.driver, "held_out": job.held_out, "run": job.run_name}
    result["wall_s"] = round(time.monotonic() - started, 1)
    if failure is None and job.metrics_out.is_file():
        metrics = json.loads(job.metrics_out.read_text())
        result |= {k: metrics.get(k) for k in REPORT_KEYS}
        png = job.metrics_out.with_suffix(".png")  # OUT/runs/DRIVER/RUN.png
        rel = png.relative_to(job.metrics_out.parents[2])  # relative: the report can move
        result["trajectory_png"] = str(rel) if png.is_file() else None
    else:
        result["error"] = failure or "the run wrote no metrics"
    return result


def _last_line(stderr: str, code: int) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exited with code {code}"


def run_suite(args: argparse.Namespace, steering: SteeringNodeConfig) -> dict[str, Any]:
    """Run every job in `args.workers` parallel stacks; returns the report (not yet written).
    ``steering``: the stacks' [steering] section (the robot config, read once)."""
    model = args.model
    if not Path(model).is_file():
        raise DataError(f"model file {model} does not exist: check the path or train one")
    out_dir = Path(args.out)
    drivers = ["model"] + (["expert"] if not args.no_expert else [])
    drivers += ["straight"] if args.straight else []
    jobs = plan_jobs(
        model,
        args.suite,
        out_dir,
        drivers,
        args.only,
        args.seeds,
        args.traversability,
        args.safety_driver,
        tuple(args.set),
    )
    from perception.steering import executor

    bar = tqdm(total=len(jobs), desc="eval", unit="run", disable=args.quiet)

    def done(result: dict[str, Any]) -> None:
        bar.update(1)
        bar.set_postfix(last=result["run"][:24])

    if getattr(args, "cluster", None):
        runs = executor.eval_on_cluster(
            run_job, args.cluster, jobs, args.duration, args.workers, done
        )
    else:
        runs = executor.run_local(lambda job: run_job(job, args.duration), jobs, args.workers, done)
    bar.close()
    return build_report(model, args, runs, steering)


def build_report(
    model: str, args: argparse.Namespace, runs: list[dict], steering: SteeringNodeConfig
) -> dict[str, Any]:
    """The JSON report: settings, overall / held-out / per-scenario figures, every run."""
    from perception.infer import (
        load_checkpoint,
        pick_device,
        pick_precision,
        precision_name,
        software_version,
    )

    ckpt = load_checkpoint(model)
    device = pick_device(steering.device)  # what the stacks' steering nodes picked
    drivers = sorted({r["driver"] for r in runs}, key=["model", "expert", "straight"].index)
    scenarios: dict[str, Any] = {}
    for name in dict.fromkeys(r["scenario"] for r in runs):
        mine = [r for r in runs if r["scenario"] == name]
        scenarios[name] = {"held_out": mine[0]["held_out"]}
        scenarios[name] |= {d: aggregate([r for r in mine if r["driver"] == d]) for d in drivers}
    held = [r for r in runs if r["held_out"]]
    report = {
        "model": str(model),
        "model_arch": ckpt.config.arch,
        # what the model learned from, in minutes (None: trained before the data budget)
        "data_budget": ckpt.info.get("data", {}).get("budget"),
        "suite": str(args.suite),
        "seeds_per_scenario": args.seeds,
        "traversability_guard": bool(getattr(args, "traversability", False)),
        "safety_driver_s": getattr(args, "safety_driver", 0.0),
        "inference": {
            "device": device.type,
            "precision": precision_name(pick_precision(steering.precision, device)),
        },
        "overrides": list(getattr(args, "set", [])),
        "duration_s": args.duration,
        # said in the summary and the page too: capped runs' figures are not full runs'
        "capped_by_duration": bool(args.duration),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": software_version(),
        "overall": {d: aggregate([r for r in runs if r["driver"] == d]) for d in drivers},
        "held_out": {d: aggregate([r for r in held if r["driver"] == d]) for d in drivers},
        "scenarios": scenarios,
        "runs": runs,
    }
    report["targets"] = targets(report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("--model", required=True, help="checkpoint to evaluate")
    parser.add_argument("--suite", default="regression", help="folder of scenario .toml files")
    parser.add_argument("--out", default="eval-report", help="folder for the report and runs")
    parser.add_argument("--baseline", help="an earlier report.json to compare with")
    parser.add_argument("--workers", type=int, default=2, help="stacks running at once")
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the stacks as tasks on a Dask cluster: its scheduler's tcp://HOST:PORT, or "
        "local[:N] for N local worker processes (default --workers); docs/cluster.md",
    )
    parser.add_argument("--only", help="only scenarios whose name matches this glob")
    parser.add_argument("--seeds", type=int, default=1, help="worlds per scenario (1 + reserved)")
    parser.add_argument("--duration", type=float, help="cap each run at this simulated time")
    parser.add_argument("--no-expert", action="store_true", help="skip the expert's runs")
    parser.add_argument("--straight", action="store_true", help="add the straight baseline")
    parser.add_argument(
        "--traversability",
        action="store_true",
        help="the model drives with the traversability node and the control node's guard",
    )
    parser.add_argument(
        "--safety-driver",
        type=float,
        default=SAFETY_DRIVER_S,
        metavar="S",
        help="after a collision the expert drives for S seconds, then hands back, as a "
        "safety driver does (PilotNet); 0: the vehicle is only put back 1 m along its trail, "
        "and a policy that repeats its mistake collides there again and again "
        f"(default {SAFETY_DRIVER_S:g})",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a robot-config value for every stack, e.g. --set steering.precision=bf16",
    )
    parser.add_argument("--max-autonomy-drop", type=float, default=2.0, help="points")
    parser.add_argument("--max-mdbc-drop-pct", type=float, default=20.0, help="percent")
    parser.add_argument("--max-extra-collisions", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the suite, write report.json and report.html; 1 when a figure regressed."""
    if args.seeds < 1 or args.workers < 1:
        raise ConfigError("--seeds and --workers must be at least 1")
    check_safety_driver_s(args.safety_driver, "--safety-driver")
    robot = load_config(None, args.set)  # a bad --set fails here, once, not in every stack
    from perception.infer import load_checkpoint

    load_checkpoint(args.model)  # a missing, empty or foreign model: now, not after the suite
    if getattr(args, "cluster", None):
        from perception.steering.executor import parse_cluster

        parse_cluster(args.cluster)  # a bad address fails before any stack starts
    report = run_suite(args, robot.steering)
    failed = [r for r in report["runs"] if "error" in r]
    if args.baseline:
        path = Path(args.baseline)
        if not path.is_file():
            raise DataError(f"baseline report {path} does not exist: check the path")
        report["baseline"] = {"path": str(path)}
        report["regressions"] = compare(report, json.loads(path.read_text()), args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_html(report, out / "report.html")
    _print_summary(report, out)
    for r in failed:
        print(f"run {r['driver']} {r['run']} failed: {r['error']}", file=sys.stderr)
    return 1 if report.get("regressions") or failed else 0


def _print_summary(report: dict[str, Any], out: Path) -> None:
    rows = [("overall", report["overall"]), ("held out", report["held_out"])]
    inference = report.get("inference", {})
    print(
        f"safety driver: {report['safety_driver_s']:g} s after each collision; steering "
        f"node on {inference.get('device', '?')} in {inference.get('precision', '?')}"
    )
    print(
        f"{'':10}{'driver':<10}{'dist m':>9}{'coll':>6}{'MDBC m':>9}{'auton %':>9}{'goal':>7}"
        f"{'goals':>7}"
    )
    for label, group in rows:
        for driver, fig in group.items():
            if not fig.get("runs"):
                continue
            print(
                f"{label:<10}{driver:<10}{fig['distance_m']:>9.1f}{fig['collisions']:>6}"
                f"{fig['mean_distance_between_collisions_m']:>9.1f}{fig['autonomy_pct']:>9.1f}"
                f"{fig['goal_progress']:>7.2f}{fig['goals_reached']:>4}/{fig['runs']:<2}"
            )
    if capped_text(report):
        print(capped_text(report))
    budget = report.get("data_budget")
    if budget:
        print(f"the model learned from {budget_text(budget)}")
    t = report["targets"]
    if report["held_out"].get("model", {}).get("runs"):
        print(
            f"held-out targets (MDBC >= {t['target_mdbc_m']:.0f} m, autonomy >= "
            f"{t['target_autonomy_pct']:.0f}%): {t['verdict']}; MDBC "
            f"{t['held_out_mdbc_m']:.1f} m{interval_text(t['held_out_mdbc_95ci_m'])}; "
            f"{t.get('driven', '')}"
        )
    for line in report.get("regressions", []):
        print(f"REGRESSION: {line}")
    print(f"report: {out / 'report.json'}, {out / 'report.html'}")


def main(argv: list[str] | None = None) -> int:
    """``python -m perception.steering.evaluate``: `rover eval` alone."""
    from rover.errors import run_command

    parser = argparse.ArgumentParser(prog="rover eval", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command("rover eval", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
