"""The stereo camera: one contract every camera passes, then the OpenCV camera's own behaviour.

Sources are real files made here with cv2.VideoWriter (MJPG .avi) and cv2.imwrite, read by the
real OpenCV capture; the simulator's twin (sim/stereo_camera.py) renders a simulated vehicle's
eyes. Both pass the same contract (CONTRACT_CASES).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.calibration import Rectifier
from drivers.camera import (
    CameraConfig,
    EndOfStream,
    OpenCVStereoCamera,
    StereoCamera,
    open_camera,
)
from rover.errors import ConfigError, DataError, DeviceError
from sim.camera import CameraModel
from sim.policies import Straight
from sim.scenario import Scenario
from sim.simulation import Simulation
from sim.stereo_camera import SimStereoCamera

EYE_W, EYE_H = 160, 120
FRAMES = 5
LEFT_RGB = (200, 0, 40)  # green carries the frame number
RIGHT_RGB = (40, 0, 200)


def _eye(rgb: tuple[int, int, int], i: int) -> np.ndarray:
    red, _, blue = rgb
    return np.full((EYE_H, EYE_W, 3), (red, 20 + 30 * i, blue), np.uint8)


def _write_video(path: Path, images_rgb: list[np.ndarray]) -> None:
    height, width = images_rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG .avi"
    for image in images_rgb:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()


def _write_images(folder: Path, name: str, images_rgb: list[np.ndarray], start: int = 0) -> None:
    folder.mkdir(exist_ok=True)
    for i, image in enumerate(images_rgb):
        cv2.imwrite(str(folder / name.format(start + i)), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _lefts() -> list[np.ndarray]:
    return [_eye(LEFT_RGB, i) for i in range(FRAMES)]


def _rights() -> list[np.ndarray]:
    return [_eye(RIGHT_RGB, i) for i in range(FRAMES)]


def _video_pair(tmp_path: Path, **options) -> OpenCVStereoCamera:
    _write_video(tmp_path / "left.avi", _lefts())
    _write_video(tmp_path / "right.avi", _rights())
    return OpenCVStereoCamera(
        CameraConfig(
            left=str(tmp_path / "left.avi"),
            right=str(tmp_path / "right.avi"),
            width=EYE_W,
            height=EYE_H,
            **options,
        )
    )


def _image_folder(tmp_path: Path, **options) -> OpenCVStereoCamera:
    _write_images(tmp_path / "pairs", "left_{:04d}.png", _lefts())
    _write_images(tmp_path / "pairs", "right_{:04d}.png", _rights())
    raw = {"left": str(tmp_path / "pairs"), "width": EYE_W, "height": EYE_H, **options}
    return OpenCVStereoCamera(CameraConfig.from_dict(raw))


def _side_by_side_video(tmp_path: Path, **options) -> OpenCVStereoCamera:
    both = [np.hstack([left, right]) for left, right in zip(_lefts(), _rights(), strict=True)]
    _write_video(tmp_path / "sbs.avi", both)
    raw = {
        "left": str(tmp_path / "sbs.avi"),
        "side_by_side": True,
        "width": EYE_W,
        "height": EYE_H,
        **options,
    }
    return OpenCVStereoCamera(CameraConfig.from_dict(raw))


def _pattern_from_7(tmp_path: Path, **options) -> OpenCVStereoCamera:
    _write_images(tmp_path / "seq", "l{:03d}.png", _lefts(), start=7)
    _write_images(tmp_path / "seq", "r{:03d}.png", _rights(), start=7)
    return OpenCVStereoCamera(
        CameraConfig(
            left=str(tmp_path / "seq" / "l%03d.png"),
            right=str(tmp_path / "seq" / "r%03d.png"),
            width=EYE_W,
            height=EYE_H,
            **options,
        )
    )


SIM_STEP_S = 0.2  # the simulator's shortest episode is 1 s: five frames at this step


def _simulation(length_m: float = 30.0) -> Simulation:
    """A bare field whose episode ends after FRAMES steps (its 1 s time limit)."""
    field = Scenario.from_dict(
        {
            "name": "field",
            "task": {"length_m": length_m, "width_m": 20.0, "time_limit_s": FRAMES * SIM_STEP_S},
            "border": {"shape": "wall", "materials": ["concrete"]},
        }
    )
    camera = CameraModel(width_px=EYE_W, height_px=EYE_H)
    return Simulation(field, 0, camera=camera, dt_s=SIM_STEP_S)


def _sim_twin(tmp_path: Path) -> SimStereoCamera:
    return SimStereoCamera(_simulation(), Straight())


@dataclass(frozen=True)
class CameraCase:
    """A way to build a camera in a temporary folder, for the contract tests."""

    name: str
    make: Callable[[Path], StereoCamera]
    frames: int | None  # frames before EndOfStream; None for sources that never end


FILE_CASES = [
    CameraCase("video-pair", _video_pair, FRAMES),
    CameraCase("image-folder", _image_folder, FRAMES),
    CameraCase("side-by-side-video", _side_by_side_video, FRAMES),
    CameraCase("pattern-from-7", _pattern_from_7, FRAMES),
]
CONTRACT_CASES = [*FILE_CASES, CameraCase("sim-twin", _sim_twin, FRAMES)]
LOSSLESS = {"image-folder", "pattern-from-7"}


def _read(camera: StereoCamera, count: int) -> list:
    return [camera.read() for _ in range(count)]


def _files_open_under(folder: Path) -> list[str]:
    """Paths under `folder` this process holds open (Linux /proc)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            held.append(target)
    return held


