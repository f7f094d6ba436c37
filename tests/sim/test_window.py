"""The simulator window, headless (SDL dummy driver): draws, snapshots, events, closing."""

import math

import cv2
import numpy as np
import pygame
import pytest

from rover.errors import ConfigError, DataError
from sim.scenario import load_scenario
from sim.window import VEHICLE, SimWindow, WindowView
from sim.world import generate_world


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


@pytest.fixture(scope="module")
def forest():
    return generate_world(load_scenario("forest"), seed=5)


def cameras(height=240, width=320):
    """Synthetic eyes: a red-ish left and a blue-ish right view with a gradient."""
    ramp = np.linspace(0, 120, width, dtype=np.uint8)[None, :].repeat(height, 0)
    left = np.dstack([np.full_like(ramp, 200), ramp, np.full_like(ramp, 40)])
    right = np.dstack([np.full_like(ramp, 30), ramp, np.full_like(ramp, 210)])
    return np.ascontiguousarray(left), np.ascontiguousarray(right)


def view(x_m=12.0, **kw):
    left, right = cameras()
    xs = np.linspace(0.0, x_m, 50)
    defaults = dict(
        pose=(x_m, 0.5, 0.2),
        left=left,
        right=right,
        trail_xy=np.stack([xs, 0.5 * np.sin(xs / 3)], 1),
        collisions_xy=np.array([[4.0, 0.3]]),
        speed_mps=1.5,
        steering=0.3,
        throttle=0.5,
        source="teleop",
        distance_m=x_m,
        sim_time_s=6.0,
        steps_per_s=30.0,
        hud={"input": "keyboard"},
    )
    return WindowView(**(defaults | kw))


def near(image_rgb, colour, tol=30):
    return int((np.abs(image_rgb.astype(int) - colour).max(axis=2) <= tol).sum())


