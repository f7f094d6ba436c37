"""Stereo calibration on rendered checkerboard pairs from a rig whose true geometry we know."""

from __future__ import annotations

import argparse
import re
import shutil

import cv2
import numpy as np
import pytest

from drivers.calibration import (
    Rectifier,
    StereoCalibration,
    add_arguments,
    calibrate,
    detect_board,
    find_pairs,
    run_calibrate,
)
from drivers.camera import StereoFrame
from rover.errors import DataError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rover calibrate")
    add_arguments(parser)
    return parser


def _row_offsets_px(calib_board, left_rgb, right_rgb) -> np.ndarray:
    """|y_left - y_right| of every board corner seen in both images."""
    board, _ = calib_board
    corners = [
        detect_board(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), board)
        for image in (left_rgb, right_rgb)
    ]
    assert corners[0] is not None and corners[1] is not None
    left, right = (c.reshape(-1, 2) for c in corners)
    if np.dot(left[-1] - left[0], right[-1] - right[0]) < 0:
        right = right[::-1]
    return np.abs(left[:, 1] - right[:, 1])


def test_calibration_recovers_the_rig(calib_result, calib_rig):
    assert calib_result.rms_px < 0.5
    assert calib_result.baseline_m == pytest.approx(calib_rig.baseline_m, rel=0.03)
    assert calib_result.image_size == calib_rig.size
    np.testing.assert_allclose(calib_result.K1, calib_rig.K1, rtol=0.02, atol=2.0)
    np.testing.assert_allclose(calib_result.K2, calib_rig.K2, rtol=0.02, atol=2.0)
    assert len(calib_result.pair_names) == 14
    assert calib_result.pair_rms_px.shape == (14, 2)
    assert calib_result.pair_rms_px.max() < 0.5


def test_rectified_rows_line_up(calib_result, calib_heldout_pair, calib_board):
    left, right = calib_heldout_pair
    before = _row_offsets_px(calib_board, left, right)
    frame = StereoFrame(left, right, left_stamp_ns=10, right_stamp_ns=11, index=3)
    rectified = Rectifier(calib_result, (320, 240)).rectify(frame)
    after = _row_offsets_px(calib_board, rectified.left, rectified.right)
    assert before.max() > 2.0  # the rig's eyes really are misaligned
    assert np.median(after) < 0.25
    assert after.max() < 0.6
    assert (rectified.left_stamp_ns, rectified.right_stamp_ns, rectified.index) == (10, 11, 3)
    assert rectified.left.shape == left.shape and rectified.left.dtype == np.uint8


def test_save_and_load_round_trip(calib_result, tmp_path):
    path = tmp_path / "calib.yaml"
    calib_result.save(path)
    text = path.read_text()
    assert "K1: !!opencv-matrix" in text and "baseline_m:" in text  # readable by people
    loaded = StereoCalibration.load(path, size=(320, 240))
    for name in ("K1", "D1", "K2", "D2", "R", "T", "R1", "R2", "P1", "P2", "Q", "pair_rms_px"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(calib_result, name))
    assert loaded.image_size == calib_result.image_size
    assert loaded.rms_px == calib_result.rms_px
    assert loaded.baseline_m == calib_result.baseline_m
    assert loaded.pair_names == calib_result.pair_names
    assert [p.name for p in tmp_path.iterdir()] == ["calib.yaml"]  # no temp file left behind


def _damage(text: str, what: str) -> str:
    if what == "garbage":
        return "name: a\n  bad: indentation\n"
    if what == "foreign":
        return "%YAML:1.0\n---\ncamera_name: left\n"
    if what == "short-K1":
        start = text.index("K1:")
        return text[:start] + text[start:].replace("rows: 3", "rows: 1", 1).replace(
            "cols: 3", "cols: 9", 1
        )
    raise AssertionError(what)


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("garbage", "not OpenCV YAML"),
        ("foreign", "not a rover stereo calibration file"),
        ("short-K1", "K1 must be a finite 3x3 matrix"),
    ],
)
def test_a_bad_calibration_file_raises_one_line_data_error(calib_result, tmp_path, what, message):
    path = tmp_path / "calib.yaml"
    path.write_text(_damage(calib_result.to_yaml(), what))
    with pytest.raises(DataError, match=message) as error:
        StereoCalibration.load(path)
    assert "calib.yaml" in str(error.value) and "\n" not in str(error.value)