@pytest.fixture(params=CONTRACT_CASES, ids=lambda case: case.name)
def cam_case(request) -> CameraCase:
    return request.param


def test_contract_frames_have_declared_size_and_dtype(cam_case, tmp_path):
    camera = cam_case.make(tmp_path)
    try:
        assert isinstance(camera, StereoCamera)
        assert camera.nominal_fps > 0
        width, height = camera.size
        for frame in _read(camera, min(FRAMES, cam_case.frames or FRAMES)):
            for image in (frame.left, frame.right):
                assert image.shape == (height, width, 3)
                assert image.dtype == np.uint8
                assert image.flags["C_CONTIGUOUS"]
    finally:
        camera.close()


def test_contract_stamps_increase_and_eyes_are_close_in_time(cam_case, tmp_path):
    camera = cam_case.make(tmp_path)
    try:
        frames = _read(camera, min(FRAMES, cam_case.frames or FRAMES))
    finally:
        camera.close()
    lefts = [f.left_stamp_ns for f in frames]
    rights = [f.right_stamp_ns for f in frames]
    assert np.all(np.diff(lefts) > 0) and np.all(np.diff(rights) > 0)
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + len(frames)))
    # a pair is one instant: both eyes grabbed before the next pair's, closer to each other
    # than successive pairs are (how close, < 5 ms: `rover bench camera`, a loaded machine
    # stretches both alike)
    stamps = np.array([lefts, rights]).T  # one row per pair
    assert np.all(stamps[:-1].max(axis=1) < stamps[1:].min(axis=1))
    skews = np.abs(stamps[:, 1] - stamps[:, 0])
    assert np.median(skews) < np.median(np.diff(lefts))


def test_contract_close_releases_and_can_be_repeated(cam_case, tmp_path):
    camera = cam_case.make(tmp_path)
    camera.read()
    camera.close()
    camera.close()
    assert _files_open_under(tmp_path) == []