def read_png(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_snapshot_is_a_png_of_the_window_with_map_cameras_and_vehicle(forest, tmp_path):
    with SimWindow(forest, headless=True) as window:
        window.draw(view())
        path = window.snapshot(tmp_path / "frame.png")
        rects = window.cam_rects, window.map_rect
    image = read_png(path)
    assert image.shape == (720, 1280, 3)
    (left, right), map_rect = rects
    m = image[map_rect.top : map_rect.bottom, map_rect.left : map_rect.right]
    assert m.std() > 15 and len(np.unique(m.reshape(-1, 3), axis=0)) > 200  # not blank
    assert near(m, VEHICLE) > 10  # the vehicle is on the map
    assert near(m, (232, 64, 64), 25) > 20  # so is the collision mark
    for rect, colour in ((left, (200, 60, 40)), (right, (30, 60, 210))):
        centre = image[rect.centery - 20 : rect.centery + 20, rect.centerx - 20 : rect.centerx + 20]
        assert np.abs(centre.reshape(-1, 3).mean(0) - colour).max() < 25  # the eye's image


@pytest.mark.parametrize("name", ["corridor", "open"])
def test_other_scenarios_draw_at_other_scales(name, tmp_path):
    world = generate_world(load_scenario(name), seed=1)
    with SimWindow(world, headless=True, scale=0.5) as window:
        window.draw(view(left=None, right=None, estop=True, autopilot=True, recording="PAUSED"))
        image = read_png(window.snapshot(tmp_path / f"{name}.png"))
    assert image.shape == (360, 640, 3)


def test_map_scrolls_to_keep_the_vehicle_in_view(forest):
    with SimWindow(forest, headless=True) as window:
        crops, columns = [], []
        for x_m in (20.0, 30.0):
            window.draw(view(x_m=x_m))
            crop = pygame.surfarray.array3d(window.surface.subsurface(window.map_rect))
            crop = crop.swapaxes(0, 1)  # to rows x columns
            hits = np.argwhere(np.abs(crop.astype(int) - VEHICLE).max(axis=2) <= 10)
            crops.append(crop)
            columns.append(hits[:, 1].mean())
    assert not np.array_equal(crops[0], crops[1])  # the map moved under the vehicle...
    assert abs(columns[0] - columns[1]) < 5  # ...which stays put on screen


def test_overlay_tints_the_left_view_only_where_masked(forest):
    left, right = cameras()
    mask = np.zeros((120, 160), bool)  # a lower-resolution segmenter output
    mask[:, :80] = True
    rgba = np.zeros((240, 320, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 255, 255  # opaque green everywhere
    with SimWindow(forest, headless=True) as window:
        rect = window.cam_rects[0]
        shots = {}
        for name, overlay in (("none", None), ("mask", mask), ("rgba", rgba)):
            window.draw(view(overlay_left=overlay))
            shots[name] = pygame.surfarray.array3d(window.surface.subsurface(rect))
        with pytest.raises(ValueError, match="overlay"):
            window.draw(view(overlay_left=np.zeros((240, 320, 2), np.uint8)))
        with pytest.raises(ValueError, match="RGB uint8"):
            window.draw(view(left=left.astype(np.float32)))
    row = rect.h // 2
    tinted, plain = shots["mask"][:, row].astype(int), shots["none"][:, row].astype(int)
    assert (tinted[20 : rect.w // 2 - 20, 0] > plain[20 : rect.w // 2 - 20, 0] + 15).all()
    assert np.abs(tinted[rect.w // 2 + 20 :] - plain[rect.w // 2 + 20 :]).max() <= 1
    assert (shots["rgba"][40:-40, 40:-40, 1] > 240).all()


def test_events_report_quit_snapshot_and_pass_keys_on(forest):
    with SimWindow(forest, headless=True) as window:
        pg = pygame
        pg.event.clear()
        assert not window.events().quit
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_F12, mod=0))
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_UP, mod=0))
        got = window.events()
        assert got.snapshot and not got.quit and got.pressed is None
        assert [e.key for e in got.events if e.type == pg.KEYDOWN] == [pg.K_UP]
        pg.event.post(pg.event.Event(pg.QUIT))
        assert window.events().quit
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_ESCAPE, mod=0))
        assert window.events().quit


def test_snapshot_errors_name_the_fix(forest, tmp_path):
    with SimWindow(forest, headless=True) as window:
        window.draw(view())
        with pytest.raises(DataError, match=r"\.png"):
            window.snapshot(tmp_path / "frame.jpg")
        with pytest.raises(DataError, match="does not exist"):
            window.snapshot(tmp_path / "missing" / "frame.png")


def test_close_is_clean_and_idempotent(forest):
    pygame.font.quit()  # what it inits it quits: start from nothing (other tests may not)
    pygame.display.quit()
    window = SimWindow(forest, headless=True)
    window.draw(view())
    window.close()
    window.close()
    assert not pygame.display.get_init() and not pygame.font.get_init()
    with pytest.raises(RuntimeError, match="close"):
        window.draw(view())
    with pytest.raises(ConfigError, match="scale"):
        SimWindow(forest, headless=True, scale=10)


def test_the_window_follows_the_vehicle_frame_by_frame(forest):
    # How fast it draws: `rover bench sim` (window_draw_p50_ms).
    with SimWindow(forest, headless=True) as window:
        drawn = []
        for i in range(3):
            window.draw(view(x_m=5 + i * 2.0, steering=math.sin(i)))
            drawn.append(pygame.surfarray.array3d(window.surface).copy())
    assert drawn[0].shape == (1280, 720, 3)
    assert not np.array_equal(drawn[0], drawn[1]) and not np.array_equal(drawn[1], drawn[2])


def test_windowed_mode_under_the_dummy_driver_draws_and_closes(forest, tmp_path):
    window = SimWindow(forest, headless=False, scale=0.5)  # set_mode + flip, as on a desktop
    window.draw(view())
    assert window.events().pressed is not None  # the keyboard state for teleop's cross-check
    assert read_png(window.snapshot(tmp_path / "w.png")).shape == (360, 640, 3)
    window.close()
    assert not pygame.display.get_init()


@pytest.mark.parametrize("scale", [1.0, 0.75, 1.5])
def test_hud_text_keeps_the_dot_on_every_i(forest, scale):
    """Render a known HUD string in each of the window's fonts and find every "i" by the font's
    own metrics: each must show two bands of ink (dot and stem), not one fused bar."""
    from sim.window import glyph_parts

    text = "collisions distance Esc: quit"
    with SimWindow(forest, headless=True, scale=scale) as window:
        for font in window._fonts.values():
            ink = pygame.surfarray.array_alpha(font.render(text, True, (255, 255, 255))).T > 96
            for at in [k for k, ch in enumerate(text) if ch == "i"]:
                x0 = font.size(text[:at])[0]
                minx, maxx, *_ = font.metrics("i")[0]
                column = ink[:, x0 + max(minx, 0) : x0 + maxx]
                rows = column.any(axis=1)
                bands = int(np.count_nonzero(rows[1:] & ~rows[:-1]) + rows[0])
                assert bands == 2, f"'i' at {at} fused at {font.get_height()} px (scale {scale})"
            assert glyph_parts(pygame, font, "l") == 1  # the check itself tells i from l


def test_the_hud_says_rec_paused_or_how_to_record(forest):
    from rover.teleop import NOT_RECORDING
    from sim.window import AMBER, RED

    badges = {}
    with SimWindow(forest, headless=True) as window:
        for word in ("", "REC", "PAUSED", NOT_RECORDING):
            window.draw(view(recording=word))
            hud = pygame.surfarray.array3d(window.surface.subsurface(window.hud_rect))
            badges[word] = (near(hud.swapaxes(0, 1), RED, 10), near(hud.swapaxes(0, 1), AMBER, 10))
    red, amber = badges[""]
    assert badges["REC"][0] > red + 100  # a red REC badge
    assert badges["PAUSED"][1] > amber + 100 and badges["PAUSED"][0] <= red  # amber, not red
    assert amber < badges[NOT_RECORDING][1] < badges["PAUSED"][1]  # amber text, no badge
