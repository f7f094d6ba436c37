"""`rover bench serial`: the link's round trip against its floor, on the emulator and on the
compiled firmware in simavr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rover.bench import serial as bench

REPO = Path(__file__).resolve().parents[3]


def test_bench_reports_round_trip_floor_and_watchdog(capsys, cli_args):
    result = bench.run(cli_args(bench, ["--count", "100", "--watchdog-ms", "100"]))
    assert {"p50_ms", "p99_ms", "floor_p50_ms", "floor_p99_ms", "count", "lost"} <= set(result)
    assert result["count"] == 100 and result["lost"] == 0
    assert result["floor_p50_ms"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    assert abs(result["watchdog_ms"] - 100) <= 20
    assert "SerialMotorLink" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_serial_against_the_compiled_firmware(require_tools):
    require_tools("avr-gcc", "avr-nm", "simavr", "cc", "make")
    result = subprocess.run(
        [sys.executable, "-m", "rover.cli", "bench", "serial", "--mcu", "avr", "--count", "100"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["mcu"] == "avr" and figures["baud"] == 1_000_000 and figures["lost"] == 0
    # 30 bytes at 1 Mbaud are 0.3 ms on the wire: the firmware's round trip cannot beat that.
    assert 0.3 < figures["p50_ms"] < figures["p99_ms"]
    assert 230 <= figures["watchdog_ms"] <= 270
