"""Stereo geometry: disparity, 3-D points, a robust ground plane and per-pixel labels.

The labels are the self-supervision of the traversability segmenter (LAGR, Hadsell et al.
2009): ground where points lie on the fitted plane, obstacle where they stand above it (down
to the "footline" where the obstacle meets the ground), unknown where stereo has no answer
or is beyond its trusted range. Pixels above the horizon that match beyond
``distant_m`` (sky, haze) are "distant": nothing to drive into in that direction. Camera
coordinates: x right, y down, z forward, metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from drivers.stereo_rig import DEFAULT_RIG
from rover.config import dataclass_from_dict
from rover.errors import ConfigError, DataError

UNKNOWN, GROUND, OBSTACLE, DISTANT = 0, 1, 2, 3
LABEL_NAMES = ("unknown", "ground", "obstacle", "distant")


@dataclass(frozen=True)
class StereoGeometry:
    """A rectified pair's intrinsics, baseline and the calibrated camera height over the ground.

    ``pitch_rad`` tilts the nominal ground plane (positive looks down); the simulator renders
    pitch as a shifted principal point, so its geometry has ``pitch_rad = 0``.
    """

    fx_px: float = 160.0
    fy_px: float = 160.0
    cx_px: float = 159.5
    cy_px: float = 105.5
    baseline_m: float = 0.12
    height_m: float = 0.25
    pitch_rad: float = 0.0
    width_px: int = 320
    height_px: int = 240

    @classmethod
    def from_camera_model(cls, camera: Any = None) -> StereoGeometry:
        """A pinhole rig (``drivers.stereo_rig.StereoRig``, the simulator's camera is one);
        default: the robot's default rig."""
        c = DEFAULT_RIG if camera is None else camera
        return cls(
            c.fx_px,
            c.fy_px,
            c.cx_px,
            c.cy_px,
            c.baseline_m,
            c.height_m,
            0.0,
            c.width_px,
            c.height_px,
        )

    @classmethod
    def from_calibration(
        cls, calibration: Any, height_m: float, pitch_rad: float = 0.0
    ) -> StereoGeometry:
        """A rectified pair from ``drivers.calibration.StereoCalibration``; the camera's height
        over the ground and its pitch are not in a calibration and come from the config."""
        (fx, _, cx), (_, fy, cy) = calibration.P1[0, :3], calibration.P1[1, :3]
        w, h = calibration.image_size
        intrinsics = (float(fx), float(fy), float(cx), float(cy))
        return cls(*intrinsics, calibration.baseline_m, height_m, pitch_rad, int(w), int(h))

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> tuple[StereoGeometry, str]:
        """Geometry from a recording's metadata: a ``stereo_geometry`` table, else the attached
        camera calibration (height and pitch from the recorded [traversability] config), else
        the robot's default rig. Returns (geometry, where it came from)."""
        meta = metadata or {}
        raw = meta.get("stereo_geometry")
        if raw is not None:
            if not isinstance(raw, dict):
                raise DataError("recording metadata stereo_geometry is not a table: re-record it")
            try:
                return dataclass_from_dict(cls, raw, "stereo_geometry"), "recording metadata"
            except ConfigError as exc:
                raise DataError(f"recording metadata: {exc}") from None
        if meta.get("calibration"):
            from drivers.calibration import StereoCalibration

            calib = StereoCalibration.from_yaml(meta["calibration"], "the recorded calibration")
            trav = (meta.get("robot_config") or {}).get("traversability") or {}
            height = float(trav.get("camera_height_m", cls.height_m))
            pitch = math.radians(float(trav.get("camera_pitch_deg", 0.0)))
            return cls.from_calibration(calib, height, pitch), "the recorded camera calibration"
        return cls.from_camera_model(), "the default rig (drivers.stereo_rig)"

    @property
    def focal_baseline(self) -> float:
        """fx * baseline: disparity (px) times depth (m)."""
        return self.fx_px * self.baseline_m

    def depth_from_disparity(self, disparity_px: np.ndarray) -> np.ndarray:
        """Depth along the optical axis (m); inf where disparity <= 0, NaN stays NaN."""
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.float32(self.focal_baseline) / disparity_px.astype(np.float32)
        depth[disparity_px <= 0] = np.inf
        return depth

    def nominal_plane(self) -> GroundPlane:
        """The calibrated ground plane (flat ground, nominal height and pitch)."""
        n = np.array([0.0, math.cos(self.pitch_rad), math.sin(self.pitch_rad)])
        return GroundPlane.from_normal(n, self.height_m, self, fitted=False)


@dataclass(frozen=True)
class StereoConfig:
    """Matcher, plane fit and labelling settings; the defaults suit the 320x240 rig."""

    num_disparities: int = 64
    block_size: int = 5
    uniqueness: int = 10
    half_resolution: bool = False  # match at half size: ~5x faster, ~2x the disparity error
    trusted_range_m: float = 7.0  # labels beyond this depth are unknown
    distant_m: float = 40.0  # matches above the horizon beyond this are "distant" (sky, haze)
    obstacle_min_m: float = 0.08  # points this far above the plane are obstacles
    height_noise_px: float = 0.35  # disparity noise used to widen the ground band with depth
    ransac_iters: int = 48
    ransac_points: int = 900
    inlier_px: float = 0.4
    max_height_error: float = 0.3  # fitted camera height within 30 % of the calibration
    max_tilt_deg: float = 12.0  # fitted plane within this angle of the calibrated one
    min_inlier_fraction: float = 0.3
    seed: int = 0

    @classmethod
    def from_dict(cls, raw: dict) -> StereoConfig:
        """Build from a config table; unknown keys or bad values raise ConfigError."""
        cfg = dataclass_from_dict(cls, raw, "traversability.stereo")
        if cfg.num_disparities <= 0 or cfg.num_disparities % 16:
            raise ConfigError(
                f"[traversability.stereo] num_disparities = {cfg.num_disparities}: "
                "use a positive multiple of 16"
            )
        if cfg.block_size < 1 or cfg.block_size % 2 == 0:
            raise ConfigError(
                f"[traversability.stereo] block_size = {cfg.block_size}: use an odd number"
            )
        if cfg.trusted_range_m <= 0 or cfg.obstacle_min_m <= 0:
            raise ConfigError(
                "[traversability.stereo] trusted_range_m and obstacle_min_m must be positive"
            )
        return cfg


def _check_pair(left: np.ndarray, right: np.ndarray) -> None:
    for name, img in (("left", left), ("right", right)):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3:
            raise DataError(f"{name} image must be an RGB uint8 HxWx3 array; convert it first")
    if left.shape != right.shape:
        raise DataError(
            f"left {left.shape} and right {right.shape} differ: pass a rectified pair of one size"
        )


class DisparityMatcher:
    """OpenCV StereoSGBM (3-way), built once and reused frame after frame."""

    def __init__(self, num_disparities: int = 64, block_size: int = 5, uniqueness: int = 10):
        self._sgbm = self._make(num_disparities, block_size, uniqueness)
        self._sgbm_half = self._make(max(16, num_disparities // 2), 3, uniqueness)

    @staticmethod
    def _make(num_disparities: int, block_size: int, uniqueness: int):
        area = block_size * block_size
        return cv2.StereoSGBM_create(
            minDisparity=0,
            numDisparities=num_disparities,
            blockSize=block_size,
            P1=8 * area,
            P2=32 * area,
            uniquenessRatio=uniqueness,
            disp12MaxDiff=1,
            mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
        )

    def __call__(self, left: np.ndarray, right: np.ndarray, half: bool = False) -> np.ndarray:
        """Float32 disparity (px, full-size scale) of the left eye; NaN where invalid."""
        _check_pair(left, right)
        gl = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY)
        gr = cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)
        h, w = gl.shape
        scale = 2.0 if half else 1.0
        if half:
            gl = cv2.resize(gl, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            gr = cv2.resize(gr, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        sgbm = self._sgbm_half if half else self._sgbm
        pad = sgbm.getNumDisparities()
        # SGBM leaves the left num_disparities columns empty; a replicated margin lets it
        # match them, which keeps the left edge of the view seen.
        raw = sgbm.compute(
            cv2.copyMakeBorder(gl, 0, 0, pad, 0, cv2.BORDER_REPLICATE),
            cv2.copyMakeBorder(gr, 0, 0, pad, 0, cv2.BORDER_REPLICATE),
        )[:, pad:]
        disp = _to_float(raw, scale)
        # a match that needs a right-image column left of the frame matched the margin: drop it
        cols = np.arange(disp.shape[1], dtype=np.float32) * np.float32(scale)
        disp[disp > cols] = np.nan
        if half:
            disp = cv2.resize(disp, (w, h), interpolation=cv2.INTER_NEAREST)
        return disp


def _to_float(raw: np.ndarray, scale: float) -> np.ndarray:
    disp = raw.astype(np.float32) * np.float32(scale / 16.0)  # SGBM: fixed point, 4 bits
    disp[raw < 0] = np.nan
    return disp


def compute_disparity(
    left: np.ndarray,
    right: np.ndarray,
    num_disparities: int = 64,
    block_size: int = 5,
    half_resolution: bool = False,
) -> np.ndarray:
    """Disparity of a rectified RGB uint8 pair: float32 pixels, NaN where invalid.

    Builds a matcher per call; a loop over frames should keep a `DisparityMatcher`.
    """
    matcher = DisparityMatcher(num_disparities, block_size)
    return matcher(left, right, half=half_resolution)


def points_from_disparity(disparity_px: np.ndarray, geom: StereoGeometry) -> np.ndarray:
    """(H, W, 3) float32 camera-frame points (x right, y down, z forward); NaN where invalid."""
    h, w = disparity_px.shape
    z = geom.depth_from_disparity(disparity_px)
    z[~np.isfinite(z)] = np.nan
    u = (np.arange(w, dtype=np.float32) - geom.cx_px) / geom.fx_px
    v = (np.arange(h, dtype=np.float32) - geom.cy_px) / geom.fy_px
    return np.stack([z * u[None, :], z * v[:, None], z], axis=-1)


@dataclass(frozen=True)
class GroundPlane:
    """A ground plane, ``n . p = height_m`` for ground points p (n points down), also kept as
    its disparity plane ``d = a (u - cx) + b (v - cy) + c`` for fast per-pixel work."""

    a: float
    b: float
    c: float
    normal: tuple[float, float, float]
    height_m: float
    inlier_fraction: float = 0.0
    fitted: bool = True  # False: the calibrated plane stood in (fit failed its sanity check)

    @classmethod
    def from_normal(
        cls, normal: np.ndarray, height_m: float, geom: StereoGeometry, fitted: bool = True
    ) -> GroundPlane:
        n = np.asarray(normal, float) / np.linalg.norm(normal)
        k = geom.baseline_m / height_m
        a, b, c = k * n[0], k * n[1] * geom.fx_px / geom.fy_px, k * n[2] * geom.fx_px
        return cls(float(a), float(b), float(c), tuple(map(float, n)), float(height_m), 0.0, fitted)

    @classmethod
    def from_disparity_plane(
        cls, abc: np.ndarray, geom: StereoGeometry, inlier_fraction: float
    ) -> GroundPlane:
        a, b, c = map(float, abc)
        vec = np.array([a, b * geom.fy_px / geom.fx_px, c / geom.fx_px])
        norm = float(np.linalg.norm(vec))
        height = geom.baseline_m / norm if norm > 0 else math.inf
        return cls(a, b, c, tuple(map(float, vec / max(norm, 1e-12))), height, inlier_fraction)

    def disparity(self, geom: StereoGeometry, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) float32 disparity the ground would have at each pixel (<= 0 above horizon)."""
        h, w = shape
        du = (np.arange(w, dtype=np.float32) - geom.cx_px) * np.float32(self.a)
        dv = (np.arange(h, dtype=np.float32) - geom.cy_px) * np.float32(self.b)
        return dv[:, None] + du[None, :] + np.float32(self.c)

    def row_of_disparity(self, disparity_px: np.ndarray, col: np.ndarray, geom) -> np.ndarray:
        """Image row where the ground has ``disparity_px`` in column ``col``."""
        return geom.cy_px + (disparity_px - self.c - self.a * (col - geom.cx_px)) / self.b

    def tilt_deg(self, other: GroundPlane) -> float:
        """Angle between this plane's normal and another's."""
        cos = float(np.clip(np.dot(self.normal, other.normal), -1.0, 1.0))
        return math.degrees(math.acos(cos))


def _ransac_samples(disparity_px, geom, cfg, rng) -> np.ndarray | None:
    """Candidate ground points (u - cx, v - cy, d) below the horizon, within trusted range."""
    h, w = disparity_px.shape
    d_min = geom.focal_baseline / cfg.trusted_range_m
    top = int(max(0, geom.cy_px + 2))
    rows = rng.integers(top, h, cfg.ransac_points * 2)
    cols = rng.integers(0, w, cfg.ransac_points * 2)
    d = disparity_px[rows, cols]
    ok = np.flatnonzero(np.isfinite(d) & (d > d_min))[: cfg.ransac_points]
    if ok.size < 30:
        return None
    return np.stack([cols[ok] - geom.cx_px, rows[ok] - geom.cy_px, d[ok]], axis=1).astype(float)


def fit_ground_plane(
    disparity_px: np.ndarray,
    geom: StereoGeometry,
    cfg: StereoConfig | None = None,
    prior: GroundPlane | None = None,
    rng: np.random.Generator | None = None,
) -> GroundPlane:
    """RANSAC plane in (u, v, disparity) space, refined by least squares on its inliers.

    Hypotheses that put the camera at an implausible height or tilt (a wall filling the view)
    are rejected before scoring; when no hypothesis passes, the calibrated plane stands in.
    """
    cfg = cfg or StereoConfig()
    rng = rng or np.random.default_rng(cfg.seed)
    nominal = geom.nominal_plane()
    pts = _ransac_samples(disparity_px, geom, cfg, rng)
    if pts is None:
        return nominal
    design = np.column_stack([pts[:, 0], pts[:, 1], np.ones(len(pts))])
    picks = rng.integers(0, len(pts), (cfg.ransac_iters, 3))
    mats = design[picks]
    ok = np.abs(np.linalg.det(mats)) > 1e-6
    hyps = np.linalg.solve(mats[ok], pts[picks[ok], 2][..., None])[..., 0]
    extra = [nominal] + ([prior] if prior is not None else [])
    hyps = np.vstack([hyps, [[p.a, p.b, p.c] for p in extra]])
    hyps = hyps[_sane_rows(hyps, geom, nominal, cfg)]
    if len(hyps) == 0:
        return nominal
    tol = cfg.inlier_px * (0.5 + pts[:, 2] / 16.0)  # SGBM error grows with disparity
    inliers = np.abs(design @ hyps.T - pts[:, 2:3]) < tol[:, None]
    best = int(np.argmax(inliers.sum(axis=0)))
    mask = inliers[:, best]
    fraction = float(mask.mean())
    if fraction < cfg.min_inlier_fraction or mask.sum() < 10:
        return nominal
    abc, *_ = np.linalg.lstsq(design[mask], pts[mask, 2], rcond=None)
    plane = GroundPlane.from_disparity_plane(abc, geom, fraction)
    sane = _sane_rows(np.array([[plane.a, plane.b, plane.c]]), geom, nominal, cfg)[0]
    return plane if sane else nominal


def _sane_rows(hyps: np.ndarray, geom: StereoGeometry, nominal: GroundPlane, cfg) -> np.ndarray:
    """Which disparity planes (rows of a, b, c) put the camera near its calibrated height,
    with a normal near the calibrated one."""
    vec = np.column_stack(
        [hyps[:, 0], hyps[:, 1] * geom.fy_px / geom.fx_px, hyps[:, 2] / geom.fx_px]
    )
    norm = np.linalg.norm(vec, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        height = geom.baseline_m / norm
        cos = (vec @ np.asarray(nominal.normal)) / norm
    tilt_ok = cos >= math.cos(math.radians(cfg.max_tilt_deg))
    height_ok = np.abs(height - nominal.height_m) <= cfg.max_height_error * nominal.height_m
    return (hyps[:, 1] > 0) & tilt_ok & height_ok


@dataclass(frozen=True)
class StereoLabels:
    """Per-pixel labels and what they came from, for one frame (left eye)."""

    labels: np.ndarray  # (H, W) uint8: UNKNOWN, GROUND, OBSTACLE, DISTANT
    height_m: np.ndarray  # (H, W) float32 height above the plane; NaN where invalid
    depth_m: np.ndarray  # (H, W) float32; inf or NaN where invalid
    footline_row: np.ndarray  # (W,) int16: lowest row of the nearest obstacle, -1 if none
    footline_depth_m: np.ndarray  # (W,) float32: its depth, inf if none
    plane: GroundPlane


def label_pixels(
    disparity_px: np.ndarray,
    plane: GroundPlane,
    geom: StereoGeometry,
    cfg: StereoConfig | None = None,
) -> StereoLabels:
    """Ground / obstacle / distant / unknown per pixel, with LAGR's footline filled in below
    obstacles."""
    cfg = cfg or StereoConfig()
    h, w = disparity_px.shape
    d_ground = plane.disparity(geom, (h, w))
    with np.errstate(invalid="ignore", divide="ignore"):
        height = np.float32(plane.height_m) * (disparity_px - d_ground) / disparity_px
    depth = geom.depth_from_disparity(disparity_px)
    trusted = np.isfinite(disparity_px) & (depth <= cfg.trusted_range_m)
    # The ground band widens with depth: d(height)/d(disparity) is height * d_ground / d^2.
    with np.errstate(invalid="ignore", divide="ignore"):
        slack = plane.height_m * cfg.height_noise_px / disparity_px
    limit = np.maximum(np.float32(cfg.obstacle_min_m), slack)
    labels = np.zeros((h, w), np.uint8)
    labels[trusted & (np.abs(height) <= limit)] = GROUND
    labels[trusted & (height > limit)] = OBSTACLE
    labels[(disparity_px < geom.focal_baseline / cfg.distant_m) & (d_ground <= 0)] = DISTANT
    foot_row, foot_depth = _fill_footline(labels, disparity_px, plane, geom, cfg)
    return StereoLabels(labels, height, depth, foot_row, foot_depth, plane)


def _fill_footline(labels, disparity_px, plane, geom, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Extend each column's lowest obstacle down to where the plane meets its depth: the
    bottom few centimetres of an obstacle sit inside the ground band and would read as ground.
    """
    h, w = labels.shape
    rows = np.arange(h, dtype=np.int32)[:, None]
    lowest = np.where(labels == OBSTACLE, rows, -1).max(axis=0)
    cols = np.flatnonzero(lowest >= 0)
    foot_row = lowest.astype(np.int16)
    foot_depth = np.full(w, np.inf, np.float32)
    if cols.size == 0:
        return foot_row, foot_depth
    low = lowest[cols]
    above = np.clip(low - 2, 0, h - 1)  # two rows up: away from SGBM's smeared edge
    d_obs = np.fmax(disparity_px[low, cols], disparity_px[above, cols])
    contact = plane.row_of_disparity(d_obs, cols, geom)
    # cap the fill at twice the obstacle threshold, in pixels at that depth
    cap = 2 * cfg.obstacle_min_m * geom.fy_px * d_obs / geom.focal_baseline
    bottom = np.clip(np.minimum(contact, low + cap), low, h - 1).astype(np.int32)
    fill = (rows > low[None, :]) & (rows <= bottom[None, :])
    sub = labels[:, cols]
    sub[fill] = OBSTACLE
    labels[:, cols] = sub
    foot_row[cols] = bottom.astype(np.int16)
    foot_depth[cols] = geom.focal_baseline / np.maximum(d_obs, 1e-3)
    return foot_row, foot_depth


@dataclass(frozen=True)
class StereoFrame:
    """Everything stereo said about one pair."""

    disparity_px: np.ndarray
    labels: StereoLabels


class StereoLabeler:
    """Disparity → plane (refit every frame, seeded by the last good one) → labels."""

    def __init__(self, geom: StereoGeometry | None = None, cfg: StereoConfig | None = None):
        self.geom = geom or StereoGeometry.from_camera_model()
        self.cfg = cfg or StereoConfig()
        self.matcher = DisparityMatcher(
            self.cfg.num_disparities, self.cfg.block_size, self.cfg.uniqueness
        )
        self.rng = np.random.default_rng(self.cfg.seed)
        self.last_plane: GroundPlane | None = None

    def disparity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Disparity of one pair with the configured matcher."""
        if left.shape[:2] != (self.geom.height_px, self.geom.width_px):
            raise DataError(
                f"image {left.shape[1]}x{left.shape[0]} does not match the stereo geometry "
                f"{self.geom.width_px}x{self.geom.height_px}: check the camera calibration"
            )
        return self.matcher(left, right, half=self.cfg.half_resolution)

    def label(self, disparity_px: np.ndarray) -> StereoLabels:
        """Fit the plane and label the pixels of one disparity map."""
        plane = fit_ground_plane(disparity_px, self.geom, self.cfg, self.last_plane, self.rng)
        if plane.fitted:
            self.last_plane = plane
        return label_pixels(disparity_px, plane, self.geom, self.cfg)

    def process(self, left: np.ndarray, right: np.ndarray) -> StereoFrame:
        """Disparity and labels of one rectified pair."""
        disparity = self.disparity(left, right)
        return StereoFrame(disparity, self.label(disparity))