def test_a_missing_calibration_file_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="does not exist: run `rover calibrate`"):
        StereoCalibration.load(tmp_path / "nope.yaml")


def test_a_calibration_for_another_image_size_is_refused(calib_result, tmp_path):
    path = tmp_path / "calib.yaml"
    calib_result.save(path)
    with pytest.raises(DataError, match="320x240 images but the camera gives 640x480"):
        StereoCalibration.load(path, size=(640, 480))
    with pytest.raises(DataError, match="320x240"):
        Rectifier(calib_result, (640, 480))


def test_too_few_boards_names_the_pairs_without_one(calib_pairs_dir, tmp_path, calib_board):
    for name in ("left_0000.png", "right_0000.png", "left_0001.png", "right_0001.png"):
        shutil.copy(calib_pairs_dir / name, tmp_path / name)
    blank = np.full((240, 320), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "left_0002.png"), blank)
    shutil.copy(calib_pairs_dir / "right_0002.png", tmp_path / "right_0002.png")
    with pytest.raises(DataError, match=r"only 2 of 3 pairs .* no board in: left_0002.png"):
        calibrate(tmp_path, *calib_board)


def test_swapped_eyes_are_detected(calib_pairs_dir, calib_board):
    swapped = [(right, left) for left, right in find_pairs(calib_pairs_dir)]
    with pytest.raises(DataError, match="left and right are swapped"):
        calibrate(swapped, *calib_board)


def test_an_unmatched_image_is_named(calib_pairs_dir, tmp_path):
    shutil.copy(calib_pairs_dir / "left_0000.png", tmp_path / "left_0000.png")
    with pytest.raises(DataError, match="left_0000.png has no right_0000.png"):
        find_pairs(tmp_path)


def test_cli_prints_a_table_and_writes_the_file(calib_pairs_dir, tmp_path, capsys):
    out = tmp_path / "calib.yaml"
    args = _parser().parse_args(
        [str(calib_pairs_dir), "--out", str(out), "--board", "9x6", "--square-m", "0.025"]
    )
    assert run_calibrate(args) == 0
    printed = capsys.readouterr().out
    assert "pairs used   14 of 14" in printed
    baseline_m = float(re.search(r"baseline +([0-9.]+) m", printed).group(1))
    assert baseline_m == pytest.approx(0.12, rel=0.03)
    assert "RMS error" in printed
    assert StereoCalibration.load(out).baseline_m == pytest.approx(0.12, rel=0.03)


def test_cli_failure_leaves_the_previous_file_untouched(calib_pairs_dir, tmp_path):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for left, right in find_pairs(calib_pairs_dir)[:5]:
        shutil.copy(left, pairs / left.name)
        shutil.copy(right, pairs / right.name)
    out = tmp_path / "calib.yaml"
    out.write_text("previous calibration")
    args = _parser().parse_args([str(pairs), "--out", str(out), "--board", "8x6"])
    with pytest.raises(DataError, match="only 0 of 5 pairs show the 8x6 board"):
        run_calibrate(args)
    assert out.read_text() == "previous calibration"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.yaml", "pairs"]


def test_cli_rejects_a_malformed_board(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["pairs", "--out", "c.yaml", "--board", "9by6"])
    assert "COLUMNSxROWS" in capsys.readouterr().err


def test_writing_into_a_missing_folder_is_a_data_error(calib_result, tmp_path):
    with pytest.raises(DataError, match="folder .* does not exist"):
        calib_result.save(tmp_path / "no" / "calib.yaml")
