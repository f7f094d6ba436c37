"""Stereo calibration from checkerboard pairs, its YAML file, and fast rectification.

The file is OpenCV FileStorage YAML, the format OpenCV's own stereo samples and most robotics
users already read: any OpenCV (C++ or Python) loads it with cv::FileStorage, matrices keep
their shape and type, and a person can read it. Keys: K1, D1, K2, D2, R, T, R1, R2, P1, P2, Q
(OpenCV's names and conventions), plus image_width, image_height, rms_px and baseline_m.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from rover.errors import DataError

if TYPE_CHECKING:
    from drivers.camera import StereoFrame

FORMAT = "rover-stereo-calibration"
VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MATRIX_SHAPES = {**dict.fromkeys(("K1", "K2", "R", "R1", "R2"), (3, 3)), "T": (3, 1)}
_MATRIX_SHAPES.update(P1=(3, 4), P2=(3, 4), Q=(4, 4))
_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)  # the models cv2.calibrateCamera can produce
_RECALIBRATE = "recalibrate with `rover calibrate`"
_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 100, 1e-6)


@dataclass(frozen=True, eq=False)
class StereoCalibration:
    """Intrinsics, extrinsics and rectification of a stereo pair, in OpenCV's conventions.

    Right-eye points are ``R @ X_left + T`` (metres); P1/P2/Q describe the rectified pair.
    """

    image_size: tuple[int, int]  # (width, height) the calibration holds for
    K1: np.ndarray
    D1: np.ndarray
    K2: np.ndarray
    D2: np.ndarray
    R: np.ndarray
    T: np.ndarray
    R1: np.ndarray
    R2: np.ndarray
    P1: np.ndarray
    P2: np.ndarray
    Q: np.ndarray
    rms_px: float
    pair_rms_px: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))
    pair_names: tuple[str, ...] = ()

    @property
    def baseline_m(self) -> float:
        """Distance between the two optical centres."""
        return float(np.linalg.norm(self.T))

    @property
    def focal_px(self) -> float:
        """Focal length of the rectified pair: depth_m = focal_px * baseline_m / disparity_px."""
        return float(self.P1[0, 0])

    def check_size(self, size: tuple[int, int], where: str = "the camera") -> None:
        """DataError unless `size` (w, h) is the size this calibration was made at."""
        if tuple(size) != tuple(self.image_size):
            cw, ch = self.image_size
            raise DataError(
                f"calibration is for {cw}x{ch} images but {where} gives {size[0]}x{size[1]}: "
                f"set [camera] width = {cw}, height = {ch}, or recalibrate at that size"
            )

    def to_yaml(self) -> str:
        """The calibration as OpenCV FileStorage YAML text."""
        fs = cv2.FileStorage("calibration.yaml", cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY)
        fs.writeComment("rover stereo calibration (OpenCV FileStorage; see docs/calibration.md)")
        fs.write("format", FORMAT)
        fs.write("version", VERSION)
        fs.write("image_width", int(self.image_size[0]))
        fs.write("image_height", int(self.image_size[1]))
        fs.write("rms_px", float(self.rms_px))
        fs.write("baseline_m", self.baseline_m)
        for name in ("K1", "D1", "K2", "D2", "R", "T", "R1", "R2", "P1", "P2", "Q"):
            fs.write(name, np.asarray(getattr(self, name), dtype=np.float64))
        if len(self.pair_names):
            fs.writeComment("per pair RMS reprojection error, px: one row per pair, left right")
            fs.write("pair_rms_px", np.asarray(self.pair_rms_px, dtype=np.float64))
            fs.startWriteStruct("pair_names", cv2.FileNode_SEQ)
            for name in self.pair_names:
                fs.write("", name)
            fs.endWriteStruct()
        return fs.releaseAndGetString()

    def save(self, path: str | Path) -> None:
        """Write atomically: readers see the old file or the whole new one, never half."""
        _write_atomic(Path(path), self.to_yaml())

    @classmethod
    def load(cls, path: str | Path, size: tuple[int, int] | None = None) -> StereoCalibration:
        """Read a file written by save(); DataError names what is wrong. Checks `size` if given."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise DataError(
                f"calibration file {path} does not exist: run `rover calibrate` "
                "or fix [camera] calibration in robot.toml"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(
                f"calibration file {path} cannot be read ({exc}): "
                "point at a file written by `rover calibrate`"
            ) from None
        calibration = cls.from_yaml(text, str(path))
        if size is not None:
            calibration.check_size(size)
        return calibration

    @classmethod
    def from_yaml(cls, text: str, name: str = "calibration") -> StereoCalibration:
        """Parse FileStorage YAML text; DataError when it is not a rover calibration."""
        try:
            fs = cv2.FileStorage()  # open() raises cv2.error; the constructor a SystemError
            fs.open(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
            root = fs.root()
            if not root.isMap() or root.getNode("format").string() != FORMAT:
                raise DataError(f"{name} is not a rover stereo calibration file: {_RECALIBRATE}")
            keys = (*_MATRIX_SHAPES, "D1", "D2")
            matrices = {key: _read_matrix(fs, key, name) for key in keys}
            size = (int(fs.getNode("image_width").real()), int(fs.getNode("image_height").real()))
            rms_px = fs.getNode("rms_px").real()
            pair_rms = fs.getNode("pair_rms_px")
            names = fs.getNode("pair_names")
            pair_rms_px = pair_rms.mat() if pair_rms.isMap() else np.zeros((0, 2))
            pair_names = tuple(names.at(i).string() for i in range(names.size()))
        except cv2.error:
            raise DataError(f"{name} is not OpenCV YAML: {_RECALIBRATE}") from None
        if min(size) <= 0:
            raise DataError(f"{name} has no image_width/image_height: {_RECALIBRATE}")
        return cls(size, **matrices, rms_px=rms_px, pair_rms_px=pair_rms_px, pair_names=pair_names)


class Rectifier:
    """Undistorts and row-aligns stereo pairs with maps computed once."""

    def __init__(self, calibration: StereoCalibration, size: tuple[int, int]):
        calibration.check_size(size)
        self.calibration = calibration
        self._maps = [
            cv2.initUndistortRectifyMap(K, D, R, P, tuple(size), cv2.CV_16SC2)
            for K, D, R, P in (
                (calibration.K1, calibration.D1, calibration.R1, calibration.P1),
                (calibration.K2, calibration.D2, calibration.R2, calibration.P2),
            )
        ]

    def rectify_pair(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rectified copies of two images: a scene point lands on the same row in both."""
        (l1, l2), (r1, r2) = self._maps
        return (
            cv2.remap(left, l1, l2, cv2.INTER_LINEAR),
            cv2.remap(right, r1, r2, cv2.INTER_LINEAR),
        )

    def rectify(self, frame: StereoFrame) -> StereoFrame:
        """The same frame (stamps, index) with both eyes rectified."""
        left, right = self.rectify_pair(frame.left, frame.right)
        return dataclasses.replace(frame, left=left, right=right)


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Pairs left_<name>.<ext> / right_<name>.<ext> in a folder, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"calibration folder {folder} does not exist: capture pairs first (docs/calibration.md)"
        )
    images = {p.name: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    lefts = {n[len("left_") :]: p for n, p in images.items() if n.startswith("left_")}
    rights = {n[len("right_") :]: p for n, p in images.items() if n.startswith("right_")}
    if not lefts and not rights:
        raise DataError(
            f"{folder} has no left_*.png / right_*.png images: capture pairs named "
            "left_0000.png, right_0000.png, ... (docs/calibration.md)"
        )
    unmatched = sorted(set(lefts) ^ set(rights))
    if unmatched:
        side = "left" if unmatched[0] in lefts else "right"
        other = "right" if side == "left" else "left"
        raise DataError(
            f"{folder}/{side}_{unmatched[0]} has no {other}_{unmatched[0]}: "
            f"every left image needs its right image ({len(unmatched)} unmatched)"
        )
    return [(lefts[key], rights[key]) for key in sorted(lefts)]


def calibrate(
    pairs: Sequence[tuple[str | Path, str | Path]] | str | Path,
    board: tuple[int, int] = (9, 6),
    square_m: float = 0.025,
    *,
    min_pairs: int = 5,
    alpha: float = 0.0,
    progress: bool = False,
) -> StereoCalibration:
    """Calibrate a stereo pair from checkerboard image pairs (a list, or a folder of them).

    `board` counts inner corners (columns, rows); `alpha` 0 crops the rectified images to valid
    pixels, 1 keeps every source pixel.
    """
    if isinstance(pairs, str | Path):
        pairs = find_pairs(pairs)
    pairs = [(Path(left), Path(right)) for left, right in pairs]
    size, found, failed = _detect_all(pairs, board, progress)
    if len(found) < min_pairs:
        listed = ", ".join(failed[:6]) + (f" and {len(failed) - 6} more" if len(failed) > 6 else "")
        raise DataError(
            f"only {len(found)} of {len(pairs)} pairs show the {board[0]}x{board[1]} board in both "
            f"images (need {min_pairs}); no board in: {listed or 'none'}: check --board counts "
            "inner corners, and that the whole board is in view, sharp and well lit"
        )
    board_points = [_board_points(board, square_m)] * len(found)
    left_points = [corners for _, corners, _ in found]
    right_points = [corners for _, _, corners in found]
    # Each eye alone first: a good starting guess, which the joint fit then refines.
    _, K1, D1, _, _ = cv2.calibrateCamera(board_points, left_points, size, None, None)
    _, K2, D2, _, _ = cv2.calibrateCamera(board_points, right_points, size, None, None)
    points = (board_points, left_points, right_points)
    guess = (K1, D1, K2, D2, size, np.eye(3), np.zeros((3, 1)))
    rms, K1, D1, K2, D2, R, T, *_, per_pair = cv2.stereoCalibrateExtended(
        *points, *guess, flags=cv2.CALIB_USE_INTRINSIC_GUESS, criteria=_CRITERIA
    )
    if T[0, 0] > 0 and abs(T[0, 0]) > abs(T[1, 0]):
        raise DataError(
            "the right camera sits left of the left camera: left and right are "
            "swapped; swap the image names, or [camera] left and right, and retake"
        )
    flags = cv2.CALIB_ZERO_DISPARITY
    rectified = cv2.stereoRectify(K1, D1, K2, D2, size, R, T, flags=flags, alpha=alpha)[:5]
    pair_rms_px = np.asarray(per_pair, dtype=np.float64).reshape(-1, 2)
    names = tuple(name for name, _, _ in found)
    return StereoCalibration(size, K1, D1, K2, D2, R, T, *rectified, float(rms), pair_rms_px, names)


def detect_board(gray: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner corners (N x 1 x 2 float32, row by row) of the board, or None."""
    # No CALIB_CB_FAST_CHECK: it rejected 20 of 28 good small boards in our tests.
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(gray, board, flags=flags)
    if not found:
        return None
    grid = corners.reshape(board[1], board[0], 2)
    spacing = min(
        np.linalg.norm(np.diff(grid, axis=0), axis=2).min(),
        np.linalg.norm(np.diff(grid, axis=1), axis=2).min(),
    )
    # The search window must stay inside the squares around a corner, or it drifts to another.
    half = int(np.clip(spacing * 0.4, 2, 11))
    return cv2.cornerSubPix(gray, corners, (half, half), (-1, -1), _CRITERIA)


def _detect_all(
    pairs: list[tuple[Path, Path]], board: tuple[int, int], progress: bool
) -> tuple[tuple[int, int], list[tuple[str, np.ndarray, np.ndarray]], list[str]]:
    """Corners per pair; (image size, [(pair name, left, right)], [names of failed pairs])."""
    size: tuple[int, int] | None = None
    found, failed = [], []
    for left_path, right_path in tqdm(pairs, desc="finding boards", disable=not progress):
        corners = []
        for path in (left_path, right_path):
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise DataError(f"{path} cannot be read as an image: remove it or retake it")
            here = (gray.shape[1], gray.shape[0])
            if min(here) < 64:
                raise DataError(
                    f"{path} is only {here[0]}x{here[1]} pixels: calibrate with "
                    "images at the camera's size (e.g. 320x240)"
                )
            if size is not None and here != size:
                raise DataError(
                    f"{path} is {here[0]}x{here[1]} but {pairs[0][0].name} is "
                    f"{size[0]}x{size[1]}: capture every pair at one size"
                )
            size = here
            corners.append(detect_board(gray, board))
        if corners[0] is None or corners[1] is None:
            failed.append(left_path.name if corners[0] is None else right_path.name)
            continue
        left, right = corners
        # The detector may number a board from the opposite corner in one eye; both eyes must
        # agree on which physical corner is first.
        if np.dot(left[-1, 0] - left[0, 0], right[-1, 0] - right[0, 0]) < 0:
            right = right[::-1].copy()
        found.append((left_path.name, left, right))
    if size is None:
        raise DataError("no calibration pairs given: capture pairs first (docs/calibration.md)")
    return size, found, failed


def _board_points(board: tuple[int, int], square_m: float) -> np.ndarray:
    """The board's inner corners in its own plane (metres), in the detector's row order."""
    columns, rows = board
    grid = np.zeros((rows * columns, 1, 3), np.float32)
    grid[:, 0, :2] = np.mgrid[0:columns, 0:rows].T.reshape(-1, 2) * square_m
    return grid


def _read_matrix(fs: cv2.FileStorage, key: str, name: str) -> np.ndarray:
    """A matrix of the expected shape (D1/D2: any distortion model OpenCV makes), or DataError."""
    node = fs.getNode(key)
    matrix = node.mat() if node.isMap() else None
    if key in ("D1", "D2"):
        ok = matrix is not None and matrix.size in _DISTORTION_LENGTHS and 1 in matrix.shape
        matrix, wanted = (matrix.reshape(1, -1) if ok else matrix), "1xN distortion"
    else:
        ok = matrix is not None and matrix.shape == _MATRIX_SHAPES[key]
        wanted = "{}x{}".format(*_MATRIX_SHAPES[key])
    if not ok or not np.all(np.isfinite(matrix)):
        got = "missing" if matrix is None else f"shape {matrix.shape}"
        raise DataError(f"{name}: {key} must be a finite {wanted} matrix ({got}): {_RECALIBRATE}")
    return matrix.astype(np.float64)


def _write_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename: a crash leaves the old file or the new."""
    if not path.parent.is_dir():
        raise DataError(
            f"cannot write {path}: folder {path.parent} does not exist; create it "
            "or choose another --out"
        )
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself survive a power cut
    finally:
        os.close(dir_fd)


def _board_arg(text: str) -> tuple[int, int]:
    columns, sep, rows = text.lower().partition("x")
    if not sep or not columns.isdigit() or not rows.isdigit() or min(int(columns), int(rows)) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: write inner corners as COLUMNSxROWS, e.g. 9x6")
    return int(columns), int(rows)


def _positive_float(text: str) -> float:
    value = float(text) if text.replace(".", "", 1).isdigit() else -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of metres")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `rover calibrate PAIRS_DIR --out calib.yaml [--board 9x6] [--square-m M]`."""
    add = parser.add_argument
    add("pairs_dir", metavar="PAIRS_DIR", type=Path, help="folder of left_*/right_* board pairs")
    add("--out", type=Path, required=True, help="calibration file to write (YAML)")
    add("--board", type=_board_arg, default=(9, 6), help="inner corners, default 9x6")
    add("--square-m", type=_positive_float, default=0.025, help="square side, default 0.025 m")


def run_calibrate(args: argparse.Namespace) -> int:
    """`rover calibrate`: calibrate, print a small table, write the file atomically."""
    pairs = find_pairs(args.pairs_dir)
    calibration = calibrate(pairs, args.board, args.square_m, progress=True)
    used = set(calibration.pair_names)
    skipped = [left.name for left, _ in pairs if left.name not in used]
    pair_rms = np.sqrt(np.mean(np.square(calibration.pair_rms_px), axis=1))
    worst = np.argsort(pair_rms)[::-1][:3]
    width, height = calibration.image_size
    no_board = f" (no board: {', '.join(skipped[:4])})" if skipped else ""
    rows = [
        ("pairs used", f"{len(used)} of {len(pairs)}{no_board}"),
        ("image size", f"{width}x{height}"),
        ("RMS error", f"{calibration.rms_px:.3f} px  ({_verdict(calibration.rms_px)})"),
        ("baseline", f"{calibration.baseline_m:.4f} m"),
        ("focal", f"{calibration.focal_px:.1f} px (rectified)"),
        (
            "worst pairs",
            ", ".join(f"{calibration.pair_names[i]} {pair_rms[i]:.2f} px" for i in worst),
        ),
    ]
    for label, value in rows:
        print(f"{label:<12} {value}")
    calibration.save(args.out)
    print(f"{'wrote':<12} {args.out}")
    return 0


def _verdict(rms_px: float) -> str:
    if rms_px < 0.3:
        return "excellent"
    if rms_px < 0.5:
        return "good"
    if rms_px < 1.0:
        return "usable; retake the worst pairs"
    return "poor: retake the pairs"
