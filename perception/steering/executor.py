"""Where `rover eval` runs its stacks: local worker threads, or a Dask distributed cluster.

Each job is one (scenario, seed, driver) stack, run as a `rover drive --lockstep` process in
its own bus namespace. Locally a thread per running stack waits on its process (today's
behaviour). On a cluster (`--cluster ADDRESS`, or `--cluster local[:N]` for Dask's own
LocalCluster of worker processes on this machine) each job is a Dask task: the worker runs
the stack in a temporary folder and returns the metrics and the trajectory picture, which
this process writes where a local run writes them, so the report is the same. A task whose
stack fails is retried (``retries``), and the scheduler reruns the tasks of a worker that
dies; a job that still fails is reported as a failed run, as a local failure is.

Workers need the same rover installed. The model file travels to them with the tasks
(once per worker); bundled scenarios go by name, other scenario files must be at the same
path on every worker (a shared folder). See docs/cluster.md.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from rover.errors import ConfigError

RETRIES = 2  # a failed task runs up to 1 + RETRIES times, on any worker
LOCAL = "local"


class RunFailed(RuntimeError):
    """A stack on a worker finished without metrics: raised so Dask retries the task."""


def parse_cluster(address: str) -> tuple[str, int | None]:
    """("local", workers or None) for `local[:N]`, else (the scheduler address, None)."""
    if address == LOCAL or address.startswith(LOCAL + ":"):
        count = address.partition(":")[2]
        if count and (not count.isdigit() or int(count) < 1):
            raise ConfigError(f"--cluster {address}: write local or local:N with N >= 1")
        return LOCAL, int(count) if count else None
    if not address or " " in address:
        raise ConfigError(f"--cluster {address!r}: give tcp://HOST:PORT or local[:N]")
    return address, None


def connect(address: str, workers: int):
    """A Dask client of the scheduler at `address`, or of a fresh LocalCluster of `workers`
    single-threaded worker processes (closed with the client)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            "--cluster needs Dask distributed: pip install 'rover[cluster]'"
        ) from None
    where, count = parse_cluster(address)
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # no `rover -v`: warnings only
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if where == LOCAL:
        cluster = LocalCluster(
            n_workers=count or workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: 8787 may be another cluster's
        )
        client = Client(cluster)
        client._rover_cluster = cluster  # closed with the client by `close`
        return client
    try:
        return Client(where, timeout="20s")
    except OSError as exc:
        raise ConfigError(
            f"--cluster {address}: no Dask scheduler answers there ({exc}): start one with "
            "`dask scheduler` and workers with `dask worker ADDRESS` (docs/cluster.md)"
        ) from None


def close(client) -> None:
    """Close a client from `connect` and the LocalCluster it started, if any."""
    cluster = getattr(client, "_rover_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def run_local(fn: Callable, items: Sequence, workers: int, on_done: Callable) -> list:
    """``fn(item)`` for every item, `workers` at a time in threads; results in item order."""
    results = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            results.append(future.result())
            on_done(results[-1])
    return results


def run_on_cluster(
    client, fn: Callable, items: Sequence, on_done: Callable, failed: Callable, *shared
) -> list:
    """``fn(item, *shared)`` for every item as Dask tasks (retried on failure); results in
    item order, ``failed(item, exception)`` standing in for a task that failed for good.
    ``shared`` values travel to each worker once."""
    from distributed import as_completed

    # a task holding each value, not `scatter`: the scheduler recomputes a task's result
    # when the worker that held it dies, while scattered data is lost with its workers
    scattered = [client.submit(_identity, value, pure=False) for value in shared]
    futures = [client.submit(fn, item, *scattered, retries=RETRIES, pure=False) for item in items]
    index = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    for future in as_completed(futures):
        i = index[future.key]
        try:
            results[i] = future.result()
        except Exception as exc:  # the task's own error, or KilledWorker: a failed run
            results[i] = failed(items[i], exc)
        on_done(results[i])
    return results


def _identity(value: Any) -> Any:
    return value


def portable_job(job, model_path: str):
    """The job as a worker elsewhere can run it: bundled scenarios by name, this model."""
    from sim.scenario import SCENARIO_DIR

    path = Path(job.path).resolve()
    scenario: str | Path = job.path
    if path.is_relative_to(SCENARIO_DIR):
        scenario = str(path.relative_to(SCENARIO_DIR).with_suffix(""))
    model = model_path if job.driver == "model" else job.model
    return replace(job, path=scenario, model=model)


def model_file(data: bytes | None, folder: Path) -> str:
    """The scattered model bytes as a file in `folder` (one per content), or "" when none."""
    if data is None:
        return ""
    path = folder / f"model-{hashlib.sha256(data).hexdigest()[:16]}.pt"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)


def run_job_remote(
    run_job: Callable, job, duration: float | None, model_bytes: bytes | None
) -> dict[str, Any]:
    """A Dask task: ``run_job(job, duration)`` (evaluate's, handed over by reference) in a
    temporary folder on the worker; its result, with the metrics file and the trajectory
    picture as bytes (``files``), for the client to write."""
    _drop_dask_environ()
    with tempfile.TemporaryDirectory(prefix="rover-eval-task-") as tmp:
        root = Path(tmp)
        model = model_file(model_bytes, Path(tempfile.gettempdir()))
        here = root / job.metrics_out.relative_to(job.metrics_out.parents[2])
        result = run_job(replace(portable_job(job, model), metrics_out=here), duration)
        if "error" in result:
            raise RunFailed(result["error"])
        files = {}
        for path in (here, here.with_suffix(".png")):
            if path.is_file():
                files[str(path.relative_to(root))] = path.read_bytes()
        return result | {"files": files}


def _drop_dask_environ() -> None:
    """Undo the variables Dask's nanny sets for its workers (OMP_NUM_THREADS=1, ...): the
    stack's nodes pick their own thread counts, as they do when started from a shell."""
    import dask

    preset = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    for key, value in preset.items():
        if os.environ.get(key) == str(value):
            os.environ.pop(key, None)


def write_files(result: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write a remote result's files under `out_dir`; the result as a local run gives it."""
    files = result.pop("files", {})
    for rel, data in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return result


def failed_result(job, exc: BaseException) -> dict[str, Any]:
    """The result of a job whose task failed for good, shaped as a local failure's."""
    error = str(exc) if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}"
    result: dict[str, Any] = {"scenario": job.scenario, "seed": job.seed}
    result |= {"driver": job.driver, "held_out": job.held_out, "run": job.run_name}
    return result | {"wall_s": 0.0, "error": error}


def eval_on_cluster(
    run_job: Callable,
    address: str,
    jobs: Sequence,
    duration: float | None,
    workers: int,
    on_done: Callable,
) -> list[dict[str, Any]]:
    """Every eval job as a task on the cluster at `address`; results as `run_job` gives them,
    with each run's metrics and picture written where a local run writes them."""
    models = {job.model for job in jobs if job.driver == "model"}
    model_bytes = Path(models.pop()).read_bytes() if models else None
    out_dirs = {job.run_name + job.driver: job.metrics_out.parents[2] for job in jobs}
    client = connect(address, workers)
    try:

        def done(result: dict[str, Any]) -> None:
            if "files" in result:
                write_files(result, out_dirs[result["run"] + result["driver"]])
            on_done(result)

        task = functools.partial(run_job_remote, run_job)
        return run_on_cluster(client, task, jobs, done, failed_result, duration, model_bytes)
    finally:
        close(client)
