"""Fixtures for the driver tests: a virtual stereo rig that photographs a checkerboard, so
calibration runs on real images whose true geometry we know; and the two motor-controller
implementations (the emulator, the firmware in simavr) behind one small surface, for the
contract suite, with the raw wire helpers that talk to them."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import serial
from cobs import cobs

from drivers.avr_sim import AvrConfig, AvrMcu
from drivers.calibration import StereoCalibration, calibrate
from drivers.emulator import EmulatorConfig, MotorOutputs, PtyEmulator
from drivers.protocol import TYPE_DRIVE, FrameDecoder, MotorState, crc16

CALIB_BOARD = (9, 6)  # inner corners
CALIB_SQUARE_M = 0.025
_TEXTURE_PX = 40  # texture pixels per board square
_SUPERSAMPLE = 4  # render this many times larger, then average down: edges antialiased


@dataclass(frozen=True)
class CalibRig:
    """The true geometry of the virtual stereo camera."""

    size: tuple[int, int]
    K1: np.ndarray
    K2: np.ndarray
    R: np.ndarray
    T: np.ndarray
    baseline_m: float

    def render_pair(self, rvec: np.ndarray, centre_m: np.ndarray, noise: np.random.Generator):
        """Left and right gray images of the board, turned by `rvec` about its centre."""
        rotation, _ = cv2.Rodrigues(rvec)
        middle = np.array([(CALIB_BOARD[0] - 1) / 2, (CALIB_BOARD[1] - 1) / 2, 0]) * CALIB_SQUARE_M
        t_left = centre_m - rotation @ middle
        t_right = self.R @ t_left + self.T.ravel()
        r_right, _ = cv2.Rodrigues(self.R @ rotation)
        left = _render_view(self.K1, rvec, t_left, self.size, noise)
        right = _render_view(self.K2, r_right.ravel(), t_right, self.size, noise)
        return left, right


def _board_texture() -> np.ndarray:
    """The printed board: (cols+1) x (rows+1) squares inside a one-square white margin."""
    squares_x, squares_y = CALIB_BOARD[0] + 1, CALIB_BOARD[1] + 1
    cells = (np.add.outer(np.arange(squares_y), np.arange(squares_x)) % 2) * 255
    cells = np.pad(cells, 1, constant_values=255).astype(np.uint8)
    return np.kron(cells, np.ones((_TEXTURE_PX, _TEXTURE_PX), np.uint8))


def _render_view(K, rvec, tvec, size, noise) -> np.ndarray | None:
    """Project the textured board through a pinhole camera; None if it leaves the image."""
    texture = _board_texture()
    # Texture pixel centre (u, v) -> board metres, with inner corner (0, 0) at the origin.
    s = CALIB_SQUARE_M / _TEXTURE_PX
    offset = (0.5 / _TEXTURE_PX - 2) * CALIB_SQUARE_M
    to_board = np.array([[s, 0, offset], [0, s, offset], [0, 0, 1]])
    rotation, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    board_to_image = K @ np.column_stack([rotation[:, 0], rotation[:, 1], tvec])
    f = _SUPERSAMPLE
    to_fine = np.array([[f, 0, (f - 1) / 2], [0, f, (f - 1) / 2], [0, 0, 1]])
    homography = to_fine @ board_to_image @ to_board
    h, w = texture.shape
    outline = cv2.perspectiveTransform(
        np.array([[[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]]]),
        board_to_image @ to_board,
    )[0]
    if outline.min() < 2 or (outline >= np.array(size) - 2).any():
        return None
    fine = cv2.warpPerspective(
        texture,
        homography,
        (size[0] * f, size[1] * f),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=110,
    )
    image = cv2.resize(fine, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    image += noise.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _rig() -> CalibRig:
    size = (320, 240)
    K1 = np.array([[280.0, 0, 161.0], [0, 281.0, 119.0], [0, 0, 1]])
    K2 = np.array([[284.0, 0, 157.0], [0, 284.5, 122.0], [0, 0, 1]])
    R, _ = cv2.Rodrigues(np.array([0.004, -0.02, 0.006]))
    baseline_m = 0.12
    T = -R @ np.array([[baseline_m], [0.0], [0.0]])  # right camera 12 cm right of the left
    return CalibRig(size, K1, K2, R, T, baseline_m)


def _poses(count: int, seed: int):
    """Varied board poses in front of the rig (rotation vector, centre in the left frame)."""
    rng = np.random.default_rng(seed)
    while True:
        tilt = rng.uniform(-0.5, 0.5, 2)
        rvec = np.array([tilt[0], tilt[1], rng.uniform(-0.3, 0.3)])
        centre = np.array(
            [0.06 + rng.uniform(-0.1, 0.1), rng.uniform(-0.06, 0.06), rng.uniform(0.45, 0.75)]
        )
        yield rvec, centre


def _render_pairs(rig: CalibRig, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    noise = np.random.default_rng(seed + 1)
    pairs = []
    for rvec, centre in _poses(count, seed):
        left, right = rig.render_pair(rvec, centre, noise)
        if left is not None and right is not None:
            pairs.append((left, right))
        if len(pairs) == count:
            return pairs
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def calib_board() -> tuple[tuple[int, int], float]:
    """The rendered board: inner corners (columns, rows) and square side in metres."""
    return CALIB_BOARD, CALIB_SQUARE_M


@pytest.fixture(scope="session")
def calib_rig() -> CalibRig:
    """The virtual rig's true intrinsics and extrinsics (baseline 0.12 m, 320x240)."""
    return _rig()


