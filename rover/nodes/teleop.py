"""Teleop node: keyboard and gamepad → teleop/command at 50 Hz (hot-plug aware).

With a display it opens a small window (keyboard input needs focus) showing what it sends;
without one it reads gamepads only, through SDL's dummy video driver.
"""

from __future__ import annotations

import os
import time

from rover import bus, topics
from rover.node import RateKeeper, Shutdown, node_argparser, node_config, run_main
from rover.teleop import KEYBOARD_HELP, TeleopState

RATE_HZ = 50.0


class TeleopWindow:
    """A small status window; the keyboard's events arrive through it."""

    def __init__(self, pg, headless: bool):
        self.pg = pg
        self.surface = None if headless else pg.display.set_mode((760, 120))
        if self.surface is not None:
            pg.display.set_caption("rover teleop")
            pg.font.init()
            self.font = pg.font.Font(None, 24)

    def draw(self, state: TeleopState) -> None:
        if self.surface is None:
            return
        pg = self.pg
        self.surface.fill((28, 31, 38))
        mode = "AUTOPILOT" if state.autopilot else "MANUAL"
        lines = [
            f"{mode}   {'E-STOP' if state.estop else 'armed'}   "
            f"{'REC' if state.record else ''}   input: {state.device}",
            f"steering {state.steering:+.2f}   throttle {state.throttle:+.2f}   "
            f"deadman {'held' if state.deadman else 'released'}",
            KEYBOARD_HELP,
        ]
        for i, text in enumerate(lines):
            colour = (255, 90, 80) if state.estop and i == 0 else (225, 228, 235)
            self.surface.blit(self.font.render(text, True, colour), (12, 12 + 34 * i))
        pg.display.flip()


def main() -> None:
    parser = node_argparser(__doc__)
    parser.add_argument("--headless", action="store_true", help="gamepad only, no window")
    args = parser.parse_args()
    cfg, bus_cfg = node_config(args)
    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame as pg

    pg.display.init()  # never pygame.init(): the audio mixer breaks headless machines
    pg.joystick.init()
    window = TeleopWindow(pg, headless)
    teleop = cfg.teleop.build()
    pub = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
    stop = Shutdown()
    rate = RateKeeper(RATE_HZ)
    last = time.monotonic()
    try:
        while not stop.requested:
            events = pg.event.get()
            if any(e.type == pg.QUIT for e in events):
                break
            pressed = pg.key.get_pressed() if not headless else None
            now = time.monotonic()
            state = teleop.update(events, pressed, now - last)
            last = now
            pub.publish(state.command(0, time.monotonic_ns()))
            window.draw(state)
            rate.keep_time()
    finally:
        pg.display.quit()


if __name__ == "__main__":
    run_main("teleop", main)
