"""The robot path with the compiled firmware as its motor controller (the rig's MCU): video
files as cameras, a scripted operator, and the firmware in simavr behind `[motor] port`."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from drivers.avr_sim import AvrConfig, AvrMcu
from rover import topics


@pytest.mark.slow
def test_teleop_on_the_robot_drives_the_firmwares_pulses_and_stops_them(
    tmp_path, require_tools, start_rover, stop_group, write_robot, write_script
):
    require_tools("avr-gcc", "avr-nm", "simavr", "cc", "make")
    namespace = f"t{uuid.uuid4().hex[:10]}"
    with AvrMcu(AvrConfig()) as mcu:
        robot = write_robot(tmp_path, mcu.device_path)
        script = write_script(tmp_path)
        log = tmp_path / "stack.log"
        args = ["teleop", "--config", str(robot), "--namespace", namespace]
        proc = start_rover(*args, "--teleop-script", str(script), cwd=tmp_path, log=log)
        try:
            # The operator's half throttle reaches the ESC pin as a pulse longer than neutral.
            out = mcu.wait_outputs(lambda o: o.armed and o.throttle > 0.3, timeout_s=60)
            assert out.steering > 0.1
            assert mcu.pulses("D10")[-1][1] > 1650_000  # ns: 1500 us + 0.3 * 500 us
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
            assert proc.wait(10) == 0, log.read_text()
        finally:
            stop_group(proc)
            topics.BusConfig(namespace=namespace).remove_ipc_root()
        # The control node's last DRIVE disarms: the pulses are back at neutral.
        out = mcu.wait_outputs(lambda o: not o.armed and o.throttle == 0.0, timeout_s=2)
        stopped_ns = mcu.sim_ns
        mcu.wait_sim_ns(stopped_ns + 40_000_000, timeout_s=2)
        last = [w for r, w in mcu.pulses("D10") if r > stopped_ns]
        assert last and all(abs(w - 1500_000) <= 2_000 for w in last)
