"""One contract for every operator input (drivers/gamepad.py): the scripted twin, a gamepad on
pygame's real event queue, and the keyboard window on a real X server (Xvfb) fed real key
events (xdotool). The operator drives, lets go, e-stops, re-arms, hands over to the autopilot
and takes over again, then goes away; each input must answer the same way."""

from __future__ import annotations

import inspect
import os
import subprocess
import time

import pytest

import drivers.gamepad
from drivers.gamepad import (
    WINDOW_TITLE,
    KeyboardWindow,
    OperatorInput,
    PygameGamepad,
    ScriptedGamepad,
    ScriptStep,
    load_script,
)
from rover.errors import ConfigError
from rover.teleop import PRESETS

PHASES = ("drive", "release", "estop", "drive", "release", "rearm", "mode", "drive", "release")
PHASE_S = 1.0  # the scripted twin's virtual time per phase


class ScriptHarness:
    """The scripted twin with a virtual clock: each phase is a step of the script."""

    def __init__(self) -> None:
        steps = [ScriptStep(0.0)]
        for i, phase in enumerate((*PHASES, "unplug"), start=1):
            t = i * PHASE_S
            if phase == "drive":
                steps.append(ScriptStep(t, steering=0.3, throttle=0.6, deadman=True))
            elif phase == "release":
                steps.append(ScriptStep(t))
            elif phase == "unplug":
                steps.append(ScriptStep(t, connected=False))
            else:
                steps.append(ScriptStep(t, action=phase))
        self.input = ScriptedGamepad(steps)
        self.phase = 0
        self.now_s = 0.0

    def clock(self) -> float:
        self.now_s += 0.02
        return self.now_s

    def do(self, phase: str) -> None:
        self.phase += 1
        self.now_s = self.phase * PHASE_S


class PadHarness:
    """A gamepad through pygame: its events posted on SDL's real queue (no pad is plugged
    into this machine), read by the input's own ``pygame.event.get``."""

    def __init__(self, monkeypatch) -> None:
        monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
        monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
        import pygame

        self.pg = pygame
        pygame.display.quit()
        self.input = PygameGamepad()
        self.m = PRESETS["xbox"]
        self._post(pygame.JOYBUTTONDOWN, button=0)  # the first pad pressed becomes active
        self._post(pygame.JOYBUTTONUP, button=0)

    def _post(self, kind, **attrs) -> None:
        self.pg.event.post(self.pg.event.Event(kind, instance_id=4, joy=4, **attrs))

    def clock(self) -> float:
        return time.monotonic()

    def do(self, phase: str) -> None:
        pg, m = self.pg, self.m
        if phase == "drive":
            self._post(pg.JOYAXISMOTION, axis=m.steering_axis, value=-0.8)
            self._post(pg.JOYAXISMOTION, axis=m.throttle_axis, value=0.6)
            self._post(pg.JOYBUTTONDOWN, button=m.deadman_button)
        elif phase == "release":
            self._post(pg.JOYBUTTONUP, button=m.deadman_button)
            self._post(pg.JOYAXISMOTION, axis=m.throttle_axis, value=-1.0)
            self._post(pg.JOYAXISMOTION, axis=m.steering_axis, value=0.0)
        elif phase == "unplug":
            self._post(pg.JOYDEVICEREMOVED)
        else:
            button = {"estop": m.estop_button, "rearm": m.rearm_button, "mode": m.mode_button}
            self._post(pg.JOYBUTTONDOWN, button=button[phase])
            self._post(pg.JOYBUTTONUP, button=button[phase])


class KeyboardHarness:
    """The keyboard window on Xvfb; xdotool types into it through the X server (XTEST)."""

    KEYS = {"estop": "space", "rearm": "r", "mode": "m"}

    def __init__(self, monkeypatch, display: str) -> None:
        import pygame

        pygame.display.quit()  # an earlier test may have started SDL's dummy driver
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
        monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
        self.pg = pygame
        self.input = KeyboardWindow()
        self.env = {**os.environ, "DISPLAY": display}
        self.window = str(pygame.display.get_wm_info()["window"])  # its X window id

        def mapped() -> str:
            self.input.read(time.monotonic())  # SDL sends its requests while it pumps events
            return self._xdotool("getwindowname", self.window)

        assert _wait(mapped, 10, "the window") == WINDOW_TITLE
        self._xdotool("windowfocus", "--sync", self.window)

    def _xdotool(self, *args: str) -> str:
        done = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    def clock(self) -> float:
        return time.monotonic()

    def do(self, phase: str) -> None:
        if phase == "drive":
            self._xdotool("keydown", "Up", "Left")
        elif phase == "release":
            self._xdotool("keyup", "Up", "Left")
        elif phase == "unplug":  # the operator closes the window
            self.pg.event.post(self.pg.event.Event(self.pg.QUIT))
        else:
            self._xdotool("key", self.KEYS[phase])


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # polling a condition with a deadline
    raise AssertionError(f"timed out waiting for {what}")


