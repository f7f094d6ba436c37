import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
from gymnasium.utils.env_checker import check_env  # noqa: E402

from sim.gym_env import RoverSimEnv  # noqa: E402


def test_env_passes_gymnasium_checker():
    env = gym.make("RoverSim-v0", scenario="open", render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)


def test_driving_forward_earns_progress_and_seeds_reproduce():
    env = RoverSimEnv("open")
    obs, _ = env.reset(seed=3)
    assert obs["left"].shape == (240, 320, 3) and obs["left"].dtype == np.uint8
    total = sum(env.step(np.array([0.0, 0.6], np.float32))[1] for _ in range(30))
    assert total > 0.5  # about 1 m in one second at cruise
    again, _ = RoverSimEnv("open").reset(seed=3)
    np.testing.assert_array_equal(again["left"], obs["left"])
