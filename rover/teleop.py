"""Human input to teleop commands: keyboard and gamepad logic, no bus (pygame imported lazily).

Keyboard (the simulator window, or the robot's teleop window; ``KEYBOARD_HELP`` is the one-line
version):

  Up / W     forward while held (hold Shift for full throttle)
  Down / S   reverse while held
  Left / A   steer left, Right / D steer right: steering ramps toward full lock while held
             and back to centre when released, so keyboard driving is smooth, not bang-bang
  Space      e-stop (latched until re-armed)      R / Enter   re-arm after an e-stop
  M          manual <-> autopilot                 Tab         pause / resume recording

Holding any drive key is the deadman; releasing them all cuts the throttle at once. In
autopilot, touching a drive key takes over (back to manual): that is an intervention.

Gamepad (``PRESETS``, SDL2 layouts as pygame reports them on Linux): left stick X steers, right
trigger is throttle, left trigger reverse, RB / R1 is the deadman (hold it for any throttle),
B / Circle e-stop, Back / Share re-arm, Y / Triangle mode, Start / Options pause / resume the
recording (a session started with ``--record DIR`` records from the start; the HUD shows REC or
PAUSED as the recorder reports it, and without a recorder the key only says so). When SDL's
game controller database knows the pad, its mapping picks the indices; else the pad's name
picks a preset. Unplugging the active pad zeroes throttle and deadman.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from rover.config import dataclass_from_dict
from rover.errors import ConfigError, DeviceError
from rover.messages import NO_FRAME, RecorderStatus, TeleopCommand

KEYBOARD_HELP = (
    "drive: arrows/WASD (Shift: full throttle)   Space: e-stop   R/Enter: re-arm   "
    "M: manual/autopilot   Tab: pause/resume recording"
)
NOT_RECORDING = "not recording: start with --record DIR"
MAX_DT_S = 0.1  # after a stall, ramp from where we were instead of jumping
TRIGGER_DEADZONE = 0.05
TAKEOVER_STICK = 0.5  # in autopilot, a stick pushed this far (or a trigger) takes over


def import_pygame() -> Any:
    """Import pygame lazily (it costs ~100 ms), without its banner."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    return pygame