def test_contract_reading_past_the_end_raises_end_of_stream(cam_case, tmp_path):
    if cam_case.frames is None:
        pytest.skip(f"{cam_case.name} never ends")
    camera = cam_case.make(tmp_path)
    try:
        _read(camera, cam_case.frames)
        with pytest.raises(EndOfStream):
            camera.read()
        with pytest.raises(EndOfStream):
            camera.read()
    finally:
        camera.close()


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda case: case.name)
def test_each_eye_shows_its_own_source_in_rgb_order(case, tmp_path):
    with case.make(tmp_path) as camera:
        frames = _read(camera, FRAMES)
    tolerance = 0 if case.name in LOSSLESS else 12  # MJPG is lossy
    for i, frame in enumerate(frames):
        for image, rgb in ((frame.left, LEFT_RGB), (frame.right, RIGHT_RGB)):
            expected = np.array([rgb[0], 20 + 30 * i, rgb[2]])
            assert np.abs(image[EYE_H // 2, EYE_W // 2].astype(int) - expected).max() <= tolerance


def test_loop_replays_a_file_source_forever(tmp_path):
    with _video_pair(tmp_path, loop=True) as camera:
        frames = _read(camera, 2 * FRAMES + 2)
    assert [f.index for f in frames] == list(range(2 * FRAMES + 2))
    greens = [int(f.left[0, 0, 1]) for f in frames]
    assert greens[FRAMES : 2 * FRAMES] == pytest.approx(greens[:FRAMES], abs=6)
    assert greens[2 * FRAMES] == pytest.approx(greens[0], abs=6)


def test_frames_are_resized_to_the_configured_size(tmp_path):
    _write_images(tmp_path / "pairs", "left_{:04d}.png", _lefts())
    _write_images(tmp_path / "pairs", "right_{:04d}.png", _rights())
    with open_camera(
        CameraConfig.from_dict({"left": str(tmp_path / "pairs"), "width": 80, "height": 60})
    ) as camera:
        frame = camera.read()
    assert camera.size == (80, 60)
    assert frame.left.shape == frame.right.shape == (60, 80, 3)


def test_an_open_video_file_is_held_until_close(tmp_path):
    camera = _video_pair(tmp_path)
    assert len(_files_open_under(tmp_path)) >= 2
    camera.close()
    assert _files_open_under(tmp_path) == []
    with pytest.raises(ValueError):
        camera.read()


@pytest.mark.parametrize(
    ("left", "named"),
    [
        ("{tmp}/missing.avi", "missing.avi"),
        ("/dev/video99", "/dev/video99"),
        ("{tmp}/none_%04d.png", "none_%04d.png"),
    ],
)
def test_a_missing_source_raises_device_error_naming_it(tmp_path, left, named):
    config = CameraConfig(left=left.format(tmp=tmp_path), right=str(tmp_path / "right.avi"))
    with pytest.raises(DeviceError, match="camera 'left'") as error:
        OpenCVStereoCamera(config)
    assert named in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_device_index_raises_device_error_with_the_fix():
    with pytest.raises(DeviceError, match=r"device 99 could not be opened.*v4l2-ctl"):
        OpenCVStereoCamera(CameraConfig(left=99, right=98))


def test_a_file_opencv_cannot_decode_raises_device_error(tmp_path):
    (tmp_path / "left.avi").write_bytes(b"not a video" * 100)
    _write_video(tmp_path / "right.avi", _rights())
    with pytest.raises(DeviceError, match=r"left\.avi could not be opened"):
        OpenCVStereoCamera(
            CameraConfig(left=str(tmp_path / "left.avi"), right=str(tmp_path / "right.avi"))
        )
    assert _files_open_under(tmp_path) == []


def test_an_image_folder_with_a_gap_names_the_missing_number(tmp_path):
    _write_images(tmp_path / "pairs", "left_{:04d}.png", _lefts())
    _write_images(tmp_path / "pairs", "right_{:04d}.png", _rights())
    (tmp_path / "pairs" / "left_0002.png").unlink()
    with pytest.raises(DeviceError, match="image number 2 is missing"):
        OpenCVStereoCamera(CameraConfig.from_dict({"left": str(tmp_path / "pairs")}))


def test_an_image_folder_missing_right_images_is_refused(tmp_path):
    _write_images(tmp_path / "pairs", "left_{:04d}.png", _lefts())
    _write_images(tmp_path / "pairs", "right_{:04d}.png", _rights()[:3])
    with pytest.raises(DeviceError, match="left .* has 5 images, right .* has 3"):
        OpenCVStereoCamera(CameraConfig.from_dict({"left": str(tmp_path / "pairs")}))


def test_a_live_source_that_stops_raises_device_error(tmp_path):
    """A named pipe is live like a device: its end means the producer died, not end of file."""
    pipe = tmp_path / "camera.mjpeg"
    os.mkfifo(pipe)
    sent = 3

    def produce() -> None:
        with open(pipe, "wb") as out:
            for i in range(sent):
                both = np.hstack([_eye(LEFT_RGB, i), _eye(RIGHT_RGB, i)])
                out.write(cv2.imencode(".jpg", cv2.cvtColor(both, cv2.COLOR_RGB2BGR))[1].tobytes())

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    config = CameraConfig(left=str(pipe), right=None, side_by_side=True, width=EYE_W, height=EYE_H)
    with OpenCVStereoCamera(config) as camera:
        frames = _read(camera, sent)
        with pytest.raises(DeviceError, match=f"stopped delivering frames after {sent} frames"):
            camera.read()
    producer.join(timeout=5)
    assert not producer.is_alive()
    assert frames[0].left[0, 0, 0] > 150 and frames[0].right[0, 0, 2] > 150


def test_config_defaults_and_errors():
    config = CameraConfig.from_dict({})
    assert (config.width, config.height, config.fps) == (320, 240, 30.0)
    with pytest.raises(ConfigError, match="unknown key.*'widht'"):
        CameraConfig.from_dict({"widht": 640})
    with pytest.raises(ConfigError, match=r"\[camera\] width = 0"):
        CameraConfig.from_dict({"width": 0})
    with pytest.raises(ConfigError, match=r"\[camera\] fps = 'fast'"):
        CameraConfig.from_dict({"fps": "fast"})
    with pytest.raises(ConfigError, match="right is set but side_by_side"):
        CameraConfig.from_dict({"left": 0, "right": 1, "side_by_side": True})


def test_camera_rectifies_with_its_calibration_file(tmp_path, calib_pairs_dir, calib_result):
    path = tmp_path / "calib.yaml"
    calib_result.save(path)
    raw = {"left": str(calib_pairs_dir), "width": 320, "height": 240}
    with open_camera(CameraConfig.from_dict(raw)) as camera:
        plain = camera.read()
    with open_camera(CameraConfig.from_dict({**raw, "calibration": str(path)})) as camera:
        rectified = camera.read()
    expected = Rectifier(calib_result, (320, 240)).rectify(plain)
    np.testing.assert_array_equal(rectified.left, expected.left)
    np.testing.assert_array_equal(rectified.right, expected.right)
    assert not np.array_equal(rectified.left, plain.left)


def test_camera_refuses_a_calibration_made_at_another_size(tmp_path, calib_pairs_dir, calib_result):
    path = tmp_path / "calib.yaml"
    calib_result.save(path)
    raw = {"left": str(calib_pairs_dir), "width": 160, "height": 120, "calibration": str(path)}
    with pytest.raises(DataError, match="calibration is for 320x240 images .* 160x120"):
        open_camera(CameraConfig.from_dict(raw))


def test_the_sim_twin_shows_what_the_simulator_renders_as_the_vehicle_drives():
    reference = _simulation()
    with SimStereoCamera(_simulation(), Straight(), start_ns=10**9) as camera:
        first, second = camera.read(), camera.read()
    left, right, _ = reference.render()
    np.testing.assert_array_equal(first.left, left)
    np.testing.assert_array_equal(first.right, right)
    assert not np.array_equal(first.left, first.right)  # two eyes, two viewpoints
    assert not np.array_equal(second.left, first.left)  # it drove on between the frames
    assert second.left_stamp_ns - first.left_stamp_ns == round(SIM_STEP_S * 1e9)
    assert first.left_stamp_ns == 10**9 and camera.nominal_fps == pytest.approx(5.0)