# Every OperatorInput of drivers/gamepad.py and the contract case that drives it. No virtual
# joystick can be made here (no /dev/uinput, and pygame has no SDL virtual-joystick call), so the
# gamepad's case posts joystick events on SDL's real queue instead of plugging a pad in.
CONTRACT_CASES = {ScriptedGamepad: "script", PygameGamepad: "gamepad", KeyboardWindow: "keyboard"}


@pytest.fixture(params=list(CONTRACT_CASES.values()))
def harness(request, monkeypatch):
    if request.param == "script":
        yield ScriptHarness()
        return
    import pygame

    try:
        if request.param == "gamepad":
            h = PadHarness(monkeypatch)
        else:
            h = KeyboardHarness(monkeypatch, request.getfixturevalue("xvfb"))
        yield h
        h.input.close()
    finally:
        pygame.display.quit()  # before the X server goes


def _read_until(h, predicate, what: str, timeout_s: float = 5.0):
    return _wait(
        lambda: (lambda s: s if predicate(s) else None)(h.input.read(h.clock())), timeout_s, what
    )


def _reads(h, seconds: float) -> list:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.append(h.input.read(h.clock()))
        time.sleep(0.02)  # the teleop node's 50 Hz loop
    return out


def test_operator_input_contract(harness):
    h = harness
    inp = h.input
    assert isinstance(inp, OperatorInput)
    first = _read_until(h, lambda s: inp.connected, "the input to connect")
    assert (first.throttle, first.deadman, first.estop, first.autopilot) == (
        0.0,
        False,
        False,
        False,
    )
    assert inp.name and not inp.closed

    h.do("drive")
    driving = _read_until(h, lambda s: s.throttle > 0.3, "throttle")
    assert driving.deadman and driving.steering > 0  # steering left is positive
    h.do("release")
    _read_until(h, lambda s: s.throttle == 0.0 and not s.deadman, "the deadman to cut throttle")

    h.do("estop")
    _read_until(h, lambda s: s.estop, "the e-stop")
    h.do("drive")  # throttle while e-stopped does nothing, and the e-stop stays latched
    assert all(s.estop and s.throttle == 0.0 for s in _reads(h, 0.3))
    h.do("release")
    h.do("rearm")
    _read_until(h, lambda s: not s.estop, "the re-arm")

    h.do("mode")
    _read_until(h, lambda s: s.autopilot, "autopilot mode")
    h.do("drive")  # touching the controls takes over from the autopilot
    taken = _read_until(h, lambda s: not s.autopilot and s.throttle > 0.3, "a takeover")
    assert taken.deadman
    h.do("release")
    _read_until(h, lambda s: s.throttle == 0.0, "the release")

    h.do("unplug")
    gone = _read_until(h, lambda s: not inp.connected, "the input to go")
    assert gone.throttle == 0.0 and not gone.deadman
    inp.close()
    inp.close()  # twice is fine


def test_every_operator_input_has_a_contract_case():
    protocol = {name for name, _ in inspect.getmembers(OperatorInput) if not name.startswith("_")}
    implementations = {
        cls
        for _, cls in inspect.getmembers(drivers.gamepad, inspect.isclass)
        if cls.__module__ == drivers.gamepad.__name__
        and cls is not OperatorInput
        and protocol <= set(dir(cls))
    }
    assert protocol >= {"read", "wait", "close", "connected", "closed", "name"}
    assert implementations == set(CONTRACT_CASES), "add a harness for each new OperatorInput"


def test_script_file_errors_name_the_step(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"t_s": 0}, {"t_s": 1, "action": "jump"}]')
    with pytest.raises(ConfigError, match="step 1.*jump"):
        load_script(bad)
    bad.write_text('[{"t_s": 0, "throtle": 1}]')
    with pytest.raises(ConfigError, match="throtle"):
        load_script(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_script(tmp_path / "missing.json")