@pytest.fixture(scope="session")
def calib_pairs_dir(tmp_path_factory, calib_rig) -> Path:
    """A folder of 14 rendered checkerboard pairs named left_00NN.png / right_00NN.png."""
    folder = tmp_path_factory.mktemp("calib_pairs")
    for i, (left, right) in enumerate(_render_pairs(calib_rig, 14, seed=7)):
        cv2.imwrite(str(folder / f"left_{i:04d}.png"), left)
        cv2.imwrite(str(folder / f"right_{i:04d}.png"), right)
    return folder


@pytest.fixture(scope="session")
def calib_result(calib_pairs_dir) -> StereoCalibration:
    """The calibration computed from calib_pairs_dir (once per session: it takes a while)."""
    return calibrate(calib_pairs_dir, CALIB_BOARD, CALIB_SQUARE_M)


@pytest.fixture(scope="session")
def calib_heldout_pair(calib_rig) -> tuple[np.ndarray, np.ndarray]:
    """A pair (RGB) the calibration never saw, the board tilted, for rectification checks."""
    noise = np.random.default_rng(99)
    left, right = calib_rig.render_pair(
        np.array([0.3, -0.35, 0.1]), np.array([0.05, 0.02, 0.6]), noise
    )
    return cv2.cvtColor(left, cv2.COLOR_GRAY2RGB), cv2.cvtColor(right, cv2.COLOR_GRAY2RGB)


# ---- the motor controller under test: the Python emulator or the compiled firmware ----


@pytest.fixture(scope="session")
def avr_build() -> None:
    """Build the firmware and the AVR harness once per session (make skips what is fresh)."""
    from drivers.avr_sim import build_firmware

    build_firmware()


@pytest.fixture
def avr_tools(require_tools) -> None:
    """Skip (locally) or fail (CI) without the AVR toolchain and simavr."""
    require_tools("avr-gcc", "avr-nm", "simavr", "cc", "make")


@pytest.fixture(params=["emulator", "avr"])
def mcu(request):
    """One motor controller serving a pty: the Python emulator or the firmware in simavr."""
    if request.param == "avr":
        request.getfixturevalue("avr_tools")
        request.getfixturevalue("avr_build")
    target = _start_target(request.param)
    yield target
    target.stop()


