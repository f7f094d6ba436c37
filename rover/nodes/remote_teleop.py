"""`rover teleop --connect ROBOT:PORT`: drive a robot from a laptop.

A pygame window with both eyes live (the robot's JPEG preview), a HUD (your role, the robot's
mode, armed/e-stop, commanded and motor steering/throttle, link round trip, node rates and
drops) and the same keyboard and gamepad controls as the robot's own teleop window. Commands go
to the robot's `--listen` link at 50 Hz; the robot decides what they move (a second operator
gets the view only; a quiet link stops the motors there).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from rover import messages as m
from rover.config import load_config
from rover.errors import DeviceError
from rover.node import RateKeeper
from rover.remote_client import RemoteLink
from rover.teleop import KEYBOARD_HELP, TeleopState, import_pygame

RATE_HZ = 50.0
EYE = (320, 240)
WINDOW = (2 * EYE[0] + 30, EYE[1] + 190)
TITLE = "rover remote teleop"


class RemoteWindow:
    """Both eyes and the HUD; the keyboard's events arrive through it."""

    def __init__(self, pg):
        self.pg = pg
        try:
            pg.display.init()  # never pygame.init(): the audio mixer breaks headless machines
            pg.joystick.init()
            self.surface = pg.display.set_mode(WINDOW)
        except pg.error as exc:
            raise DeviceError(f"cannot open the teleop window ({exc}): check DISPLAY") from exc
        pg.display.set_caption(TITLE)
        pg.font.init()
        self.font = pg.font.Font(None, 22)
        self.eyes: list = [None, None]
        self.preview_seq = -1

    def show_preview(self, preview: m.StereoPreview) -> None:
        for i, jpeg in enumerate((preview.left_jpeg, preview.right_jpeg)):
            bgr = cv2.imdecode(np.asarray(jpeg, np.uint8).reshape(-1), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            rgb = cv2.cvtColor(cv2.resize(bgr, EYE), cv2.COLOR_BGR2RGB)
            self.eyes[i] = self.pg.image.frombuffer(rgb.tobytes(), EYE, "RGB")
        self.preview_seq = preview.frame_seq

    def draw(self, state: TeleopState, link: RemoteLink) -> None:
        pg, s = self.pg, self.surface
        s.fill((24, 27, 33))
        for i, eye in enumerate(self.eyes):
            x = 10 + i * (EYE[0] + 10)
            if eye is None:
                pg.draw.rect(s, (0, 0, 0), (x, 10, *EYE))
            else:
                s.blit(eye, (x, 10))
        for i, (text, bad) in enumerate(hud_lines(state, link)):
            colour = (255, 90, 80) if bad else (225, 228, 235)
            s.blit(self.font.render(text, True, colour), (12, EYE[1] + 22 + 26 * i))
        pg.display.flip()


def _recording_word(health) -> str:
    if not (health and health.recording):
        return ""
    return "PAUSED" if health.recording_paused else "REC"


def hud_lines(state: TeleopState, link: RemoteLink) -> list[tuple[str, bool]]:
    """The HUD's text, line by line, each with whether it warns."""
    ctrl = link.latest.get("control/command")
    motor = link.latest.get("motor/state")
    health = link.latest.get("remote/health")
    preview = link.latest.get("remote/preview")
    role = {"driver": "you drive", "viewer": "view only"}.get(link.role, link.role)
    estop = bool(motor and motor.estop) or state.estop
    age = (time.time_ns() - preview.capture_wall_ns) / 1e6 if preview else None
    lines = [
        (
            f"{role}   robot: {ctrl.source if ctrl else '-'}   "
            f"{'E-STOP' if estop else 'armed' if motor and motor.armed else 'disarmed'}   "
            f"{_recording_word(health)}",
            estop or link.role != "driver",
        ),
        (
            f"you: steer {state.steering:+.2f} thr {state.throttle:+.2f} "
            f"deadman {'held' if state.deadman else 'off'}   robot: "
            + (f"steer {motor.steering:+.2f} thr {motor.throttle:+.2f}" if motor else "-"),
            False,
        ),
        (
            f"link rtt {link.rtt_ms:.1f} ms   image age ~{age:.0f} ms (wall clocks)"
            if age is not None
            else f"link rtt {link.rtt_ms:.1f} ms   no image yet",
            False,
        ),
    ]
    if health:
        lines.append(
            (
                f"camera {health.camera_hz:g} Hz ({health.camera_drops} dropped)  steering "
                f"{health.steering_hz:g}  control {health.control_hz:g}  motor "
                f"{health.motor_hz:g}  glass-motor {health.glass_to_motor_ms:.0f} ms  "
                f"disk {health.free_disk_mb / 1000:.1f} GB",
                False,
            )
        )
    lines.append((KEYBOARD_HELP, False))
    return lines


def run_remote_teleop(args: argparse.Namespace) -> int:
    """The laptop's loop: read keys/gamepad, send, show what the robot sends back."""
    cfg = load_config(args.config, list(args.set))
    link = RemoteLink(args.connect, args.keys, args.robot_key)
    print(f"connected to {link.where} (CURVE); Esc or close the window to stop", flush=True)
    pg = import_pygame()
    window = RemoteWindow(pg)
    teleop = cfg.teleop.build()
    rate = RateKeeper(RATE_HZ)
    last_s, was_estop, next_ping = time.monotonic(), False, 0.0
    try:
        while True:
            events = pg.event.get()
            if any(e.type == pg.QUIT for e in events):
                break
            if any(e.type == pg.KEYDOWN and e.key == pg.K_ESCAPE for e in events):
                break
            now = time.monotonic()
            state = teleop.update(events, pg.key.get_pressed(), now - last_s)
            last_s = now
            if was_estop and not state.estop:
                link.rearm()
            was_estop = state.estop
            link.send(state.command(0, 0, operator="remote window"))
            if now >= next_ping:
                link.ping()
                next_ping = now + 1.0
            for _, msg in link.poll(0):
                if isinstance(msg, m.StereoPreview):
                    if window.preview_seq < 0:
                        print(f"live view: first images ({msg.width}x{msg.height})", flush=True)
                    window.show_preview(msg)
            window.draw(state, link)
            rate.keep_time()
    finally:
        link.send(m.TeleopCommand())  # let go: deadman released
        link.release()
        link.close()
        pg.display.quit()
    return 0
