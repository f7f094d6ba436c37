"""`rover bench cluster`: worlds evaluated per minute, local workers vs a Dask cluster's.

The same eval jobs (the expert driving `--worlds` worlds of one regression scenario, each a
full `rover drive --lockstep` stack capped at `--duration` simulated seconds) run twice with
`--workers` at a time: in rover's local worker threads (the floor), then as tasks on Dask's
LocalCluster of as many single-threaded worker processes on this machine. The ratio is the
engine's overhead; the cluster's start (scheduler and worker processes) is timed apart.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

from rover.bench.common import print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options."""
    parser.add_argument("--worlds", type=int, default=4, help="worlds (jobs) per mode")
    parser.add_argument("--workers", type=int, default=2, help="stacks at once, in both modes")
    parser.add_argument("--duration", type=float, default=3.0, help="simulated s per world")
    parser.add_argument("--scenario", default="open_101", help="regression scenario to drive")


def run(args: argparse.Namespace) -> dict:
    """Both modes on the same jobs; the table, and the flat dict of figures."""
    from perception.steering import executor
    from perception.steering.evaluate import plan_jobs, run_job

    if args.worlds < 1 or args.workers < 1 or args.duration <= 0:
        from rover.errors import ConfigError

        raise ConfigError("--worlds and --workers must be >= 1, --duration > 0")
    with tempfile.TemporaryDirectory(prefix="rover-bench-cluster-") as tmp:
        jobs = {
            mode: plan_jobs(
                "expert", "regression", Path(tmp) / mode, ["expert"], args.scenario, args.worlds
            )
            for mode in ("local", "cluster")
        }
        start = time.monotonic()
        local = executor.run_local(
            lambda job: run_job(job, args.duration), jobs["local"], args.workers, _noop
        )
        local_s = time.monotonic() - start
        start = time.monotonic()
        client = executor.connect(f"local:{args.workers}", args.workers)
        started_s = time.monotonic() - start
        try:
            start = time.monotonic()
            remote = executor.run_on_cluster(
                client,
                functools.partial(executor.run_job_remote, run_job),
                jobs["cluster"],
                _noop,
                executor.failed_result,
                args.duration,
                None,
            )
            cluster_s = time.monotonic() - start
        finally:
            executor.close(client)
    n = args.worlds
    local_rate, cluster_rate = 60 * n / local_s, 60 * n / cluster_s
    with_start = 60 * n / (cluster_s + started_s)
    print_table(
        ("mode", "worlds", "workers", "wall s", "worlds/min", "vs local"),
        [
            ("local workers", str(n), str(args.workers), f"{local_s:.1f}", f"{local_rate:.1f}", "1.00"),
            ("dask LocalCluster", str(n), str(args.workers), f"{cluster_s:.1f}", f"{cluster_rate:.1f}", f"{cluster_rate / local_rate:.2f}"),
            ("  + cluster start", "", "", f"{started_s:.1f}", f"{with_start:.1f}", f"{with_start / local_rate:.2f}"),
        ],
    )  # fmt: skip
    return {
        "worlds": n,
        "workers": args.workers,
        "duration_sim_s": args.duration,
        "floor_local_worlds_per_min": round(local_rate, 2),
        "cluster_worlds_per_min": round(cluster_rate, 2),
        "cluster_with_start_worlds_per_min": round(with_start, 2),
        "cluster_start_s": round(started_s, 2),
        "overhead_ratio": round(local_rate / cluster_rate, 3),
        "failed_runs": sum("error" in r for r in local + remote),
    }


def _noop(_result: dict) -> None:
    return None
