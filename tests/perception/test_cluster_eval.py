"""`rover eval --cluster`: the same report from Dask workers, and tasks that survive a worker.

The cluster is Dask's own LocalCluster of real worker processes on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import pytest
import torch

from perception.infer import save_checkpoint
from perception.steering import evaluate, executor
from perception.steering.model import SteeringModelConfig, build_model
from rover.errors import ConfigError

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers have no tests/


def test_cluster_addresses_are_checked_before_any_stack_starts(tmp_path, capsys):
    assert executor.parse_cluster("local") == ("local", None)
    assert executor.parse_cluster("local:3") == ("local", 3)
    assert executor.parse_cluster("tcp://10.0.0.5:8786") == ("tcp://10.0.0.5:8786", None)
    with pytest.raises(ConfigError):
        executor.parse_cluster("local:0")
    model = save_checkpoint(
        tmp_path / "m.pt", build_model(SteeringModelConfig(arch="dave")), 0.6, {}
    )
    argv = ["--model", str(model), "--out", str(tmp_path / "eval"), "--cluster", "local:x"]
    assert evaluate.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "local:N" in err[0]
    assert not (tmp_path / "eval").exists()


def _comparable(report: dict) -> dict:
    """The report without what differs between any two runs: creation time, wall seconds."""
    report = dict(report, created=None)
    report["runs"] = [dict(r, wall_s=None) for r in report["runs"]]
    return report


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_same_report_as_local_workers(tmp_path):
    torch.manual_seed(0)
    model = save_checkpoint(
        tmp_path / "m.pt", build_model(SteeringModelConfig(arch="dave")), 0.6, {}
    )
    reports = {}
    for name, extra in (("local", []), ("cluster", ["--cluster", "local:2"])):
        out = tmp_path / name
        argv = ["--model", str(model), "--only", "open_101", "--duration", "2"]
        assert evaluate.main([*argv, "--out", str(out), "--quiet", *extra]) == 0
        reports[name] = json.loads((out / "report.json").read_text())
    local, cluster = reports["local"], reports["cluster"]
    assert [r["late_frames"] for r in local["runs"] + cluster["runs"]] == [0] * 4
    assert _comparable(cluster) == _comparable(local)
    for run in cluster["runs"]:  # the pictures came back from the workers
        assert (tmp_path / "cluster" / run["trajectory_png"]).stat().st_size > 0
        assert (tmp_path / "cluster" / "runs" / run["driver"] / f"{run['run']}.json").is_file()


def _die_once(item: int, marks: str) -> int:
    """Kill this worker process the first time an item runs; answer the second time."""
    mark = Path(marks) / str(item)
    if not mark.exists():
        mark.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return item * 10


def _always_fails(item: int) -> int:
    raise executor.RunFailed(f"stack {item} crashed")


@pytest.mark.slow
def test_a_killed_workers_task_is_rerun_and_a_failing_one_is_reported(tmp_path):
    client = executor.connect("local:2", 2)
    try:
        done: list = []
        results = executor.run_on_cluster(
            client, _die_once, [1, 2], done.append, lambda i, e: None, str(tmp_path)
        )
        assert results == [10, 20] and len(done) == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "1",
            "2",
        ]  # each killed its worker once

        failed = executor.run_on_cluster(
            client, _always_fails, [7], done.append, lambda i, e: f"{i}: {e}"
        )
        assert failed == ["7: stack 7 crashed"]
    finally:
        executor.close(client)
