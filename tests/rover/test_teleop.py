"""Teleop logic driven through pygame's real event queue (SDL dummy driver, no devices)."""

from itertools import pairwise

import pytest

from rover.errors import ConfigError
from rover.messages import RecorderStatus
from rover.teleop import (
    NOT_RECORDING,
    PRESETS,
    GamepadMapping,
    GamepadTeleop,
    KeyboardConfig,
    KeyboardTeleop,
    Teleop,
    TeleopState,
    mapping_from_sdl,
    preset_for,
)

DT_S = 0.02  # a 50 Hz teleop loop


@pytest.fixture
def pg(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    import pygame

    pygame.display.init()
    pygame.event.clear()
    yield pygame
    pygame.display.quit()


def send(pg, *events):
    """Post events on the real queue and read them back, as a window's loop does."""
    for kind, attrs in events:
        pg.event.post(pg.event.Event(kind, **attrs))
    return pg.event.get()


def down(pg, key):
    return (pg.KEYDOWN, {"key": key, "mod": 0})


def up(pg, key):
    return (pg.KEYUP, {"key": key, "mod": 0})


def run(teleop, seconds, events=()):
    """Step the teleop for ``seconds``; return the state after each step."""
    states = [teleop.update(list(events), None, DT_S)]
    for _ in range(round(seconds / DT_S) - 1):
        states.append(teleop.update([], None, DT_S))
    return states


def test_keyboard_steering_ramps_to_full_lock_and_recentres_smoothly(pg):
    cfg = KeyboardConfig()
    kb = KeyboardTeleop(cfg)
    held = run(kb, 0.6, send(pg, down(pg, pg.K_LEFT)))
    steering = [s.steering for s in held]
    assert steering[0] == pytest.approx(cfg.steer_rate_per_s * DT_S)  # not bang-bang
    assert all(b >= a for a, b in pairwise(steering))
    assert max(steering) == 1.0  # full lock after 1 / 2.5 s, never beyond
    released = run(kb, 0.4, send(pg, up(pg, pg.K_LEFT)))
    assert 0 < released[0].steering < 1.0
    assert released[-1].steering == 0.0
    right = run(kb, 0.6, send(pg, down(pg, pg.K_d)))
    assert right[-1].steering == -1.0  # positive steers left, so right is negative
    assert all(abs(a.steering - b.steering) <= 0.11 for a, b in pairwise(right))


def test_keyboard_throttle_only_while_a_drive_key_is_held(pg):
    kb = KeyboardTeleop()
    idle = kb.update([], None, DT_S)
    assert (idle.throttle, idle.deadman) == (0.0, False)
    forward = run(kb, 0.5, send(pg, down(pg, pg.K_UP)))
    assert forward[0].deadman and 0 < forward[0].throttle < forward[-1].throttle
    assert forward[-1].throttle == pytest.approx(KeyboardConfig().forward_throttle)
    boost = run(kb, 0.5, send(pg, down(pg, pg.K_LSHIFT)))
    assert boost[-1].throttle == pytest.approx(1.0)
    stopped = kb.update(send(pg, up(pg, pg.K_UP), up(pg, pg.K_LSHIFT)), None, DT_S)
    assert (stopped.throttle, stopped.deadman) == (0.0, False)  # at once, no ramp down
    reverse = run(kb, 0.5, send(pg, down(pg, pg.K_s)))
    assert reverse[-1].throttle == pytest.approx(-KeyboardConfig().reverse_throttle)


def test_keyboard_estop_latches_until_rearmed(pg):
    kb = KeyboardTeleop()
    run(kb, 0.3, send(pg, down(pg, pg.K_UP)))
    stopped = kb.update(send(pg, down(pg, pg.K_SPACE), up(pg, pg.K_SPACE)), None, DT_S)
    assert stopped.estop and stopped.throttle == 0.0
    still = run(kb, 0.3)  # the drive key is still held
    assert all(s.estop and s.throttle == 0.0 for s in still)
    rearmed = run(kb, 0.3, send(pg, down(pg, pg.K_r), up(pg, pg.K_r)))
    assert not rearmed[-1].estop and rearmed[-1].throttle > 0
    kb.update(send(pg, down(pg, pg.K_SPACE)), None, DT_S)
    assert not kb.update(send(pg, down(pg, pg.K_RETURN)), None, DT_S).estop


def test_keyboard_mode_and_record_toggle_once_per_press(pg):
    kb = KeyboardTeleop()
    kb.latches.follow_recorder(RecorderStatus())  # a recorder is writing (--record)
    assert kb.update(send(pg, down(pg, pg.K_m)), None, DT_S).autopilot
    # a held key (or OS key repeat) does not toggle again
    assert kb.update(send(pg, down(pg, pg.K_m)), None, DT_S).autopilot
    assert not kb.update(send(pg, up(pg, pg.K_m), down(pg, pg.K_m)), None, DT_S).autopilot
    assert kb.update(send(pg, down(pg, pg.K_TAB)), None, DT_S).record_paused
    assert not kb.update(send(pg, up(pg, pg.K_TAB), down(pg, pg.K_TAB)), None, DT_S).record_paused


def test_record_key_shows_what_the_recorder_does_and_without_one_says_how(pg):
    kb = KeyboardTeleop()
    pressed = kb.update(send(pg, down(pg, pg.K_TAB), up(pg, pg.K_TAB)), None, DT_S)
    assert not pressed.record_paused and pressed.recording == NOT_RECORDING
    kb.latches.follow_recorder(RecorderStatus(paused=False))
    assert kb.update([], None, DT_S).recording == "REC"
    kb.update(send(pg, down(pg, pg.K_TAB), up(pg, pg.K_TAB)), None, DT_S)
    # the HUD follows the recorder's word, not the key: PAUSED once it says so
    assert kb.update([], None, DT_S).recording == "REC"
    kb.latches.follow_recorder(RecorderStatus(paused=True))
    assert kb.update([], None, DT_S).recording == "PAUSED"


def test_drive_key_in_autopilot_takes_over(pg):
    kb = KeyboardTeleop()
    assert kb.update(send(pg, down(pg, pg.K_m), up(pg, pg.K_m)), None, DT_S).autopilot
    taken = kb.update(send(pg, down(pg, pg.K_LEFT)), None, DT_S)
    assert not taken.autopilot and taken.steering > 0
    calm = KeyboardTeleop(KeyboardConfig(takeover=False))
    calm.update(send(pg, down(pg, pg.K_m), up(pg, pg.K_m)), None, DT_S)
    assert calm.update(send(pg, down(pg, pg.K_UP)), None, DT_S).autopilot


def test_keys_lost_with_focus_or_missing_from_key_state_are_released(pg):
    kb = KeyboardTeleop()
    run(kb, 0.2, send(pg, down(pg, pg.K_UP)))
    lost = kb.update(send(pg, (pg.WINDOWFOCUSLOST, {})), None, DT_S)
    assert (lost.throttle, lost.deadman) == (0.0, False)
    run(kb, 0.2, send(pg, down(pg, pg.K_UP)))
    # SDL's own key state says nothing is held (no keyboard here): trust it over stale events
    synced = kb.update([], pg.key.get_pressed(), DT_S)
    assert (synced.throttle, synced.deadman) == (0.0, False)


def pad_button(pg, button, pressed=True, instance_id=4):
    kind = pg.JOYBUTTONDOWN if pressed else pg.JOYBUTTONUP
    return (kind, {"instance_id": instance_id, "joy": 0, "button": button})


def pad_axis(pg, axis, value, instance_id=4):
    attrs = {"instance_id": instance_id, "joy": 0, "axis": axis, "value": value}
    return (pg.JOYAXISMOTION, attrs)


def test_gamepad_throttle_needs_the_deadman_held(pg):
    m = PRESETS["xbox"]
    pad = GamepadTeleop()
    assert not pad.connected and pad.update([]).throttle == 0.0
    pressed = pad.update(send(pg, pad_button(pg, m.estop_button, True, 9)))
    pad.update(send(pg, pad_button(pg, m.rearm_button, True, 9)))
    assert pressed.estop and pad.connected  # the first pad whose button is pressed drives
    no_deadman = pad.update(send(pg, pad_axis(pg, m.throttle_axis, 1.0, 9)))
    assert (no_deadman.throttle, no_deadman.deadman) == (0.0, False)
    held = pad.update(send(pg, pad_button(pg, m.deadman_button, True, 9)))
    assert held.deadman and held.throttle == pytest.approx(1.0)
    half = pad.update(send(pg, pad_axis(pg, m.throttle_axis, 0.0, 9)))  # trigger half way
    assert 0.4 < half.throttle < 0.6
    braking = pad.update(send(pg, pad_axis(pg, m.throttle_axis, -1.0, 9), pad_axis(pg, 2, 1.0, 9)))
    assert braking.throttle == pytest.approx(-m.max_reverse)
    let_go = pad.update(send(pg, pad_button(pg, m.deadman_button, False, 9)))
    assert (let_go.throttle, let_go.deadman) == (0.0, False)


def test_gamepad_untouched_trigger_reads_released(pg):
    m = PRESETS["xbox"]
    pad = GamepadTeleop()
    # SDL may report a never-moved trigger as 0: half-pressed on its -1..1 scale
    state = pad.update(send(pg, pad_button(pg, m.deadman_button)))
    assert state.deadman and state.throttle == 0.0


def test_gamepad_steering_has_deadzone_expo_and_left_positive(pg):
    pad = GamepadTeleop()
    pad.update(send(pg, pad_button(pg, 0)))
    values = {}
    for raw in (-1.0, -0.5, -0.05, 0.0, 0.05, 0.5, 1.0):
        values[raw] = pad.update(send(pg, pad_axis(pg, 0, raw))).steering
    assert values[-1.0] == pytest.approx(1.0) and values[1.0] == pytest.approx(-1.0)
    assert values[-0.05] == values[0.0] == values[0.05] == 0.0  # stick noise does nothing
    assert 0 < values[-0.5] < 0.5  # expo: finer near the centre
    assert values[0.5] == pytest.approx(-values[-0.5])


def test_gamepad_estop_mode_record_buttons_and_takeover(pg):
    m = PRESETS["xbox"]
    pad = GamepadTeleop()
    pad.latches.follow_recorder(RecorderStatus())
    pad.update(send(pg, pad_button(pg, m.deadman_button), pad_axis(pg, m.throttle_axis, 1.0)))
    stopped = pad.update(send(pg, pad_button(pg, m.estop_button)))
    assert stopped.estop and stopped.throttle == 0.0
    assert pad.update(send(pg, pad_button(pg, m.estop_button, False))).estop  # latched
    assert pad.update(send(pg, pad_button(pg, m.rearm_button))).throttle == pytest.approx(1.0)
    pad.update(send(pg, pad_axis(pg, m.throttle_axis, -1.0)))
    assert pad.update(send(pg, pad_button(pg, m.mode_button))).autopilot
    assert pad.update(send(pg, pad_button(pg, m.record_button))).record_paused
    assert pad.update(send(pg, pad_axis(pg, m.steering_axis, 0.3))).autopilot  # small: no
    assert not pad.update(send(pg, pad_axis(pg, m.steering_axis, 0.9))).autopilot  # takeover


def test_unplugging_the_gamepad_zeroes_throttle_and_deadman(pg):
    m = PRESETS["xbox"]
    pad = GamepadTeleop()
    driving = pad.update(
        send(pg, pad_button(pg, m.deadman_button), pad_axis(pg, m.throttle_axis, 1.0))
    )
    assert driving.throttle > 0.9 and pad.connected
    # another pad's events never drive while this one is active
    other = pad.update(send(pg, pad_axis(pg, m.throttle_axis, -1.0, instance_id=5)))
    assert other.throttle > 0.9
    gone = pad.update(send(pg, (pg.JOYDEVICEREMOVED, {"instance_id": 4})))
    assert (gone.throttle, gone.deadman, gone.steering) == (0.0, False, 0.0)
    assert not pad.connected
    # a stale axis event from the removed pad changes nothing
    assert pad.update(send(pg, pad_axis(pg, m.throttle_axis, 1.0))).throttle == 0.0


def test_gamepad_added_then_gone_before_opening_is_ignored(pg):
    pad = GamepadTeleop()
    state = pad.update(send(pg, (pg.JOYDEVICEADDED, {"device_index": 3, "guid": "0"})))
    assert not pad.connected and state.throttle == 0.0


def test_playstation_preset_uses_r1_deadman_and_l2_reverse(pg):
    m = PRESETS["playstation"]
    pad = GamepadTeleop(m)
    pad.update(send(pg, pad_button(pg, 10)))  # R1 in SDL's game controller order
    assert pad.update(send(pg, pad_axis(pg, 4, 1.0))).throttle == pytest.approx(-m.max_reverse)
    assert pad.update(send(pg, pad_button(pg, 1))).estop  # circle


def test_presets_follow_sdl_mapping_or_pad_name():
    xbox360 = "a:b0,b:b1,back:b6,leftx:a0,lefty:a1,lefttrigger:a2,rightshoulder:b5,"
    xbox360 += "righttrigger:a5,start:b7,x:b2,y:b3"
    sdl = dict(item.split(":") for item in xbox360.split(","))
    mapping = mapping_from_sdl(sdl, PRESETS["xbox"])
    assert mapping is not None
    assert (mapping.throttle_axis, mapping.deadman_button, mapping.record_button) == (5, 5, 7)
    assert mapping_from_sdl(sdl | {"righttrigger": "+a5"}, PRESETS["xbox"]) is None
    assert preset_for("PS4 Controller").name == "playstation"
    assert preset_for("Sony Interactive Entertainment Wireless Controller", hats=1).name == (
        "playstation_evdev"
    )
    assert preset_for("Logitech Gamepad F710").deadman_button == 5
    assert preset_for("Xbox 360 Controller").name == "xbox"


def test_config_errors_name_the_bad_key():
    with pytest.raises(ConfigError, match="forward_trottle"):
        KeyboardConfig.from_dict({"forward_trottle": 0.5})
    with pytest.raises(ConfigError, match="forward_throttle"):
        KeyboardConfig.from_dict({"forward_throttle": 2.0})
    with pytest.raises(ConfigError, match="preset"):
        GamepadMapping.from_dict({"preset": "nes"})
    custom = GamepadMapping.from_dict({"preset": "playstation", "deadzone": 0.15})
    assert (custom.deadman_button, custom.deadzone) == (10, 0.15)
    with pytest.raises(ConfigError, match="deadzone"):
        GamepadMapping.from_dict({"deadzone": 0.9})


def test_keyboard_and_gamepad_share_one_estop(pg):
    m = PRESETS["xbox"]
    teleop = Teleop()
    teleop.update(send(pg, pad_button(pg, m.deadman_button), pad_axis(pg, 5, 1.0)), None, DT_S)
    state = teleop.update(send(pg, down(pg, pg.K_UP)), None, DT_S)
    assert state.device == "keyboard" and state.throttle < 0.2  # a held key wins, ramping
    state = teleop.update(send(pg, up(pg, pg.K_UP)), None, DT_S)
    assert state.device != "keyboard" and state.throttle == pytest.approx(1.0)
    stopped = teleop.update(send(pg, down(pg, pg.K_SPACE)), None, DT_S)
    assert stopped.estop and stopped.throttle == 0.0  # the keyboard stops the pad too


def test_state_becomes_a_teleop_command():
    state = TeleopState(steering=0.5, throttle=0.25, deadman=True, record_paused=True)
    cmd = state.command(7, 123, 9)
    assert (cmd.seq, cmd.stamp_ns, cmd.frame_seq) == (7, 123, 9)
    assert (cmd.steering, cmd.throttle, cmd.deadman, cmd.record_paused) == (0.5, 0.25, True, True)