# The motor controllers behind one surface, and the raw wire.


@dataclass
class Target:
    """An MCU on a pty: ``name`` is "emulator" or "avr"; ``impl`` the PtyEmulator or AvrMcu."""

    name: str
    impl: PtyEmulator | AvrMcu

    @property
    def device_path(self) -> str:
        return self.impl.device_path

    @property
    def outputs(self) -> MotorOutputs:
        return self.impl.outputs

    def wait_outputs(self, predicate, timeout_s: float = 5.0) -> MotorOutputs:
        return self.impl.wait_outputs(predicate, timeout_s)

    def applied(self, seq: int) -> MotorOutputs | None:
        return self.impl.applied(seq)

    def last_drive_ns(self) -> int:
        """When the last DRIVE reached the MCU, on its own clock."""
        if isinstance(self.impl, AvrMcu):
            return max(e.t_ns for e in self.impl.events if e.kind == "RX" and e.value == 0)
        return self.impl.outputs.stamp_ns  # the emulator stamps outputs with each DRIVE

    def trip_ns(self) -> int:
        """When the watchdog tripped (after wait_outputs saw it), on the MCU's own clock."""
        if isinstance(self.impl, AvrMcu):
            return max(e.t_ns for e in self.impl.events if e.kind == "MEM" and e.value == 1)
        return self.impl.outputs.stamp_ns

    def stop(self) -> None:
        self.impl.stop()


def _start_target(name: str, **avr: object) -> Target:
    if name == "avr":
        return Target(name, AvrMcu(AvrConfig(build=False, **avr)).start())  # type: ignore[arg-type]
    return Target(name, PtyEmulator(EmulatorConfig()).start())


def _raw_drive(seq: int, steering: int, throttle: int, flags: int = 1, kind: int = TYPE_DRIVE):
    """A DRIVE frame with any field values (thousandths), even out of range or a foreign type."""
    payload = struct.pack("<BHhhB", kind, seq & 0xFFFF, steering, throttle, flags)
    return cobs.encode(payload + crc16(payload).to_bytes(2, "little")) + b"\x00"


def _open_port(target: Target) -> serial.Serial:
    return serial.Serial(target.device_path, 1_000_000, timeout=0.05, write_timeout=0.5)


def _read_states(port: serial.Serial, count: int, timeout_s: float = 5.0) -> list[MotorState]:
    """Read until ``count`` STATE replies came (or the deadline); returns what came."""
    decoder, states = FrameDecoder(), []
    deadline = time.monotonic() + timeout_s
    while len(states) < count and time.monotonic() < deadline:
        states += decoder.feed(port.read(port.in_waiting or 1))
    return states


def _exchange(port: serial.Serial, data: bytes, timeout_s: float = 5.0) -> list[MotorState]:
    """Write ``data`` (ending in one valid DRIVE) and return the STATEs up to its answer."""
    port.write(data)
    return _read_states(port, 1, timeout_s)


@pytest.fixture(scope="session")
def start_target():
    """`start_target("emulator" | "avr", **avr_config)`: an MCU serving a pty (stop it after)."""
    return _start_target


@pytest.fixture(scope="session")
def raw_drive():
    """`raw_drive(seq, steering, throttle, flags=1, kind=TYPE_DRIVE)`: a DRIVE frame with any
    field values (thousandths), even out of range or of a foreign type."""
    return _raw_drive


@pytest.fixture(scope="session")
def open_port():
    """`open_port(target)`: the host's end of the target's pty at 1 Mbaud."""
    return _open_port


@pytest.fixture(scope="session")
def read_states():
    """`read_states(port, count, timeout_s=5)`: STATE replies until `count` came or the deadline."""
    return _read_states


@pytest.fixture(scope="session")
def exchange():
    """`exchange(port, data, timeout_s=5)`: write `data` (ending in one valid DRIVE), return the
    STATEs up to its answer."""
    return _exchange
