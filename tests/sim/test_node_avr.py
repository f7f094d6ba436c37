"""The simulator driven through the compiled firmware (`--mcu avr`): the very bytes a board runs."""

import pytest

from tests.sim.test_node import RUN_KEYS_THAT_VARY, drive


@pytest.mark.slow
def test_lockstep_run_through_the_firmware_in_simavr_matches_the_emulator(tmp_path, require_tools):
    require_tools("avr-gcc", "avr-nm", "simavr", "cc", "make")
    args = ("--sim", "forest", "--seed", "5", "--model", "expert", "--lockstep", "--duration", "4")
    avr = drive(tmp_path, *args, "--mcu", "avr", name="avr")
    emulator = drive(tmp_path, *args, name="emulator")
    assert avr["late_frames"] == 0 and avr["steps"] == 120 and avr["distance_m"] > 4
    # The firmware's pulses resolve every thousandth (half a microsecond each), so the vehicle,
    # steered by the widths read back from the pins, drives exactly as with the emulator.
    same = {k: v for k, v in avr.items() if k not in RUN_KEYS_THAT_VARY}
    assert same == {k: v for k, v in emulator.items() if k not in RUN_KEYS_THAT_VARY}


def test_mcu_avr_is_the_simulators_and_says_so_in_one_line(tmp_path, capsys):
    from rover.cli import main

    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    assert main(["drive", "--model", str(model), "--mcu", "avr"]) == 2
    assert capsys.readouterr().err.strip() == (
        "rover: error: --mcu is the simulator's motor controller: add --sim SCENARIO"
    )
    assert main(["drive", "--sim", "open", "--mcu", "avr", "--serial-loss", "0.1"]) == 2
    assert "--serial-loss" in capsys.readouterr().err
