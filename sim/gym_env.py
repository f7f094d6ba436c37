"""The simulator as a Gymnasium environment, for users who bring their own learning code.

In-process, no bus. Observation: the stereo pair (``{"left", "right"}``, RGB uint8 HxWx3).
Action: ``[steering, throttle]`` in [-1, 1]. Reward: metres of progress toward the goal, minus
``collision_penalty`` per collision (each collision is an intervention: the vehicle is put
back behind it, as in the regression protocol). Terminated at the goal; truncated at the
scenario's time limit. Needs the ``gym`` extra: ``pip install rover[gym]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.simulation import Simulation


class RoverSimEnv(gym.Env):
    """`gymnasium.Env` around `sim.simulation.Simulation`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        scenario: str = "forest",
        render_mode: str | None = None,
        collision_penalty: float = 5.0,
    ):
        self.sim = Simulation(scenario)
        self.render_mode = render_mode
        self.collision_penalty = collision_penalty
        h, w = self.sim.camera.height_px, self.sim.camera.width_px
        eye = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.observation_space = spaces.Dict({"left": eye, "right": eye})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._images: tuple[np.ndarray, np.ndarray] | None = None

    def _observe(self) -> dict[str, np.ndarray]:
        left, right, _ = self.sim.render()
        self._images = (left, right)
        return {"left": left, "right": right}

    def _info(self) -> dict[str, Any]:
        s = self.sim.state
        return {
            "x_m": s.x_m,
            "y_m": s.y_m,
            "yaw_rad": s.yaw_rad,
            "speed_mps": s.speed_mps,
            "collisions": s.collisions,
            "goal_progress": s.goal_progress,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # a given seed draws that world; otherwise a world from the env's own RNG stream
        world_seed = seed if seed is not None else int(self.np_random.integers(0, 90_000))
        self.sim.reset(seed=world_seed)
        return self._observe(), self._info()

    def step(self, action):
        steering, throttle = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        before = self.sim.state
        state = self.sim.step(float(steering), float(throttle))
        progress = (state.goal_progress - before.goal_progress) * self.sim.world.goal_x_m
        reward = float(progress - (self.collision_penalty if state.collided else 0.0))
        return self._observe(), reward, state.reached_goal, state.timed_out, self._info()

    def render(self):
        if self.render_mode == "rgb_array" and self._images is not None:
            return np.concatenate(self._images, axis=1)
        return None


if "RoverSim-v0" not in gym.registry:
    gym.register("RoverSim-v0", entry_point="sim.gym_env:RoverSimEnv", max_episode_steps=None)
