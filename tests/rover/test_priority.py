"""Scheduling classes: on a robot the glass-to-motor path (camera, steering, control, operator
input) runs in real time where the user may, and the traversability and recorder nodes yield
every core to it (rover/priority.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rover import priority

PROBE = (
    "import json, os; from rover import priority; said = priority.take(); "
    "print(json.dumps([said, os.sched_getscheduler(0), os.nice(0), "
    "sorted({os.sched_getscheduler(int(t)) for t in os.listdir('/proc/self/task')})]))"
)


def _take(env: dict) -> tuple[str, int, int, list[int]]:
    """What `priority.take` said and left, in a fresh process with `env` added."""
    full = {k: v for k, v in os.environ.items() if k != priority.REALTIME_ENV} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=True
    )
    said, policy, nice, policies = json.loads(out.stdout)
    return said, policy, nice, policies


def test_a_background_node_yields_by_the_background_niceness():
    said, policy, nice, _ = _take({priority.PRIORITY_ENV: priority.BACKGROUND})
    assert policy == os.SCHED_OTHER
    assert nice == os.nice(0) + priority.BACKGROUND_NICE
    assert said == f"background (nice {nice})"


def test_a_path_node_runs_in_real_time_where_allowed_and_says_why_not_elsewhere():
    said, policy, nice, policies = _take({priority.PRIORITY_ENV: priority.PATH})
    allowed, why = priority.realtime_allowed()
    if allowed:
        assert policy == os.SCHED_FIFO and said == "real-time (SCHED_FIFO 10)", said
        assert policies == [os.SCHED_FIFO]  # every thread, the ones its imports started too
    else:
        assert policy == os.SCHED_OTHER and said == f"normal ({why})"
        assert "rtprio" in said  # the fix: how to let the user run it in real time
    assert nice == os.nice(0)


def test_realtime_can_be_turned_off_and_other_nodes_stay_as_started():
    said, policy, _, _ = _take({priority.PRIORITY_ENV: priority.PATH, priority.REALTIME_ENV: "0"})
    assert policy == os.SCHED_OTHER and said == "normal (turned off (ROVER_REALTIME=0))"
    said, policy, nice, _ = _take({priority.PRIORITY_ENV: priority.NORMAL})
    assert (said, policy, nice) == ("normal", os.SCHED_OTHER, os.nice(0))


def _policy_and_nice(pid: int) -> tuple[int, int]:
    return os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)


@pytest.mark.slow
def test_the_robot_stacks_path_nodes_take_a_core_before_its_background_nodes(
    tmp_path, rig, rig_env, node_pid, new_namespace, rover_stack, wait_until
):
    """`rover drive --traversability --record` on the rig: camera, steering, control and teleop
    in the path's class (real time where allowed: CI runs as root), traversability and the
    recorder at the background niceness, the rig's motor controller in the path's class."""
    namespace = new_namespace()
    model = Path(__file__).parents[2] / "perception/steering/bundled/steering.pt"
    argv = ["drive", "--config", str(rig.toml), "--model", str(model), "--traversability"]
    argv += ["--record", str(tmp_path / "rec"), "--unattended", "--namespace", namespace]
    stack = rover_stack(argv, rig_env, tmp_path / "stack.log")
    allowed, _ = priority.realtime_allowed()
    path = os.SCHED_FIFO if allowed else os.SCHED_OTHER
    background = (os.SCHED_OTHER, os.nice(0) + priority.BACKGROUND_NICE)
    want = {name: path for name in ("camera", "steering", "control", "teleop")}

    def classes():
        """Each node's (policy, niceness) once all have taken their class, else None (a node
        takes it first thing, before its imports: poll for it, no sleep)."""
        try:
            got = {
                name: _policy_and_nice(node_pid(namespace, f"rover.nodes.{name}"))
                for name in (*want, "traversability", "recorder")
            }
        except (AssertionError, OSError):  # not started yet
            return None
        done = all(got[n][0] == want[n] for n in want)
        lowered = all(got[n][1] > os.nice(0) for n in ("traversability", "recorder"))
        return got if done and lowered else None

    try:
        got = wait_until(classes, 90, "every node in its class")
        for name in ("traversability", "recorder"):
            assert got[name] == background, (name, got)
        mcu_pid = int(rig.pidfile.read_text())
        assert os.sched_getscheduler(mcu_pid) == path
    finally:
        stack.stop()
