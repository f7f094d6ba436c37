"""The simulator's pygame window: top-down map, both camera views and a HUD, from plain data.

Layout (1280x720 at ``scale=1``): the left and right camera views side by side with the HUD
beside them, the top-down map below (it scrolls with the vehicle), a key help line at the
bottom. The static map (ground, trail, obstacles, goal) is drawn once per world, supersampled
for smooth edges, and blitted each frame. Headless, it draws to an off-screen surface (SDL's
dummy driver, no display server), so ``snapshot()`` works in CI.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rover.errors import ConfigError, DataError, DeviceError
from rover.teleop import KEYBOARD_HELP, import_pygame
from sim.materials import MATERIALS
from sim.world import World

BG, PANEL, EDGE = (18, 20, 24), (30, 33, 39), (58, 63, 72)
TEXT, DIM, WHITE = (228, 231, 236), (142, 149, 160), (245, 245, 245)
GREEN, RED, AMBER = (72, 199, 116), (232, 64, 64), (245, 179, 51)
BLUE, TEAL, PATH = (86, 156, 255), (40, 200, 180), (90, 215, 255)
VEHICLE, NOSE = (255, 214, 64), (255, 120, 40)
TINT_RGB, TINT_ALPHA = (255, 70, 40), 0.45  # how a boolean overlay mask is shown
SUPERSAMPLE = 2  # the static map is drawn this much larger, then smoothed down
LOOK_BEHIND = 0.3  # the vehicle sits this far across the map view (it drives to the right)
FOV_RANGE_M = 6.0
# pixel sizes of pygame's bundled font (no system fonts needed); at 12-14 px its hinting
# fuses the dot of "i" and "j" with the stem, so sizes are checked and bumped (legible_font)
FONT_PX = {"s": 15, "m": 17, "l": 22}
DOTTED = "ij"  # glyphs whose dot must stay apart from the stem
WINDOW_KEYS = "F12: snapshot   Esc: quit"
Rgb = tuple[int, int, int]


@dataclass(frozen=True, kw_only=True, eq=False)
class WindowView:
    """Everything one frame shows. Images are RGB uint8 HxWx3; ``hud`` adds rows."""

    pose: tuple[float, float, float]  # x_m, y_m, yaw_rad of the footprint centre
    left: np.ndarray | None = None
    right: np.ndarray | None = None
    vehicle_length_m: float = 0.5
    vehicle_width_m: float = 0.3
    trail_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # recent path
    collisions_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    collisions: int | None = None  # None: one per mark in collisions_xy
    speed_mps: float = 0.0
    steering: float = 0.0
    throttle: float = 0.0
    autopilot: bool = False
    source: str = ""  # which command drives: teleop, autopilot, expert...
    estop: bool = False
    recording: str = ""  # REC, PAUSED, or a notice ("not recording: start with --record DIR")
    distance_m: float = 0.0
    sim_time_s: float = 0.0
    steps_per_s: float | None = None
    late_frames: int = 0
    camera_hfov_rad: float = math.pi / 2
    overlay_left: np.ndarray | None = None  # HxWx4 RGBA, or an HxW mask tinted red
    hud: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowEvents:
    """What happened since the last call: pass ``events`` and ``pressed`` on to teleop."""

    quit: bool = False
    snapshot: bool = False
    events: list[Any] = field(default_factory=list)
    pressed: Sequence[bool] | None = None  # pygame.key.get_pressed(); None when headless


def _rgb(name: str, stop: int, gain: float = 1.0) -> Rgb:
    rgb = np.clip(np.asarray(MATERIALS[name].stops[stop], dtype=float) * gain, 0, 255)
    return tuple(int(v) for v in rgb)  # type: ignore[return-value]


class SimWindow:
    """Draws ``WindowView`` frames of one world, in a window or off-screen (headless)."""

    def __init__(self, world: World, headless: bool = False, scale: float = 1.0) -> None:
        if not 0.25 <= scale <= 4.0:
            raise ConfigError(f"window scale {scale} is out of range: use 0.25 to 4")
        pg = self._pg = import_pygame()
        if headless and not pg.display.get_init():
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # no display server needed
        self._owns_display, self._owns_font = not pg.display.get_init(), not pg.font.get_init()
        try:
            pg.display.init()
        except pg.error as exc:
            raise DeviceError(
                f"cannot open the simulator window ({exc}): run headless or set "
                "SDL_VIDEODRIVER=dummy"
            ) from exc
        pg.font.init()  # never pygame.init(): its audio mixer hangs headless machines
        self.world, self.headless, self.scale = world, headless, scale
        self._layout()
        if headless:
            self.surface = pg.Surface(self.size)
        else:
            self.surface = pg.display.set_mode(self.size)
            pg.display.set_caption(self._title(""))
        self._fonts = {k: legible_font(pg, self._px(v)) for k, v in FONT_PX.items()}
        self._texts: dict[tuple, Any] = {}
        self._static_map()
        self._static_chrome()
        self.draw_ms = 0.0  # smoothed cost of draw()
        self.fps = 0.0  # smoothed rate of draw() calls
        self._last_draw_s: float | None = None
        self.closed = False

    def _title(self, recording: str) -> str:
        title = f"rover sim: {self.world.scenario.name} (seed {self.world.seed})"
        return f"{title}: {recording}" if recording else title

    def _px(self, v: float) -> int:
        return max(1, round(v * self.scale))

    def _layout(self) -> None:
        pg, px = self._pg, self._px
        pad, cam_w, cam_h, help_h = px(8), px(480), px(360), px(24)
        self.size = width, height = px(1280), px(720)
        self.cam_rects = tuple(pg.Rect(pad + i * (cam_w + pad), pad, cam_w, cam_h) for i in (0, 1))
        hud_x = 3 * pad + 2 * cam_w
        self.hud_rect = pg.Rect(hud_x, pad, width - hud_x - pad, cam_h)
        map_y = 2 * pad + cam_h
        self.map_rect = pg.Rect(pad, map_y, width - 2 * pad, height - map_y - help_h - pad // 2)
        self.help_pos = (pad, height - help_h + px(5))

    # ----- drawn once ------------------------------------------------------------------------

    def _static_map(self) -> None:
        """Ground, trail, obstacles and goal at map scale; sets the world -> pixel transform."""
        pg, w, k = self._pg, self.world, SUPERSAMPLE
        x0, x1, y0, y1 = w.bounds
        margin_m, label_h = 0.3, self._fonts["s"].get_height()
        # label strips outside the field, so no label sits on the border's rocks: the goal's
        # name above, the metre marks below (above the progress bar)
        top, bottom = label_h + self._px(4), label_h + self._px(11)
        self.ppm = (self.map_rect.h - 2 - top - bottom) / (y1 - y0 + 2 * margin_m)  # px per m
        self._origin = (x0 - margin_m, y1 + margin_m + top / self.ppm)  # world at pixel (0, 0)
        width = max(self.map_rect.w, round((x1 - x0 + 2 * margin_m) * self.ppm))
        big = pg.Surface((width * k, self.map_rect.h * k))
        mean = np.mean([MATERIALS[g].stops[1] for g in w.ground_materials], axis=0) * 0.72
        ground: Rgb = tuple(int(v) for v in mean)  # type: ignore[assignment]
        big.fill(tuple(v // 2 for v in ground))  # outside the field
        (ax, ay), (bx, by) = self._pts([[x0, y1], [x1, y0]], k)
        big.fill(ground, pg.Rect(ax, ay, bx - ax, by - ay))
        for x in range(math.ceil(x0 / 5) * 5, math.floor(x1) + 1, 5):  # a line every 5 m
            colour = tuple(min(255, c + (22 if x % 10 == 0 else 10)) for c in ground)
            pg.draw.line(big, colour, *self._pts([[x, y1], [x, y0]], k), k)
        if w.trail is not None:
            self._draw_trail(big, k)
        self._draw_obstacles(big, k)
        self._draw_lines(big, k)
        self.map_surface = pg.transform.smoothscale(big, (width, self.map_rect.h))
        for x in range(0, math.floor(x1) + 1, 10):
            label = self._text(f"{x} m", "s", WHITE)
            px, py = self._pts([[x, y0 - margin_m]])[0]
            self.map_surface.blit(label, (px - label.get_width() // 2, py + self._px(2)))
        gx, gy = self._pts([[w.goal_x_m + 0.5, y1 + margin_m]])[0]
        goal = self._text("GOAL", "s", WHITE)
        self.map_surface.blit(goal, (gx - goal.get_width() // 2, gy - label_h - self._px(2)))

    def _pts(self, xy: Any, k: float = 1, dx: float = 0, dy: float = 0) -> list:
        """World points (N, 2) to map pixels (``k``: supersampling; ``dx, dy``: a shift)."""
        xy, (ox, oy), s = np.asarray(xy, dtype=float).reshape(-1, 2), self._origin, self.ppm * k
        out = np.stack([(xy[:, 0] - ox) * s + dx, (oy - xy[:, 1]) * s + dy], axis=1)
        return out.round().astype(int).tolist()

    def _draw_trail(self, surf: Any, k: int) -> None:
        pg, w = self._pg, self.world
        assert w.trail is not None
        xs = np.arange(w.bounds[0], w.bounds[1] + 0.25, 0.25)
        ys = np.asarray(w.trail.centre_y(xs))
        upper = self._pts(np.stack([xs, ys + w.trail.half_width_m], 1), k)
        lower = self._pts(np.stack([xs, ys - w.trail.half_width_m], 1), k)
        pg.draw.polygon(surf, _rgb(w.trail_material, 1, 0.85), upper + lower[::-1])
        edge = _rgb(w.trail_material, 2)
        for side in (upper, lower):
            pg.draw.lines(surf, edge, False, side, 2 * k)
        centre = self._pts(np.stack([xs, ys], 1), k)
        for i in range(0, len(centre) - 4, 8):  # a dashed centre line
            pg.draw.line(surf, edge, centre[i], centre[i + 4], k)

    def _draw_obstacles(self, surf: Any, k: int) -> None:
        """Each obstacle by shape in its material's colours, over a soft drop shadow."""
        pg, s = self._pg, self.ppm * k
        shadow = pg.Surface(surf.get_size(), pg.SRCALPHA)
        off = 0.07 * s
        for o in self.world.obstacles:
            if o.is_round:
                centre = self._pts([[o.x_m, o.y_m]], k, off, off)[0]
                pg.draw.circle(shadow, (0, 0, 0, 80), centre, o.radius_m * s)
            else:
                pg.draw.polygon(shadow, (0, 0, 0, 80), self._pts(o.corners(), k, off, off))
        surf.blit(shadow, (0, 0))
        for o in self.world.obstacles:
            fill, dark = _rgb(o.material, 1, o.albedo), _rgb(o.material, 0)
            if not o.is_round:
                pts = self._pts(o.corners(), k)
                pg.draw.polygon(surf, fill, pts)
                pg.draw.polygon(surf, dark, pts, k)
                continue
            (cx, cy), r = self._pts([[o.x_m, o.y_m]], k)[0], max(o.radius_m * s, 1.5 * k)
            pg.draw.circle(surf, fill, (cx, cy), r)
            if o.shape == "cone":  # from above: a light band round the tip
                pg.draw.circle(surf, _rgb(o.material, 2), (cx, cy), r * 0.62)
                pg.draw.circle(surf, fill, (cx, cy), r * 0.3)
            else:  # a highlight to the upper left, so round things read as round
                light = _rgb(o.material, 2, o.albedo)
                pg.draw.circle(surf, light, (cx - r * 0.3, cy - r * 0.3), r * 0.35)
            pg.draw.circle(surf, dark, (cx, cy), r, k)

    def _draw_lines(self, surf: Any, k: int) -> None:
        """A chequered goal strip and a dashed start line."""
        pg, w, cell = self._pg, self.world, 0.5
        _, _, y0, y1 = w.bounds
        for i, y in enumerate(np.arange(y0, y1, cell)):
            for j in range(2):
                corners = [[w.goal_x_m + j * cell, y + cell], [w.goal_x_m + (j + 1) * cell, y]]
                (ax, ay), (bx, by) = self._pts(corners, k)
                colour = WHITE if (i + j) % 2 else (20, 20, 20)
                pg.draw.rect(surf, colour, pg.Rect(ax, ay, bx - ax, by - ay))
        for y in np.arange(y0, y1, 1.0):
            a, b = self._pts([[w.start_pose[0], y], [w.start_pose[0], y + 0.5]], k)
            pg.draw.line(surf, WHITE, a, b, k)

    def _static_chrome(self) -> None:
        """Background, panel, frames, help line; and the collision mark."""
        pg, px = self._pg, self._px
        self.chrome = pg.Surface(self.size)
        self.chrome.fill(BG)
        pg.draw.rect(self.chrome, PANEL, self.hud_rect, border_radius=px(6))
        for rect in (*self.cam_rects, self.map_rect):
            pg.draw.rect(self.chrome, EDGE, rect.inflate(2, 2), 1)
        self.chrome.blit(self._text(f"{KEYBOARD_HELP}   {WINDOW_KEYS}", "s", DIM), self.help_pos)
        r, arm = px(8), px(3)
        self._mark = pg.Surface((2 * r + 1, 2 * r + 1), pg.SRCALPHA)
        pg.draw.circle(self._mark, WHITE, (r, r), r)
        pg.draw.circle(self._mark, RED, (r, r), r - px(2))
        for sign in (1, -1):
            pg.draw.line(self._mark, WHITE, (r - arm, r - sign * arm), (r + arm, r + sign * arm), 2)

    # ----- per frame ---------------------------------------------------------------------------

    def draw(self, view: WindowView) -> None:
        """Draw one frame (and show it, unless headless)."""
        if self.closed:
            raise RuntimeError("SimWindow.draw() after close()")
        start_s = time.perf_counter()
        self.surface.blit(self.chrome, (0, 0))
        self._draw_camera(self.cam_rects[0], view.left, view.overlay_left, "LEFT")
        self._draw_camera(self.cam_rects[1], view.right, None, "RIGHT")
        self._draw_map(view)
        self._draw_hud(view)
        if not self.headless:
            title = self._title(view.recording if view.recording in ("REC", "PAUSED") else "")
            if title != self._pg.display.get_caption()[0]:  # the taskbar says REC / PAUSED too
                self._pg.display.set_caption(title)
            self._pg.display.flip()
        end_s = time.perf_counter()
        self.draw_ms = _ema(self.draw_ms, (end_s - start_s) * 1e3)
        if self._last_draw_s is not None and end_s > self._last_draw_s:
            self.fps = _ema(self.fps, 1.0 / (end_s - self._last_draw_s))
        self._last_draw_s = end_s

    def _draw_camera(self, rect: Any, image: np.ndarray | None, overlay: Any, name: str) -> None:
        if image is None:
            self._blit_text("no camera", "m", DIM, rect.center, "center")
        else:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"{name} image must be RGB uint8 HxWx3; got {image.shape}")
            if overlay is not None:
                image = _blend(image, overlay)
            if image.shape[:2] != (rect.h, rect.w):
                image = cv2.resize(image, rect.size, interpolation=cv2.INTER_LINEAR)
            frame = self._pg.image.frombuffer(np.ascontiguousarray(image), rect.size, "RGB")
            self.surface.blit(frame, rect)
        label = name if overlay is None else f"{name} + overlay"
        self._blit_text(label, "s", TEXT, (rect.x + self._px(8), rect.y + self._px(6)), box=True)

    def _draw_map(self, view: WindowView) -> None:
        pg, surf, rect = self._pg, self.surface, self.map_rect
        vx = self._pts([view.pose[:2]])[0][0]
        shift = int(min(max(vx - LOOK_BEHIND * rect.w, 0), self.map_surface.get_width() - rect.w))
        surf.set_clip(rect)
        surf.blit(self.map_surface, rect.topleft, pg.Rect(shift, 0, rect.w, rect.h))
        dx, dy = rect.x - shift, rect.y
        if len(view.trail_xy) >= 2:
            pg.draw.lines(surf, PATH, False, self._pts(view.trail_xy, 1, dx, dy), self._px(2))
        half = self._mark.get_width() // 2
        for x, y in self._pts(view.collisions_xy, 1, dx, dy):
            surf.blit(self._mark, (x - half, y - half))
        self._draw_vehicle(view, dx, dy)
        bar = pg.Rect(rect.x, rect.bottom - self._px(5), rect.w, self._px(5))
        surf.fill((10, 10, 12), bar)
        bar.w = round(bar.w * self.world.goal_progress(view.pose[0]))
        surf.fill(GREEN, bar)  # progress from the start line to the goal
        surf.set_clip(None)

    def _draw_vehicle(self, view: WindowView, dx: int, dy: int) -> None:
        """The cameras' field of view, the footprint with a nose, and a ring to spot it by."""
        pg, surf = self._pg, self.surface
        x, y, yaw = view.pose
        angles = yaw + np.linspace(-view.camera_hfov_rad / 2, view.camera_hfov_rad / 2, 9)
        fan = np.stack([np.cos(angles), np.sin(angles)], 1) * FOV_RANGE_M + (x, y)
        fov = self._pts(np.vstack([[x, y], fan]), 1, dx, dy)
        box = pg.Rect(fov[0], (1, 1)).unionall([pg.Rect(p, (1, 1)) for p in fov])
        wedge = pg.Surface(box.size, pg.SRCALPHA)
        pg.draw.polygon(wedge, (255, 240, 160, 46), [(px - box.x, py - box.y) for px, py in fov])
        surf.blit(wedge, box)
        hl, hw = view.vehicle_length_m / 2, view.vehicle_width_m / 2
        rot = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
        body = np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]])
        nose = np.array([[hl + 0.25, 0.0], [hl - 0.05, -hw * 0.9], [hl - 0.05, hw * 0.9]])
        for shape, colour in ((body, VEHICLE), (nose, NOSE)):
            pts = self._pts(shape @ rot + (x, y), 1, dx, dy)
            pg.draw.polygon(surf, colour, pts)
            pg.draw.polygon(surf, (25, 25, 25), pts, 1)
        ring = max(self.ppm * hl * 2.2, self._px(12))
        pg.draw.circle(surf, VEHICLE, self._pts([[x, y]], 1, dx, dy)[0], ring, 1)

    def _draw_hud(self, view: WindowView) -> None:
        px, rect = self._px, self.hud_rect
        left, right, y = rect.x + px(12), rect.right - px(12), rect.y + px(10)
        title = self._text("ROVER SIM", "l", TEXT)
        self.surface.blit(title, (left, y))
        # the scenario on its own line: a long name never runs into the title
        scenario = f"{self.world.scenario.name}  seed {self.world.seed}"
        self._blit_text(scenario, "s", DIM, (left, y + title.get_height() + px(2)))
        x, y = left, y + title.get_height() + self._fonts["s"].get_height() + px(8)
        mode = ("AUTOPILOT", TEAL) if view.autopilot else ("MANUAL", BLUE)
        safety = ("E-STOP", RED) if view.estop else ("ARMED", GREEN)
        record = {"REC": [("REC", RED)], "PAUSED": [("PAUSED", AMBER)]}.get(view.recording, [])
        for text, colour in (mode, safety, *record):
            x = self._badge(text, colour, x, y) + px(6)
        # the record key pressed with nothing recording: "not recording" / "start with ..."
        notice = [] if record or not view.recording else [(*view.recording.split(": ", 1), AMBER)]
        collisions = len(view.collisions_xy) if view.collisions is None else view.collisions
        progress = self.world.goal_progress(view.pose[0]) * 100
        steps = "-" if view.steps_per_s is None else f"{view.steps_per_s:.1f} steps/s"
        rows: list[tuple[str, str, Rgb]] = [
            ("speed", f"{view.speed_mps:.2f} m/s", TEXT),
            ("steering", f"{view.steering:+.2f}", TEXT),
            ("throttle", f"{view.throttle:+.2f}", TEXT),
            ("source", view.source or "-", TEXT),
            ("collisions", str(collisions), RED if collisions else TEXT),
            ("distance", f"{view.distance_m:.1f} m   goal {progress:.0f} %", TEXT),
            ("sim time", f"{view.sim_time_s:.1f} s", TEXT),
            ("", "", TEXT),
            ("render", f"{self.fps:.0f} fps  {self.draw_ms:.1f} ms", DIM),
            ("stack", steps, DIM),
            ("late frames", str(view.late_frames), AMBER if view.late_frames else DIM),
            *((str(k), str(v), TEXT) for k, v in view.hud.items()),
            *(row for row in notice if len(row) == 3),
        ]
        y, step = y + px(30), px(20)
        for label, value, colour in rows:
            if y + step > rect.bottom:
                break  # rows that do not fit are left out rather than drawn over the map
            if not label:
                self._pg.draw.line(
                    self.surface, EDGE, (left, y + step // 2), (right, y + step // 2)
                )
            else:
                self._blit_text(label, "s", DIM, (left, y))
                self._blit_text(value, "s", colour, (right, y), "topright")
            if label in ("steering", "throttle"):  # steering left (+) fills leftwards
                level = -view.steering if label == "steering" else view.throttle
                self._gauge(left + px(86), right - px(56), y + px(6), level)
            y += step

    def _badge(self, text: str, colour: Rgb, x: int, y: int) -> int:
        label = self._text(text, "s", BG)
        box = self._pg.Rect(x, y, label.get_width() + self._px(14), self._px(22))
        self._pg.draw.rect(self.surface, colour, box, border_radius=self._px(4))
        self.surface.blit(label, label.get_rect(center=box.center))
        return box.right

    def _gauge(self, x0: int, x1: int, y: int, level: float) -> None:
        pg, surf, h, mid = self._pg, self.surface, self._px(6), (x0 + x1) // 2
        pg.draw.rect(surf, EDGE, pg.Rect(x0, y, x1 - x0, h), border_radius=h // 2)
        end = round(mid + max(-1.0, min(1.0, level)) * (x1 - x0) / 2)
        pg.draw.rect(surf, AMBER, pg.Rect(min(mid, end), y, abs(end - mid) + 1, h))
        pg.draw.line(surf, TEXT, (mid, y - 2), (mid, y + h + 1))

    def _text(self, text: str, size: str, colour: Rgb, box: bool = False) -> Any:
        """Rendered text, cached (labels repeat every frame); ``box`` adds a dark backing."""
        key = (text, size, colour, box)
        if key not in self._texts:
            if len(self._texts) > 512:
                self._texts.clear()  # values change every frame: keep the cache bounded
            label = self._fonts[size].render(text, True, colour)
            if box:
                pad = self._px(4)
                backed = self._pg.Surface(
                    (label.get_width() + 2 * pad, label.get_height() + pad), self._pg.SRCALPHA
                )
                backed.fill((0, 0, 0, 150))
                backed.blit(label, (pad, pad // 2 + 1))
                label = backed
            self._texts[key] = label
        return self._texts[key]

    def _blit_text(
        self, text: str, size: str, colour: Rgb, at: Any, anchor: str = "topleft", box: bool = False
    ) -> None:
        label = self._text(text, size, colour, box)
        self.surface.blit(label, label.get_rect(**{anchor: at}))

    # ----- input, snapshots, shutdown ------------------------------------------------------------

    def events(self) -> WindowEvents:
        """Drain the event queue: quit (window closed, Esc), snapshot (F12), the rest for teleop."""
        pg = self._pg
        quit_requested = snapshot = False
        rest = []
        for event in pg.event.get():
            if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key == pg.K_ESCAPE):
                quit_requested = True
            elif event.type == pg.KEYDOWN and event.key == pg.K_F12:
                snapshot = True
            else:
                rest.append(event)
        pressed = None if self.headless else pg.key.get_pressed()
        return WindowEvents(quit_requested, snapshot, rest, pressed)

    def snapshot(self, path: str | Path) -> Path:
        """Save the whole window (the last frame drawn) as a PNG."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise DataError(f"snapshot {path}: the file name must end in .png")
        if not path.parent.is_dir():
            raise DataError(f"snapshot {path}: folder {path.parent} does not exist; create it")
        try:
            self._pg.image.save(self.surface, str(path))
        except self._pg.error as exc:
            raise DataError(f"cannot write snapshot {path} ({exc}): check permissions") from exc
        return path

    def close(self) -> None:
        """Close the window; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self._owns_display or not self.headless:
            self._pg.display.quit()  # pygame closes its window only by quitting display
        if self._owns_font:
            self._pg.font.quit()

    def __enter__(self) -> SimWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def legible_font(pg: Any, px: int) -> Any:
    """pygame's bundled font at ``px`` pixels, or the next size up at which every glyph of
    ``DOTTED`` keeps its dot apart from its stem (at most 4 px larger)."""
    path = os.path.join(os.path.dirname(pg.__file__), pg.font.get_default_font())
    for size in range(px, px + 5):
        font = pg.font.Font(path, size)
        if all(glyph_parts(pg, font, ch) >= 2 for ch in DOTTED):
            return font
    return pg.font.Font(path, px)  # tiny scales: none keeps the dots; take the size asked


def glyph_parts(pg: Any, font: Any, glyph: str) -> int:
    """How many separate bands of ink ``glyph`` has from top to bottom ("i": dot and stem,
    2; "l": 1), as ``font`` renders it."""
    ink = pg.surfarray.array_alpha(font.render(glyph, True, (255, 255, 255))).T > 96
    rows = ink.any(axis=1)
    return int(np.count_nonzero(rows[1:] & ~rows[:-1]) + rows[0])


def _ema(previous: float, sample: float, weight: float = 0.1) -> float:
    return sample if previous == 0.0 else previous + weight * (sample - previous)


def _blend(image: np.ndarray, overlay: np.ndarray) -> np.ndarray:
    """Tint ``image`` with an RGBA overlay or a mask, resized to the image if needed."""
    h, w = image.shape[:2]
    if overlay.shape[:2] != (h, w):
        overlay = cv2.resize(overlay.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    if overlay.ndim == 3 and overlay.shape[2] == 4:
        alpha = overlay[..., 3:].astype(np.uint16)
        mixed = image * (255 - alpha) + overlay[..., :3] * alpha + 127
        return (mixed // 255).astype(np.uint8)
    if overlay.ndim != 2:
        raise ValueError(f"overlay must be HxWx4 RGBA or an HxW mask; got {overlay.shape}")
    tinted = cv2.addWeighted(image, 1 - TINT_ALPHA, np.full_like(image, TINT_RGB), TINT_ALPHA, 0)
    out = image.copy()
    np.copyto(out, tinted, where=overlay.astype(bool)[..., None])
    return out
