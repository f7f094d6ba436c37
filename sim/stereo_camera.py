"""The stereo camera's simulator twin: the simulated vehicle's eyes behind the StereoCamera
Protocol of drivers/camera.py, so what is written against a camera runs on the simulator too."""

from __future__ import annotations

import numpy as np

from drivers.camera import EndOfStream, StereoFrame
from sim.simulation import Policy, Simulation


class SimStereoCamera:
    """Each read renders the simulation's stereo pair, then advances it one step.

    The vehicle follows ``policy`` (it stands still without one). Frames are stamped on the
    simulation's clock from ``start_ns``, both eyes alike (a rendered pair has no skew), and the
    episode's end (goal reached or time limit) is the end of the stream.
    """

    def __init__(self, sim: Simulation, policy: Policy | None = None, start_ns: int = 0):
        self._sim = sim
        self._policy = policy
        self._start_ns = int(start_ns)
        self._index = 0
        self._closed = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of each eye's image in pixels."""
        return self._sim.camera.width_px, self._sim.camera.height_px

    @property
    def nominal_fps(self) -> float:
        """One frame per simulation step."""
        return 1.0 / self._sim.dt_s

    def read(self) -> StereoFrame:
        """The pair seen now; EndOfStream once the episode is over."""
        if self._closed:
            raise ValueError("read() on a closed camera")
        if self._sim.done:
            raise EndOfStream(f"end of the simulated episode after {self._index} frames")
        left, right, _ = self._sim.render()
        stamp_ns = self._start_ns + round(self._sim.state.time_s * 1e9)
        frame = StereoFrame(
            np.ascontiguousarray(left), np.ascontiguousarray(right), stamp_ns, stamp_ns, self._index
        )
        command = self._policy.act(self._sim.observation()) if self._policy else (0.0, 0.0)
        self._sim.step(*command)
        self._index += 1
        return frame

    def close(self) -> None:
        """Stop reading; safe to call twice (the simulation holds no device or file)."""
        self._closed = True

    def __enter__(self) -> SimStereoCamera:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
