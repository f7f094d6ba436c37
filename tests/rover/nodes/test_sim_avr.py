"""The simulator driven through the compiled firmware (`--mcu avr`): the very bytes a board runs."""

import pytest

from tests.rover.nodes.test_sim import drive


@pytest.mark.slow
def test_lockstep_run_drives_through_the_firmware_in_simavr(tmp_path, require_tools):
    require_tools("avr-gcc", "avr-nm", "simavr", "cc", "make")
    args = ("--sim", "forest", "--seed", "5", "--model", "expert", "--lockstep", "--duration", "4")
    avr = drive(tmp_path, *args, "--mcu", "avr", name="avr")
    assert avr["late_frames"] == 0 and avr["steps"] == 120
    # Steered by the pulse widths read back from the firmware's pins, the expert drives on
    # (measured: 7.06 m, the same final pose as with the emulator, on a quiet machine; the
    # stack's wall-clock staleness checks make a heavily loaded run differ, with either MCU).
    assert avr["distance_m"] > 4 and avr["collisions"] == 0


def test_mcu_avr_is_the_simulators_and_says_so_in_one_line(tmp_path, capsys):
    from rover.cli import main

    model = tmp_path / "model.pt"
    model.write_bytes(b"not empty")
    assert main(["drive", "--model", str(model), "--mcu", "avr"]) == 2
    assert capsys.readouterr().err.strip() == (
        "rover: error: --mcu is for the simulator: add --sim SCENARIO, or leave --mcu out on "
        "the robot"
    )
    assert main(["drive", "--sim", "open", "--mcu", "avr", "--serial-loss", "0.1"]) == 2
    assert "--serial-loss" in capsys.readouterr().err
