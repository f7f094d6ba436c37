"""`rover doctor` on the rig: every check passes on a good one, and says what to fix on a bad one."""

from __future__ import annotations

import os

import pytest

from rover import priority

QUICK = ["--skip", "torch", "--skip", "models", "--skip", "nodes"]


def _lines(out: str) -> dict[str, str]:
    """check name -> its status, from the report's lines ("ok    cameras: ...")."""
    found = {}
    for line in out.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("ok", "warn", "FAIL") and ":" in rest:
            found[rest.strip().split(":", 1)[0]] = status.strip()
    return found


@pytest.mark.slow
def test_doctor_passes_a_good_rig_with_the_nodes_on_live_frames(rig, rig_env, rover_cli):
    # wide budgets: this shared machine is noisy; `rover bench latency` measures the targets
    done = rover_cli(
        "doctor", "--config", str(rig.toml), "--seconds", "2", "--steering-budget-ms", "500",
        "--traversability-budget-ms", "2000", env=rig_env, timeout_s=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    for check in (
        "config", "calibration", "cameras", "camera skew", "serial port", "firmware",
        "watchdog", "disk", "torch", "steering model", "traversability model",
        "steering node", "traversability node",
    ):  # fmt: skip
        assert lines.get(check) == "ok", f"{check}: {done.stdout}"
    # real time where this user may (CI runs as root), else a warning saying how
    assert lines.get("scheduling") == ("ok" if priority.realtime_allowed()[0] else "warn")
    assert "no version query" in done.stdout  # the protocol has none: it says what it checked
    assert "live frames" in done.stdout and "all checks passed" in done.stdout


def test_doctor_names_a_wrong_port_and_a_camera_that_does_not_deliver(
    rig, rig_env, tmp_path, rover_cli
):
    silent = tmp_path / "camera.pipe"
    os.mkfifo(silent)  # a stream nobody sends on: opening it never delivers a frame
    wrong = tmp_path / "ttyACM9"
    done = rover_cli(
        "doctor", "--config", str(rig.toml), "--set", f"camera.right={silent}",
        "--set", f"motor.port={wrong}", "--camera-timeout", "2", *QUICK, env=rig_env,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = _lines(done.stdout)
    assert lines["cameras"] == "FAIL" and lines["serial port"] == "FAIL"
    assert "delivered no frame in 2 s" in done.stdout
    assert f"{wrong} does not exist: plug in the motor controller" in done.stdout
    assert lines["calibration"] == "ok" and "2 check(s) failed" in done.stdout


@pytest.mark.slow
def test_doctor_talks_to_the_compiled_firmware_in_simavr(
    rig_env, tmp_path, require_tools, rover_cli, start_rig, stop_rig
):
    require_tools("avr-gcc", "simavr")
    files = start_rig(tmp_path / "rig", rig_env, "--mcu", "avr")
    try:
        done = rover_cli("doctor", "--config", str(files.toml), *QUICK, env=rig_env)
    finally:
        stop_rig(files.root, rig_env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    assert lines["firmware"] == "ok" and lines["watchdog"] == "ok"


def test_a_node_over_budget_fails_on_an_idle_machine_and_warns_on_a_busy_one():
    from rover.cpu_load import OtherLoad
    from rover.doctor import node_finding

    slow = {"n": 60, "p50_ms": 9.0, "p99_ms": 14.0}
    idle = node_finding("steering", slow | {"others": OtherLoad(0.1, 2, 0.4)}, 5.0, 2.0)
    assert idle.status == "FAIL" and "too slow on an otherwise idle machine" in idle.text
    busy = node_finding("steering", slow | {"others": OtherLoad(1.6, 2, 4.2)}, 5.0, 2.0)
    assert busy.status == "warn" and "rerun on an idle machine" in busy.text
    assert "other programs kept 1.6 of 2 cores busy (load average 4.2)" in busy.text
    fast = node_finding("steering", slow | {"others": OtherLoad(1.6, 2, 4.2)}, 20.0, 2.0)
    assert fast.status == "ok"