def _clamp(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return lo if x < lo else hi if x > hi else x


@dataclass(frozen=True)
class TeleopState:
    """What the operator asks for now: the fields of ``TeleopCommand`` plus the input in use."""

    steering: float = 0.0  # [-1, 1], positive steers left
    throttle: float = 0.0  # [-1, 1], negative reverses
    autopilot: bool = False
    estop: bool = False
    deadman: bool = False
    record_paused: bool = False  # the operator paused the recording (the record key)
    device: str = "keyboard"  # "keyboard", or the name of the gamepad in use
    recording: str = ""  # the HUD's word for the recorder: REC, PAUSED, or why there is none

    def command(
        self, seq: int, stamp_ns: int, frame_seq: int = NO_FRAME, operator: str = ""
    ) -> TeleopCommand:
        """This state as a bus message; `operator` names the input that can stop the robot."""
        fields = asdict(self)
        del fields["device"], fields["recording"]
        return TeleopCommand(
            seq=seq, stamp_ns=stamp_ns, frame_seq=frame_seq, operator=operator, **fields
        )


class Latches:
    """Mode, e-stop and record-pause flags, shared by every input device of one operator, and
    what the recorder last said (``follow_recorder``): the record key only acts on a recorder."""

    def __init__(self) -> None:
        self.autopilot = False
        self.estop = False
        self.record_paused = False
        self.recorder: RecorderStatus | None = None  # None: no recorder heard lately
        self.notice = ""  # said once the record key was pressed with nothing recording

    def apply(self, action: str) -> None:
        """Apply one of: estop, rearm, mode, record, takeover."""
        if action in ("estop", "rearm"):
            self.estop = action == "estop"
        elif action in ("mode", "takeover"):
            self.autopilot = action == "mode" and not self.autopilot
        elif action == "record":
            if self.recorder is None:
                self.notice = NOT_RECORDING  # nothing to pause: say how to record instead
            else:
                self.record_paused = not self.record_paused
        else:
            raise ValueError(f"unknown teleop action {action!r}")

    def follow_recorder(self, status: RecorderStatus | None) -> None:
        """The recorder's latest status, or None when none is live (no ``--record``)."""
        self.recorder = status
        if status is not None:
            self.notice = ""

    def recording_word(self) -> str:
        """REC or PAUSED as the recorder reports it; else the notice (or nothing)."""
        if self.recorder is None:
            return self.notice
        return "PAUSED" if self.recorder.paused else "REC"

    def state(self, steering: float, throttle: float, deadman: bool, device: str) -> TeleopState:
        """A device's command with these flags; no throttle while e-stopped."""
        return TeleopState(
            steering=steering,
            throttle=0.0 if self.estop else _clamp(throttle),
            autopilot=self.autopilot,
            estop=self.estop,
            deadman=deadman,
            record_paused=self.record_paused,
            device=device,
            recording=self.recording_word(),
        )


@dataclass(frozen=True)
class KeyboardConfig:
    """Keyboard feel: steering rates, throttle levels and ramp, autopilot takeover."""

    steer_rate_per_s: float = 2.5  # centre to full lock in 0.4 s while a steering key is held
    centre_rate_per_s: float = 4.0  # back to centre in 0.25 s once released
    forward_throttle: float = 0.6
    boost_throttle: float = 1.0  # with Shift held
    reverse_throttle: float = 0.4
    throttle_rate_per_s: float = 3.0  # ramp up; releasing the key cuts throttle at once
    takeover: bool = True

    @classmethod
    def from_dict(cls, raw: dict) -> KeyboardConfig:
        """Build from a ``[teleop.keyboard]`` table; bad keys or values raise ConfigError."""
        cfg = dataclass_from_dict(cls, raw, "teleop.keyboard")
        for key in ("steer_rate_per_s", "centre_rate_per_s", "throttle_rate_per_s"):
            if getattr(cfg, key) <= 0:
                raise ConfigError(f"[teleop.keyboard] {key} must be > 0; e.g. 3.0")
        for key in ("forward_throttle", "boost_throttle", "reverse_throttle"):
            if not 0 <= getattr(cfg, key) <= 1:
                raise ConfigError(f"[teleop.keyboard] {key} must be in [0, 1]")
        return cfg


class KeyboardTeleop:
    """Turns key events into a smooth, rate-limited ``TeleopState`` (keys: module docstring)."""

    def __init__(self, config: KeyboardConfig | None = None, latches: Latches | None = None):
        pg = import_pygame()
        self.cfg = config or KeyboardConfig()
        self.latches = latches or Latches()
        self.steering = 0.0
        self.throttle = 0.0
        self._down: set[int] = set()
        self._drive = {pg.K_UP: "forward", pg.K_w: "forward", pg.K_DOWN: "reverse"}
        self._drive |= {pg.K_s: "reverse", pg.K_LEFT: "left", pg.K_a: "left"}
        self._drive |= {pg.K_RIGHT: "right", pg.K_d: "right"}
        self._boost = {pg.K_LSHIFT, pg.K_RSHIFT}
        self._actions = {pg.K_SPACE: "estop", pg.K_r: "rearm", pg.K_RETURN: "rearm"}
        self._actions |= {pg.K_KP_ENTER: "rearm", pg.K_m: "mode", pg.K_TAB: "record"}
        self._known = set(self._drive) | self._boost | set(self._actions)
        self._types = (pg.KEYDOWN, pg.KEYUP, pg.WINDOWFOCUSLOST)

    @property
    def active(self) -> bool:
        """True while any drive key is held (the keyboard's deadman)."""
        return any(k in self._drive for k in self._down)

    def update(
        self, events: Iterable[Any], pressed_keys: Sequence[bool] | None, dt_s: float
    ) -> TeleopState:
        """Consume key events, advance the ramps by ``dt_s``; ``pressed_keys`` (from
        ``pygame.key.get_pressed()``, or None) releases keys whose KEYUP was lost."""
        keydown, keyup, focus_lost = self._types
        for event in events:
            if event.type == keydown and event.key in self._known and event.key not in self._down:
                self._press(event.key)
            elif event.type == keyup:
                self._down.discard(event.key)
            elif event.type == focus_lost:
                self._down.clear()  # keys released in another window never send KEYUP here
        if pressed_keys is not None:
            self._down = {k for k in self._down if pressed_keys[k]}
        self._advance(min(max(dt_s, 0.0), MAX_DT_S))
        return self.state()

    def _press(self, key: int) -> None:
        self._down.add(key)
        if key in self._actions:
            self.latches.apply(self._actions[key])
        elif key in self._drive and self.latches.autopilot and self.cfg.takeover:
            self.latches.apply("takeover")

    def _advance(self, dt_s: float) -> None:
        held = {self._drive[k] for k in self._down if k in self._drive}
        cfg = self.cfg
        target = float("left" in held) - float("right" in held)
        returning = abs(target) < abs(self.steering) or target * self.steering < 0
        step = (cfg.centre_rate_per_s if returning else cfg.steer_rate_per_s) * dt_s
        self.steering = _clamp(target, self.steering - step, self.steering + step)
        forward, reverse = "forward" in held, "reverse" in held
        if self.latches.estop or forward == reverse:
            self.throttle = 0.0
            return
        boost = any(k in self._boost for k in self._down)
        if forward:
            goal = cfg.boost_throttle if boost else cfg.forward_throttle
        else:
            goal = -cfg.reverse_throttle
        if self.throttle * goal < 0 or abs(goal) < abs(self.throttle):
            self.throttle = 0.0 if self.throttle * goal < 0 else goal
        step = cfg.throttle_rate_per_s * dt_s
        self.throttle = _clamp(goal, self.throttle - step, self.throttle + step)

    def state(self) -> TeleopState:
        """The current command, without consuming input."""
        return self.latches.state(self.steering, self.throttle, self.active, "keyboard")


@dataclass(frozen=True)
class GamepadMapping:
    """Which raw joystick axes and buttons do what, and the stick's feel."""

    name: str = "xbox"
    steering_axis: int = 0
    steering_invert: bool = True  # SDL reports stick-left as negative; steering left is positive
    throttle_axis: int = 5  # right trigger
    brake_axis: int = 2  # left trigger: brake / reverse
    trigger_rest: float = -1.0  # raw value of a released trigger (SDL2 joystick API: -1)
    deadman_button: int = 5  # RB
    estop_button: int = 1  # B
    rearm_button: int = 6  # Back
    mode_button: int = 3  # Y
    record_button: int = 7  # Start
    deadzone: float = 0.08
    expo: float = 0.3  # 0 linear .. 1 cubic: finer control near the centre
    max_throttle: float = 1.0
    max_reverse: float = 0.5

    @classmethod
    def from_dict(cls, raw: dict) -> GamepadMapping:
        """Build from a ``[teleop.gamepad]`` table: ``preset = "playstation"`` then overrides."""
        raw = dict(raw)
        preset = raw.pop("preset", "xbox")
        if preset not in PRESETS:
            raise ConfigError(
                f"[teleop.gamepad] preset = {preset!r}: use one of {', '.join(PRESETS)}"
            )
        dataclass_from_dict(cls, raw, "teleop.gamepad")  # rejects unknown keys and bad types
        cfg = replace(PRESETS[preset], **raw)
        if not 0 <= cfg.deadzone < 0.5 or not 0 <= cfg.expo <= 1 or not -1 <= cfg.trigger_rest < 1:
            raise ConfigError("[teleop.gamepad] need 0 <= deadzone < 0.5, 0 <= expo <= 1")
        if not (0 < cfg.max_throttle <= 1 and 0 <= cfg.max_reverse <= 1):
            raise ConfigError("[teleop.gamepad] max_throttle in (0, 1], max_reverse in [0, 1]")
        return cfg


_PS_HIDAPI = dict(throttle_axis=5, brake_axis=4, deadman_button=10, rearm_button=4)
_PS_KERNEL = dict(brake_axis=2, deadman_button=5, rearm_button=8, mode_button=2, record_button=9)
PRESETS: dict[str, GamepadMapping] = {
    # Xbox 360 / One / Series pads through the xpad driver.
    "xbox": GamepadMapping(),
    # Logitech F310 / F710 with the switch on X (XInput): the same layout as xbox.
    "logitech": GamepadMapping(name="logitech"),
    # DualShock 4 / DualSense through SDL's HIDAPI driver (SDL game controller button order).
    "playstation": GamepadMapping(name="playstation", **_PS_HIDAPI, record_button=6),
    # The same pads through the kernel's hid-playstation driver (evdev order, a d-pad hat).
    "playstation_evdev": GamepadMapping(name="playstation_evdev", **_PS_KERNEL),
}

# SDL game controller names -> our fields
_SDL_AXES = {"leftx": "steering_axis", "righttrigger": "throttle_axis", "lefttrigger": "brake_axis"}
_SDL_BUTTONS = {"rightshoulder": "deadman", "b": "estop", "back": "rearm", "y": "mode"}
_SDL_BUTTONS["start"] = "record"


def mapping_from_sdl(sdl: dict[str, str], base: GamepadMapping) -> GamepadMapping | None:
    """Our mapping from SDL's game controller mapping (``{"leftx": "a0", "b": "b1", ...}``);
    None when an entry we need is missing or not a plain axis/button (then use a preset)."""
    wanted = [("a", k, v) for k, v in _SDL_AXES.items()]
    wanted += [("b", k, f"{v}_button") for k, v in _SDL_BUTTONS.items()]
    found: dict[str, int] = {}
    for kind, sdl_name, field_name in wanted:
        match = re.fullmatch(rf"{kind}(\d+)", sdl.get(sdl_name, ""))
        if match is None:
            return None
        found[field_name] = int(match.group(1))
    return replace(base, name="sdl", **found)


def preset_for(name: str, hats: int = 0) -> GamepadMapping:
    """A preset from the pad's name; PlayStation pads with a hat use the kernel driver."""
    lowered = name.lower()
    if any(s in lowered for s in ("ps4", "ps5", "dualshock", "dualsense", "sony", "playstation")):
        return PRESETS["playstation_evdev" if hats else "playstation"]
    return PRESETS["logitech" if "logitech" in lowered else "xbox"]


def _shape(value: float, deadzone: float, expo: float) -> float:
    """Deadzone (rescaled, so output stays continuous) then expo, sign kept."""
    magnitude = abs(value)
    if magnitude <= deadzone:
        return 0.0
    x = min(1.0, (magnitude - deadzone) / (1.0 - deadzone))
    return (1.0 if value > 0 else -1.0) * ((1.0 - expo) * x + expo * x**3)


class GamepadTeleop:
    """Turns joystick events into a ``TeleopState``; follows pads as they are plugged in/out.

    The first pad plugged in (or, with none active, the first whose button is pressed) drives.
    A trigger counts as released until it has reported motion: SDL can read an untouched trigger
    as 0, which is half-pressed on the -1..1 scale.
    """

    def __init__(
        self,
        mapping: GamepadMapping | None = None,
        latches: Latches | None = None,
        takeover: bool = True,
    ) -> None:
        pg = import_pygame()
        try:
            pg.display.init()  # SDL delivers joystick events only with video initialised
        except pg.error as exc:
            raise DeviceError(
                f"cannot start pygame for the gamepad ({exc}): set SDL_VIDEODRIVER=dummy"
            ) from exc
        pg.joystick.init()
        self._pg = pg
        self.fixed_mapping = mapping
        self.mapping = mapping or PRESETS["xbox"]
        self.latches = latches or Latches()
        self.takeover = takeover
        self.instance_id: int | None = None
        self.name = ""
        self._open: dict[int, tuple[Any, GamepadMapping]] = {}  # instance id -> pad, mapping
        self._axes: dict[int, float] = {}
        self._buttons: set[int] = set()

    @property
    def connected(self) -> bool:
        """True while a pad is active."""
        return self.instance_id is not None

    def update(self, events: Iterable[Any], dt_s: float = 0.0) -> TeleopState:
        """Consume joystick events (others are ignored) and return the current command."""
        pg = self._pg
        for event in events:
            if event.type == pg.JOYDEVICEADDED:
                self._added(event.device_index)
            elif event.type == pg.JOYDEVICEREMOVED:
                self._removed(event.instance_id)
            elif event.type in (pg.JOYAXISMOTION, pg.JOYBUTTONDOWN, pg.JOYBUTTONUP):
                self._input(event)
        return self.state()

    def _added(self, device_index: int) -> None:
        pg = self._pg
        if device_index >= pg.joystick.get_count():
            return  # unplugged again before we got to it; its REMOVED event follows
        joystick = pg.joystick.Joystick(device_index)
        self._open[joystick.get_instance_id()] = (joystick, _mapping_for(device_index, joystick))
        if self.instance_id is None:
            self._adopt(joystick.get_instance_id())

    def _removed(self, instance_id: int) -> None:
        self._open.pop(instance_id, None)
        if instance_id == self.instance_id:
            self._adopt(next(iter(self._open), None))  # another pad still plugged in, or none

    def _adopt(self, instance_id: int | None) -> None:
        joystick, mapping = self._open.get(instance_id, (None, PRESETS["xbox"]))  # type: ignore[arg-type]
        self.instance_id = instance_id
        self.mapping = self.fixed_mapping or mapping
        self.name = "" if instance_id is None else f"gamepad {instance_id}"
        if joystick is not None:
            self.name = joystick.get_name()
        self._axes.clear()  # nothing carries over: a new pad starts released
        self._buttons.clear()

    def _input(self, event: Any) -> None:
        pg = self._pg
        instance_id = getattr(event, "instance_id", getattr(event, "joy", None))
        if self.instance_id is None and event.type == pg.JOYBUTTONDOWN:
            self._adopt(instance_id)
        if instance_id != self.instance_id:
            return
        m = self.mapping
        if event.type == pg.JOYAXISMOTION:
            self._axes[event.axis] = float(event.value)
        elif event.type == pg.JOYBUTTONUP:
            self._buttons.discard(event.button)
        else:
            self._buttons.add(event.button)
            actions = {m.estop_button: "estop", m.rearm_button: "rearm"}
            actions |= {m.mode_button: "mode", m.record_button: "record"}
            if event.button in actions:
                self.latches.apply(actions[event.button])
        if self.latches.autopilot and self.takeover and self._wants_control():
            self.latches.apply("takeover")

    def _trigger(self, axis: int) -> float:
        if axis not in self._axes:
            return 0.0
        rest = self.mapping.trigger_rest
        pressed = _clamp((self._axes[axis] - rest) / (1.0 - rest), 0.0, 1.0)
        return _shape(pressed, TRIGGER_DEADZONE, 0.0)

    def _steering(self) -> float:
        m = self.mapping
        raw = self._axes.get(m.steering_axis, 0.0)
        return _shape(-raw if m.steering_invert else raw, m.deadzone, m.expo)

    def _wants_control(self) -> bool:
        m = self.mapping
        pushed = abs(self._steering()) >= TAKEOVER_STICK
        return pushed or self._trigger(m.throttle_axis) > 0 or self._trigger(m.brake_axis) > 0

    def state(self) -> TeleopState:
        """The current command, without consuming input."""
        m = self.mapping
        deadman = self.connected and m.deadman_button in self._buttons
        throttle = 0.0
        if deadman:
            throttle = self._trigger(m.throttle_axis) * m.max_throttle
            throttle -= self._trigger(m.brake_axis) * m.max_reverse
        return self.latches.state(self._steering(), throttle, deadman, self.name or "gamepad")


def _mapping_for(device_index: int, joystick: Any) -> GamepadMapping:
    """SDL's game controller database mapping for this pad if it has one, else a preset."""
    from pygame._sdl2 import controller as sdl_controller

    if not sdl_controller.get_init():
        sdl_controller.init()
    if sdl_controller.is_controller(device_index):
        sdl = sdl_controller.Controller(device_index).get_mapping()
        mapping = mapping_from_sdl(sdl, preset_for(joystick.get_name()))
        if mapping is not None:
            return mapping
    return preset_for(joystick.get_name(), joystick.get_numhats())


@dataclass(frozen=True)
class TeleopConfig:
    """The [teleop] section: ``[teleop.keyboard]`` feel and ``[teleop.gamepad]`` mapping."""

    keyboard: KeyboardConfig = KeyboardConfig()
    gamepad: GamepadMapping | None = None  # None: SDL's database, else a preset by pad name
    use_gamepad: bool = True

    @classmethod
    def from_dict(cls, raw: dict) -> TeleopConfig:
        unknown = set(raw) - {"keyboard", "gamepad", "use_gamepad"}
        if unknown:
            raise ConfigError(
                f"[teleop] unknown key(s) {sorted(unknown)}: valid keys are "
                "keyboard, gamepad, use_gamepad"
            )
        use = raw.get("use_gamepad", True)
        if not isinstance(use, bool):
            raise ConfigError(f"[teleop] use_gamepad = {use!r}: expected true or false")
        pad = raw.get("gamepad")
        return cls(
            KeyboardConfig.from_dict(raw.get("keyboard", {})),
            GamepadMapping.from_dict(pad) if pad is not None else None,
            use,
        )

    def build(self) -> Teleop:
        """The input logic this config describes."""
        return Teleop(self.keyboard, self.gamepad, self.use_gamepad)


class Teleop:
    """Keyboard and gamepad together: one set of latches; whichever is being used drives."""

    def __init__(
        self,
        keyboard: KeyboardConfig | None = None,
        gamepad: GamepadMapping | None = None,
        use_gamepad: bool = True,
    ) -> None:
        self.latches = Latches()
        cfg = keyboard or KeyboardConfig()
        self.keyboard = KeyboardTeleop(cfg, self.latches)
        self.gamepad = GamepadTeleop(gamepad, self.latches, cfg.takeover) if use_gamepad else None

    def update(
        self, events: Iterable[Any], pressed_keys: Sequence[bool] | None, dt_s: float
    ) -> TeleopState:
        """Feed both devices; a held drive key wins, else a connected pad, else the keyboard."""
        events = list(events)
        self.keyboard.update(events, pressed_keys, dt_s)
        pad = self.gamepad
        if pad is not None:
            pad.update(events, dt_s)
        if pad is None or self.keyboard.active or not pad.connected:
            return self.keyboard.state()  # after both: either may have latched an e-stop
        return pad.state()
