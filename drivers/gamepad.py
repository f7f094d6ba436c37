"""Operator inputs behind one Protocol: a gamepad, the keyboard window, and a scripted twin.

Every input turns what the operator does into a ``rover.teleop.TeleopState`` (keys and buttons:
rover/teleop.py) and says whether it is *connected*: able to stop the robot now. The teleop
node names a connected input in each command it sends; on the robot the control node does not
arm without one (rover/control.py).

- ``PygameGamepad``: a USB or Bluetooth pad through pygame's joystick API (SDL's dummy video
  driver when there is no display); connected while a pad is plugged in and active.
- ``KeyboardWindow``: a small window showing what is sent; the keyboard's events arrive through
  it (and a pad's too). Connected while the window is open; closing it ends the run. Its title
  says what the recorder does (``rover teleop: REC`` / ``: PAUSED``), seen from the taskbar too.
- ``ScriptedGamepad``: replays a list of timed inputs (``ScriptStep``, a JSON file for the
  CLI's ``--teleop-script``): tests and headless rigs.

pygame is imported when an input opens, never at import time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rover.config import dataclass_from_dict
from rover.errors import ConfigError, DeviceError
from rover.teleop import (
    KEYBOARD_HELP,
    TAKEOVER_STICK,
    GamepadTeleop,
    Latches,
    Teleop,
    TeleopConfig,
    TeleopState,
    import_pygame,
)

WINDOW_TITLE = "rover teleop"
WINDOW_SIZE = (760, 154)  # four lines: the key help wraps onto two


@runtime_checkable
class OperatorInput(Protocol):
    """What every operator input offers the teleop node."""

    latches: Latches  # mode, e-stop and record-pause flags (drive mode starts on the autopilot)

    @property
    def name(self) -> str:
        """What the operator uses, for the commands and the status line."""
        ...

    @property
    def connected(self) -> bool:
        """True while this input can stop the robot (a pad plugged in, the window open)."""
        ...

    @property
    def closed(self) -> bool:
        """True once the operator closed it (the window): the run is over."""
        ...

    def read(self, now_s: float) -> TeleopState:
        """Take what the operator did since the last read; the command at ``now_s``."""
        ...

    def wait(self, timeout_s: float) -> bool:
        """Return when the operator does something (True), or by ``timeout_s`` (False; SDL
        may also return early): a key press goes out at once, not at the next tick."""
        ...

    def close(self) -> None:
        """Release the device or window; safe to call twice."""
        ...


class _PygameEvents:
    """Waits on SDL's queue for the events teleop reads; keeps the one that woke it."""

    def __init__(self, pg: Any):
        self._pg = pg
        self._woke: list[Any] = []
        wanted = [pg.QUIT, pg.KEYDOWN, pg.KEYUP, pg.WINDOWFOCUSLOST, pg.JOYAXISMOTION]
        wanted += [pg.JOYBUTTONDOWN, pg.JOYBUTTONUP, pg.JOYDEVICEADDED, pg.JOYDEVICEREMOVED]
        pg.event.set_allowed(None)  # mouse motion over the window must not wake the node
        pg.event.set_blocked(None)
        pg.event.set_allowed(wanted)

    def wait(self, timeout_s: float) -> bool:
        if self._woke:
            return True
        if timeout_s <= 0:
            return False
        event = self._pg.event.wait(max(1, int(timeout_s * 1000)))
        if event.type == self._pg.NOEVENT:
            return False
        self._woke.append(event)  # first in line: read() takes it before the rest
        return True

    def get(self) -> list[Any]:
        events, self._woke = self._woke + self._pg.event.get(), []
        return events


