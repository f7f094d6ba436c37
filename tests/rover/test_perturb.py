"""DART perturbations: bounded, smooth, only while a driver may be perturbed, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from rover.errors import ConfigError
from rover.perturb import PerturbConfig, Perturber, parse_perturb, perturbed

PERIOD_NS = 33_333_333


def _offsets(cfg: PerturbConfig, frames: int, allowed=lambda i: True) -> np.ndarray:
    p = Perturber(cfg)
    return np.array([p.update(i * PERIOD_NS, allowed(i)) for i in range(frames)])


def test_spans_come_at_the_rate_stay_within_the_size_and_change_smoothly():
    cfg = PerturbConfig(rate_hz=0.3, size=0.5, duration_s=1.0, seed=4)
    off = _offsets(cfg, 30 * 600)  # 10 minutes
    assert np.abs(off).max() <= 0.5 + 1e-9
    assert np.abs(off).max() > 0.35  # spans reach most of their size
    assert np.abs(np.diff(off)).max() < 0.1  # no step a driver could not follow
    starts = np.flatnonzero((off[1:] != 0) & (off[:-1] == 0))
    assert 0.2 * 600 < len(starts) < 0.4 * 600  # ~0.3 spans a second
    share = np.mean(off != 0)
    assert 0.15 < share < 0.4  # ~rate x duration of the time


def test_no_perturbation_when_not_allowed_or_off():
    cfg = PerturbConfig(rate_hz=2.0, size=0.5, seed=1)
    assert not _offsets(cfg, 900, allowed=lambda i: False).any()
    assert not _offsets(PerturbConfig(), 900).any()  # rate 0: off
    p = Perturber(cfg)
    assert not p.allowed(throttle=0.5, deadman=False)  # the deadman is released
    assert not p.allowed(throttle=0.9)  # above the throttle cap
    assert not p.allowed(throttle=0.5, estop=True)
    assert p.allowed(throttle=0.5)


def test_a_span_ends_at_once_when_the_driver_lets_go():
    cfg = PerturbConfig(rate_hz=5.0, size=0.5, seed=2)
    off = _offsets(cfg, 300, allowed=lambda i: i < 150)
    assert off[:150].any() and not off[150:].any()


def test_the_same_stamps_give_the_same_perturbations():
    cfg = PerturbConfig(rate_hz=0.5, size=0.4, seed=7)
    assert np.array_equal(_offsets(cfg, 3000), _offsets(cfg, 3000))
    p = Perturber(cfg)  # a re-sent input (same stamp) does not advance it
    values = [p.update(i * PERIOD_NS, True) for i in range(200)]
    assert p.update(199 * PERIOD_NS, True) == values[-1]


def test_the_sent_command_is_clipped_and_says_what_it_really_added():
    assert perturbed(0.9, 0.4) == pytest.approx((1.0, 0.1))
    assert perturbed(-0.2, 0.3) == pytest.approx((0.1, 0.3))


def test_perturb_flag_parses_rate_and_size_and_names_the_fix():
    assert parse_perturb("0.3,0.5") == (0.3, 0.5)
    assert parse_perturb("0.2") == (0.2, PerturbConfig.size)
    for bad in ("fast", "0.3,2", "-1,0.5"):
        with pytest.raises(ConfigError, match="--perturb|perturb"):
            parse_perturb(bad)
