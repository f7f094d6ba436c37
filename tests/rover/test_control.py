import dataclasses

import numpy as np
import pytest

from perception.traversability.guard import GuardConfig
from perception.traversability.polar import PolarSummary
from rover import messages as m
from rover.config import load_config
from rover.control import ControlConfig, Controller, GuardedController
from rover.errors import ConfigError

MS = 1_000_000


def _teleop(t_ms, steering=0.0, throttle=0.0, **kw):
    return m.TeleopCommand(
        stamp_ns=t_ms * MS,
        steering=steering,
        throttle=throttle,
        deadman=kw.pop("deadman", True),
        **kw,
    )


def test_follows_teleop_within_slew_limits():
    c = Controller(ControlConfig(steering_slew_per_s=5.0, throttle_slew_per_s=2.0))
    c.on_teleop(_teleop(0), 0)
    c.on_teleop(_teleop(100, steering=1.0, throttle=1.0), 100 * MS)
    out = c.output(100 * MS)
    assert out.steering == pytest.approx(0.5) and out.throttle == pytest.approx(0.2)
    for t in range(120, 400, 20):
        c.on_teleop(_teleop(t, steering=1.0, throttle=1.0), t * MS)
    out = c.output(380 * MS)
    assert out.steering == 1.0 and out.throttle == pytest.approx(0.76)
    assert out.arm and not out.stale and out.source == "teleop"


def test_stale_input_zeroes_throttle_and_disarms():
    c = Controller(ControlConfig(stale_ms=200, throttle_slew_per_s=100))
    c.on_teleop(_teleop(0), 0)
    c.on_teleop(_teleop(20, throttle=0.8), 20 * MS)
    assert c.output(219 * MS).throttle == pytest.approx(0.8)
    out = c.output(221 * MS)
    assert out.throttle == 0.0 and out.stale and not out.arm


def test_estop_and_deadman_release_stop_at_once():
    c = Controller(ControlConfig(throttle_slew_per_s=100))
    c.on_teleop(_teleop(0), 0)
    c.on_teleop(_teleop(20, throttle=0.8), 20 * MS)
    c.on_teleop(_teleop(40, throttle=0.8, deadman=False), 40 * MS)
    assert c.output(40 * MS).throttle == 0.0
    c.on_teleop(_teleop(60, throttle=0.8, estop=True), 60 * MS)
    out = c.output(60 * MS)
    assert out.estop and out.throttle == 0.0 and not out.arm


def test_autopilot_follows_estimate_and_human_takes_over():
    c = Controller(ControlConfig(steering_slew_per_s=100, throttle_slew_per_s=100))
    c.on_teleop(_teleop(0, autopilot=True), 0)
    est = m.SteeringEstimate(
        stamp_ns=20 * MS, frame_seq=5, steering=-0.4, throttle=0.5, source="expert"
    )
    c.on_estimate(est, 20 * MS)  # the first input starts the ramp clock
    c.on_estimate(dataclasses.replace(est, stamp_ns=40 * MS, frame_seq=6), 40 * MS)
    out = c.output(40 * MS)
    assert (out.steering, out.throttle, out.source, out.frame_seq) == (-0.4, 0.5, "expert", 6)
    c.on_teleop(_teleop(60, steering=0.3, throttle=0.1, autopilot=False), 60 * MS)
    c.on_estimate(est, 60 * MS)  # the model keeps talking, but the human has the wheel
    assert c.output(60 * MS).steering == pytest.approx(0.3)


def test_no_source_means_no_motion():
    out = Controller().output(10**9)
    assert out.throttle == 0.0 and not out.arm


def test_config_rejects_bad_values_with_the_key_named():
    with pytest.raises(ConfigError, match="max_throttle"):
        ControlConfig.from_dict({"max_throttle": 2.0})
    with pytest.raises(ConfigError, match=r"\[control\] stale_ms = 'fast'"):
        ControlConfig.from_dict({"stale_ms": "fast"})


def test_robot_toml_parsed_once_with_overrides(tmp_path):
    path = tmp_path / "robot.toml"
    path.write_text('[motor]\nport = "/dev/ttyUSB7"\n[control]\nstale_ms = 150\n')
    cfg = load_config(path, overrides=["control.max_throttle=0.5"])
    assert cfg.motor.port == "/dev/ttyUSB7"
    assert cfg.control.stale_ms == 150 and cfg.control.max_throttle == 0.5
    assert cfg.camera.width == 320  # untouched sections keep working defaults


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[motr]\nport='x'", "unknown section"),
        ("[motor]\nprot='x'", "unknown key"),
        ("[control\n", "not valid TOML"),
    ],
)
def test_bad_config_file_one_clear_error(tmp_path, text, needle):
    path = tmp_path / "robot.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def _polar(free_m: float) -> PolarSummary:
    """Arcs that are all free for `free_m` metres."""
    return PolarSummary(np.linspace(-1, 1, 15).astype(np.float32), np.full(15, free_m, np.float32))


def test_guarded_controller_brakes_at_once_and_crawls_on_stale_maps():
    ctl = GuardedController(ControlConfig(autopilot_without_teleop=True), GuardConfig())
    t = 1_000_000_000
    for _ in range(30):  # ramp up to cruise with a clear view
        t += 33_000_000
        ctl.on_traversability(_polar(25.0), t)
        ctl.on_estimate(m.SteeringEstimate(stamp_ns=t, steering=0.0, throttle=0.66), t)
        assert ctl.output(t).throttle <= 0.66
    assert ctl.output(t).throttle == pytest.approx(0.66)
    ctl.on_traversability(_polar(0.2), t)  # something right at the bumper
    assert ctl.output(t).throttle == 0.0  # no slew ramp on the way down
    ctl.on_traversability(_polar(25.0), t)
    t += 400_000_000  # the map goes stale: crawl until it returns
    ctl.on_estimate(m.SteeringEstimate(stamp_ns=t, steering=0.0, throttle=0.66), t)
    crawl = ctl.output(t).throttle
    assert 0.0 < crawl <= GuardConfig().stale_crawl_mps / GuardConfig().max_speed_mps + 1e-6