def has_display() -> bool:
    """True when a window can be opened (X11/Wayland on Linux; always elsewhere), the one
    rule the stack, the teleop node and the keyboard window share."""
    if os.environ.get("SDL_VIDEODRIVER") == "dummy":
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class PygameGamepad:
    """A gamepad through pygame; without a display SDL's dummy video driver carries its events."""

    def __init__(self, config: TeleopConfig | None = None, latches: Latches | None = None):
        cfg = config or TeleopConfig()
        if not has_display():
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        self._pg = import_pygame()
        self.latches = latches or Latches()
        self.pad = GamepadTeleop(cfg.gamepad, self.latches, cfg.keyboard.takeover)
        self._events = _PygameEvents(self._pg)
        self._closed = False

    @property
    def name(self) -> str:
        return f"gamepad {self.pad.name}" if self.pad.connected else "gamepad"

    @property
    def connected(self) -> bool:
        return self.pad.connected and not self._closed

    @property
    def closed(self) -> bool:
        return False  # unplugging a pad ends nothing: plug it back in

    def read(self, now_s: float) -> TeleopState:
        if self._closed:
            return self.latches.state(0.0, 0.0, False, "gamepad")
        return self.pad.update(self._events.get())

    def wait(self, timeout_s: float) -> bool:
        return not self._closed and self._events.wait(timeout_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pg.display.quit()


class KeyboardWindow:
    """The teleop window: keyboard (and gamepad) in, a status line of what is sent out."""

    def __init__(self, config: TeleopConfig | None = None):
        cfg = config or TeleopConfig()
        if not has_display():
            raise DeviceError(
                "no display for the keyboard window: run where DISPLAY is set (ssh -X, a "
                "desktop), plug in a gamepad and pass --headless, or give --teleop-script"
            )
        pg = import_pygame()
        try:
            pg.display.init()  # never pygame.init(): the audio mixer breaks headless machines
            self.surface = pg.display.set_mode(WINDOW_SIZE)
        except pg.error as exc:
            raise DeviceError(
                f"cannot open the keyboard window ({exc}): check DISPLAY, or pass --headless "
                "to use gamepads alone"
            ) from exc
        pg.display.set_caption(WINDOW_TITLE)
        pg.font.init()
        self._pg = pg
        self._font = pg.font.Font(None, 24)
        self.teleop = Teleop(cfg.keyboard, cfg.gamepad, cfg.use_gamepad)
        self.latches = self.teleop.latches
        self._events = _PygameEvents(pg)
        self._last_s: float | None = None
        self._closed = False
        self._title = WINDOW_TITLE

    @property
    def name(self) -> str:
        return "keyboard window"

    @property
    def connected(self) -> bool:
        return not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    def read(self, now_s: float) -> TeleopState:
        if self._closed:
            return self.latches.state(0.0, 0.0, False, "keyboard")
        pg = self._pg
        events = self._events.get()
        if any(e.type == pg.QUIT for e in events):
            self.close()
            return self.latches.state(0.0, 0.0, False, "keyboard")
        dt_s = 0.0 if self._last_s is None else now_s - self._last_s
        self._last_s = now_s
        state = self.teleop.update(events, pg.key.get_pressed(), dt_s)
        self._draw(state)
        return state

    def wait(self, timeout_s: float) -> bool:
        return not self._closed and self._events.wait(timeout_s)

    def _draw(self, state: TeleopState) -> None:
        pg = self._pg
        word = state.recording if state.recording in ("REC", "PAUSED") else ""
        title = f"{WINDOW_TITLE}: {word}" if word else WINDOW_TITLE
        if title != self._title:
            pg.display.set_caption(title)
            self._title = title
        self.surface.fill((28, 31, 38))
        mode = "AUTOPILOT" if state.autopilot else "MANUAL"
        lines = [
            f"{mode}   {'E-STOP' if state.estop else 'armed'}   "
            f"{state.recording}   input: {state.device}",
            f"steering {state.steering:+.2f}   throttle {state.throttle:+.2f}   "
            f"deadman {'held' if state.deadman else 'released'}",
            *_wrap(KEYBOARD_HELP, self._font, WINDOW_SIZE[0] - 24),
        ]
        for i, text in enumerate(lines):
            colour = (255, 90, 80) if state.estop and i == 0 else (225, 228, 235)
            self.surface.blit(self._font.render(text, True, colour), (12, 12 + 34 * i))
        pg.display.flip()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pg.font.quit()
            self._pg.display.quit()


def _wrap(text: str, font, width_px: int) -> list[str]:
    """Split a key help line at its three-space gaps so each piece fits ``width_px``."""
    lines: list[str] = []
    for part in text.split("   "):
        if lines and font.size(f"{lines[-1]}   {part}")[0] <= width_px:
            lines[-1] = f"{lines[-1]}   {part}"
        else:
            lines.append(part)
    return lines


@dataclass(frozen=True)
class ScriptStep:
    """From ``t_s`` on (seconds after the first read): this command, after this action."""

    t_s: float
    steering: float = 0.0
    throttle: float = 0.0
    deadman: bool = False
    action: str = ""  # estop, rearm, mode, record, takeover (rover.teleop.Latches)
    connected: bool = True  # False: as if the pad were unplugged


ACTIONS = ("estop", "rearm", "mode", "record", "takeover")


def load_script(path: str | Path) -> list[ScriptStep]:
    """Read a JSON list of steps (``[{"t_s": 0.5, "throttle": 0.4, "deadman": true}, ...]``)."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"teleop script {path} does not exist: check the path") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"teleop script {path} is not valid JSON ({exc}): fix it") from None
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        raise ConfigError(f"teleop script {path}: expected a JSON list of objects")
    return [_step(s, f"teleop script {path} step {i}") for i, s in enumerate(raw)]


def _step(raw: dict, where: str) -> ScriptStep:
    step = dataclass_from_dict(ScriptStep, raw, where)
    if step.action and step.action not in ACTIONS:
        raise ConfigError(f"[{where}] action = {step.action!r}: use one of {', '.join(ACTIONS)}")
    return step


class ScriptedGamepad:
    """The gamepad's twin: replays timed steps, in order, against the caller's clock."""

    def __init__(self, steps: list[ScriptStep], latches: Latches | None = None, name: str = ""):
        self.steps = sorted(steps, key=lambda s: s.t_s)
        self.latches = latches or Latches()
        self._name = name or "script"
        self._t0: float | None = None
        self._next = 0
        self._current = ScriptStep(0.0)
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def connected(self) -> bool:
        return self._current.connected and not self._closed

    @property
    def closed(self) -> bool:
        return False

    @property
    def finished(self) -> bool:
        """True once every step has been replayed."""
        return self._next >= len(self.steps)

    def read(self, now_s: float) -> TeleopState:
        if self._t0 is None:
            self._t0 = now_s
        elapsed = now_s - self._t0
        while self._next < len(self.steps) and self.steps[self._next].t_s <= elapsed:
            step = self.steps[self._next]
            self._next += 1
            if step.action:
                self.latches.apply(step.action)
            wants = step.deadman and (step.throttle != 0 or abs(step.steering) >= TAKEOVER_STICK)
            if wants and self.latches.autopilot:
                self.latches.apply("takeover")  # as a pad's stick or trigger would
            self._current = step
        s = self._current
        held = s.deadman and s.connected and not self._closed
        return self.latches.state(s.steering, s.throttle if held else 0.0, held, self._name)

    def wait(self, timeout_s: float) -> bool:
        if timeout_s > 0:
            time.sleep(timeout_s)  # the script's steps land on the caller's next read
        return False

    def close(self) -> None:
        self._closed = True


def open_input(
    kind: str, config: TeleopConfig | None = None, script: str | None = None
) -> OperatorInput:
    """The input named `kind` ("window", "gamepad", "script"); see ``INPUTS``."""
    if kind not in INPUTS:
        raise ConfigError(f"operator input {kind!r}: use one of {', '.join(INPUTS)}")
    return INPUTS[kind](config, script)


def _scripted(config: Any, script: str | None) -> ScriptedGamepad:
    if script is None:
        raise ConfigError("a scripted operator input needs a script file")
    return ScriptedGamepad(load_script(script), name=f"script {Path(script).name}")


INPUTS = {
    "window": lambda config, script: KeyboardWindow(config),
    "gamepad": lambda config, script: PygameGamepad(config),
    "script": _scripted,
}
