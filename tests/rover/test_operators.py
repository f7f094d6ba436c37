"""Who drives: the remote operators' gate and the control node's choice of input."""

from rover import messages as m
from rover.control import ControlOutput
from rover.operators import DRIVER, VIEWER, InputSelect, OperatorGate, OperatorInput

HELD = OperatorInput(throttle=0.5, deadman=True)
IDLE = OperatorInput()
MS = 1_000_000


def test_second_operator_views_until_the_first_lets_go():
    gate = OperatorGate()
    assert gate.join("a", "alice") == DRIVER and gate.join("b", "bob") == VIEWER
    assert gate.command("b", HELD) is None  # a viewer moves nothing
    gate.command("a", IDLE)
    assert gate.command("a", HELD).throttle == 0.5
    assert gate.release("a").throttle == 0.0  # letting go stops what it drove
    assert gate.role("b") == DRIVER and gate.role("a") == VIEWER
    assert gate.command("b", HELD).operator == "remote bob"


def test_the_drivers_record_button_pauses_the_recording_and_the_pause_outlives_the_page():
    gate = OperatorGate()
    gate.join("a", "alice")
    gate.join("b", "bob")
    paused = OperatorInput(record=True)
    assert gate.command("a", paused).record_paused  # before acting: a heartbeat that pauses
    assert gate.command("b", paused) is None  # a viewer's button does nothing
    gate.command("a", IDLE)
    held = gate.command("a", OperatorInput(throttle=0.5, deadman=True, record=True))
    assert held.throttle == 0.5 and held.record_paused
    assert gate.release("a").record_paused  # closing the page leaves the recording paused


def test_a_new_session_moves_nothing_until_its_operator_acts():
    gate = OperatorGate()
    gate.join("a", "alice")
    beat = gate.command("a", HELD)  # connected with the deadman already down: no act
    assert beat.throttle == 0.0 and not beat.deadman and beat.operator == "remote alice"
    gate.command("a", IDLE)
    assert gate.command("a", HELD).deadman  # released, then pressed: that is acting


def test_a_quiet_link_makes_the_operator_act_again():
    gate = OperatorGate(resume_gap_ms=200)
    gate.join("a", "alice")
    gate.command("a", IDLE, 1 * MS)
    assert gate.command("a", HELD, 20 * MS).deadman
    assert not gate.command("a", HELD, 400 * MS).deadman  # link back, key still held
    gate.command("a", IDLE, 420 * MS)
    assert gate.command("a", HELD, 440 * MS).deadman


def test_e_stop_from_anyone_latches_until_the_driver_re_arms():
    gate = OperatorGate()
    gate.join("a", "alice")
    gate.join("b", "bob")
    assert gate.command("b", OperatorInput(estop=True)).estop  # the viewer may stop it
    gate.command("a", IDLE)
    assert gate.command("a", HELD).estop and not gate.rearm("b")
    assert gate.rearm("a") and not gate.command("a", HELD).estop


def _out() -> ControlOutput:
    return ControlOutput(0.0, 0.5, True, False, False, "teleop", -1)


def test_remote_takes_over_by_acting_and_a_quiet_link_zeroes_throttle():
    select = InputSelect(stale_ms=200)
    local = m.TeleopCommand(autopilot=True, operator="keyboard window")
    assert select.accept(local, 0, remote=False) is local
    beat = m.TeleopCommand(operator="remote alice")
    assert select.accept(beat, 10 * MS, remote=True) is None  # connected, not acting
    assert select.accept(local, 20 * MS, remote=False) is local
    drive = m.TeleopCommand(throttle=0.5, deadman=True, operator="remote alice")
    assert select.accept(drive, 30 * MS, remote=True) is drive
    assert select.accept(local, 40 * MS, remote=False) is None  # remote drives now
    assert select.guard(_out(), 200 * MS).throttle == 0.5
    assert 200 < select.ms_until_stale(30 * MS) < 201 and not select.stale_due(229 * MS)
    assert select.stale_due(231 * MS) and not select.stale_due(232 * MS)  # once
    assert select.ms_until_stale(232 * MS) == float("inf")
    quiet = select.guard(_out(), 231 * MS)
    assert quiet.throttle == 0.0 and not quiet.arm and quiet.source == "remote:stale"
    takeover = m.TeleopCommand(deadman=True, operator="keyboard window")
    assert select.accept(takeover, 250 * MS, remote=False) is takeover  # by the robot wins
    assert select.accept(drive, 260 * MS, remote=True) is None


def test_a_connected_console_counts_as_the_operator_input():
    select = InputSelect(stale_ms=200)
    select.accept(m.TeleopCommand(operator="remote alice"), 0, remote=True)
    passed = select.accept(m.TeleopCommand(autopilot=True), 10 * MS, remote=False)
    assert passed.operator == "remote alice" and passed.autopilot
