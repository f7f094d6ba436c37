"""Fixtures every test package may use: system tools, a private X server, command-line
arguments, hand-placed simulator scenes and tiny perception inputs."""

import argparse
import dataclasses
import os
import shutil
import time
from collections.abc import Callable

import numpy as np
import pytest

# Headless everywhere: pygame in this process and in every node it starts draws off-screen.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

from rover.bench.xkeys import xvfb as start_xvfb  # noqa: E402
from sim.geometry import Obstacle  # noqa: E402
from sim.scenario import Scenario  # noqa: E402
from sim.world import generate_world  # noqa: E402

TINY_HW = (128, 128)  # the smallest camera frames the steering nets take


@pytest.fixture
def require_tools():
    """`require_tools("Xvfb", "xdotool")`: skip where a system tool is missing, but fail in CI
    (CI=true), where `make test` installs them (`make sysdeps`) and a skip would hide a gap."""

    def _require(*names: str) -> None:
        missing = [n for n in names if shutil.which(n) is None]
        if not missing:
            return
        message = f"missing system tool(s) {', '.join(missing)}: run `make sysdeps` (Debian, root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)

    return _require


@pytest.fixture
def xvfb(require_tools):
    """A private X server (a real Xvfb); its display name, ":N"."""
    require_tools("Xvfb", "xdotool")
    with start_xvfb() as display:
        yield display


@pytest.fixture(scope="session")
def cli_args():
    """`cli_args(module, argv)`: the namespace a command module's own parser gives for argv."""

    def _parse(module, argv: list[str]) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        return parser.parse_args(argv)

    return _parse


@pytest.fixture(scope="session")
def wait_until():
    """`wait_until(predicate, timeout_s, what)`: poll until `predicate()` is truthy and return
    it; AssertionError naming `what` after the deadline."""

    def _wait(predicate: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.02):
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
            time.sleep(poll_s)  # polling a condition with a deadline, not a fixed wait

    return _wait


# Hand-placed simulator scenes (the vehicle starts at the origin facing +x).


@pytest.fixture(scope="session")
def tree():
    """`tree(x, y, radius=0.2, height=6.0)`: a trunk at (x, y)."""

    def _tree(x: float, y: float, radius: float = 0.2, height: float = 6.0) -> Obstacle:
        return Obstacle("tree", x, y, 0.0, radius, 2 * radius, 2 * radius, height, "bark_brown")

    return _tree


@pytest.fixture(scope="session")
def rock():
    """`rock(x, y, radius=0.3, height=0.3)`: a low rock at (x, y)."""

    def _rock(x: float, y: float, radius: float = 0.3, height: float = 0.3) -> Obstacle:
        return Obstacle("rock", x, y, 0.0, radius, 2 * radius, 2 * radius, height, "rock_grey")

    return _rock


@pytest.fixture(scope="session")
def box():
    """`box(x, y, yaw, length, width, height=1.0)`: an oriented cardboard box at (x, y)."""

    def _box(x: float, y: float, yaw: float, length: float, width: float, height: float = 1.0):
        radius = (length**2 + width**2) ** 0.5 / 2
        return Obstacle("box", x, y, yaw, radius, length, width, height, "cardboard")

    return _box


@pytest.fixture(scope="session")
def scene():
    """`scene(obstacles, camera=None)`: a Simulation at its start on a bare textured field with a
    far fence, whose world holds exactly `obstacles`."""
    from sim.simulation import Simulation

    field = Scenario.from_dict(
        {
            "name": "field",
            "task": {"length_m": 40.0, "width_m": 40.0, "time_limit_s": 30.0},
            "border": {"shape": "wall", "materials": ["concrete"]},
            "lighting": {"sky": "clear", "fog_distance_m": 40.0},
        }
    )

    def _scene(obstacles: list[Obstacle], camera=None) -> Simulation:
        world = dataclasses.replace(generate_world(field, 0), obstacles=tuple(obstacles))
        return Simulation.from_world(world, camera=camera)

    return _scene


# Tiny perception inputs.


@pytest.fixture(scope="session")
def stereo_geometry():
    """The stereo geometry of the simulator's default camera rig."""
    from perception.stereo import StereoGeometry

    return StereoGeometry.from_camera_model()


@pytest.fixture(scope="session")
def tiny_segmenter():
    """A traversability segmenter config small enough to train in a test."""
    from perception.traversability.model import SegmenterConfig

    return SegmenterConfig(input_width_px=64, input_height_px=48, width1=8, width2=12, width3=16)


@pytest.fixture(scope="session")
def tiny_config():
    """`tiny_config(arch="dave", throttle=True, bins=0)`: a steering model on 128x128 frames,
    pooled to 64x64 per eye (the smallest size the nets take). Plain regression by default: its
    answers depend on the frame only, not on the last one."""
    from perception.steering.model import SteeringModelConfig

    def _config(arch: str = "dave", throttle: bool = True, bins: int = 0) -> SteeringModelConfig:
        return SteeringModelConfig(
            arch=arch,
            image_height_px=TINY_HW[0],
            image_width_px=TINY_HW[1],
            crop_top_px=0,
            crop_bottom_px=0,
            downsample=2,
            predict_throttle=throttle,
            dropout=0.0,
            steering_bins=bins,
        )

    return _config


# A "bar" frame is noise with one bright vertical bar (an obstacle); the right eye sees it a few
# pixels to the left (disparity). The demonstrated steering turns away from the bar, so a model
# that learns anything at all must read the bar's position.


def _bar_frames(x_frac: float, rng: np.random.Generator, hw=TINY_HW):
    h, w = hw
    left = rng.integers(20, 70, (h, w, 3), dtype=np.uint8)
    right = rng.integers(20, 70, (h, w, 3), dtype=np.uint8)
    centre, half = int(x_frac * w), max(3, w // 16)
    left[:, max(0, centre - half) : centre + half] = (230, 200, 60)
    shifted = centre - 4
    right[:, max(0, shifted - half) : max(0, shifted + half)] = (230, 200, 60)
    return left, right


def _bar_steering(x_frac: float) -> float:
    return float(np.clip(-1.6 * (0.5 - x_frac), -1.0, 1.0))


@pytest.fixture(scope="session")
def bar_frames():
    """`bar_frames(x_frac, rng, hw=(128, 128))`: left and right frames with a bar centred at
    `x_frac` of the width."""
    return _bar_frames


@pytest.fixture(scope="session")
def bar_steering():
    """`bar_steering(x_frac)`: steer away from the bar (bar on the left: turn right, negative)."""
    return _bar_steering


@pytest.fixture(scope="session")
def bar_session():
    """`bar_session(n, name, seed=0, hw=(128, 128))`: `n` DemoSamples of one session; the bar
    wanders smoothly, as in driving."""
    from perception.steering.demos import DemoSample

    def _session(n: int, name: str, seed: int = 0, hw=TINY_HW) -> list[DemoSample]:
        rng = np.random.default_rng(seed)
        x = np.clip(0.5 + np.cumsum(rng.normal(0, 0.04, n)), 0.05, 0.95)
        out = []
        for i, xf in enumerate(x):
            left, right = _bar_frames(float(xf), rng, hw)
            throttle = 0.4 + 0.2 * abs(xf - 0.5)
            steering = _bar_steering(xf)
            out.append(DemoSample(left, right, steering, throttle, i * 33_333_333, i, name, i))
        return out

    return _session
