"""Stereo geometry on rendered simulator pairs: disparity, plane, labels, footline."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from perception import stereo
from rover.errors import DataError
from sim.camera import CameraModel
from sim.simulation import Simulation

GEOM = stereo.StereoGeometry.from_camera_model()


@pytest.fixture(scope="module")
def forest_frames():
    """A few pairs and their truth along the forest scenario's start."""
    sim = Simulation("forest", 5)
    frames = []
    for i in range(40):
        if i % 10 == 0:
            frames.append(sim.render())
        sim.step(0.0, 0.5)
    return frames


def test_disparity_matches_the_rendered_depth(forest_frames):
    left, right, truth = forest_frames[1]
    disp = stereo.compute_disparity(left, right)
    assert disp.dtype == np.float32 and disp.shape == left.shape[:2]
    true = truth.disparity_px(CameraModel())
    ok = np.isfinite(disp) & np.isfinite(true) & (true > 0.5)
    assert ok.mean() > 0.5, "most of the image has a disparity"
    err = np.abs(disp[ok] - true[ok])
    assert np.median(err) < 0.35
    assert np.mean(err > 2.0) < 0.05
    assert np.isnan(disp).any(), "invalid matches are NaN, not a sentinel value"


def test_left_edge_is_matched_not_left_blank(forest_frames):
    left, right, _ = forest_frames[0]
    disp = stereo.compute_disparity(left, right)
    # SGBM alone leaves the first num_disparities columns empty; the margin fixes the far part
    assert np.isfinite(disp[100:140, 5:60]).mean() > 0.5


def test_half_resolution_mode_is_coarser_but_close(forest_frames):
    left, right, truth = forest_frames[1]
    disp = stereo.compute_disparity(left, right, half_resolution=True)
    true = truth.disparity_px(CameraModel())
    ok = np.isfinite(disp) & np.isfinite(true) & (true > 1.0)
    assert np.median(np.abs(disp[ok] - true[ok])) < 0.8


@pytest.mark.parametrize(
    "left, right",
    [
        (np.zeros((240, 320, 3), np.uint8), np.zeros((240, 300, 3), np.uint8)),
        (np.zeros((240, 320, 3), np.float32), np.zeros((240, 320, 3), np.float32)),
        (np.zeros((240, 320), np.uint8), np.zeros((240, 320), np.uint8)),
    ],
)
def test_bad_pairs_raise_one_line_data_errors(left, right):
    with pytest.raises(DataError) as err:
        stereo.compute_disparity(left, right)
    assert "\n" not in str(err.value)


def test_points_follow_the_pinhole_model():
    disp = np.full((240, 320), np.nan, np.float32)
    disp[200, 250] = 4.0
    pts = stereo.points_from_disparity(disp, GEOM)
    z = GEOM.focal_baseline / 4.0
    np.testing.assert_allclose(
        pts[200, 250],
        [(250 - GEOM.cx_px) * z / GEOM.fx_px, (200 - GEOM.cy_px) * z / GEOM.fy_px, z],
        rtol=1e-5,
    )
    assert np.isnan(pts[0, 0]).all()


def synthetic_plane_disparity(height_m: float, pitch_deg: float) -> np.ndarray:
    geom = dataclasses.replace(GEOM, height_m=height_m, pitch_rad=math.radians(pitch_deg))
    return geom.nominal_plane().disparity(GEOM, (240, 320))


def test_plane_fit_finds_height_and_tilt_despite_outliers():
    disp = synthetic_plane_disparity(0.27, 4.0)
    disp[disp <= 0.5] = np.nan
    rng = np.random.default_rng(1)
    outliers = rng.random(disp.shape) < 0.35
    disp[outliers] = rng.uniform(0.5, 60, outliers.sum())
    plane = stereo.fit_ground_plane(disp, GEOM)
    assert plane.fitted
    assert plane.height_m == pytest.approx(0.27, abs=0.005)
    assert plane.tilt_deg(GEOM.nominal_plane()) == pytest.approx(4.0, abs=0.3)


def test_implausible_plane_falls_back_to_the_calibration():
    # a fronto-parallel wall at 1 m fills the view: a perfect plane, but not the ground
    disp = np.full((240, 320), GEOM.focal_baseline / 1.0, np.float32)
    plane = stereo.fit_ground_plane(disp, GEOM)
    assert not plane.fitted
    assert plane.height_m == pytest.approx(GEOM.height_m)


def labelled(sim: Simulation, geom: stereo.StereoGeometry = GEOM):
    left, right, truth = sim.render()
    frame = stereo.StereoLabeler(geom).process(left, right)
    return frame, truth


def test_a_tree_ahead_is_labelled_obstacle_down_to_its_footline(scene, tree):
    sim = scene(
        [tree(3.25, 0.0, radius=0.25)]
    )  # rig 0.15 m ahead of the centre: trunk face at ~2.85 m
    frame, truth = labelled(sim)
    labels = frame.labels
    near = truth.depth_m[0] < 6.0
    obstacle = truth.obstacle_mask[0] & near
    pred = labels.labels == stereo.OBSTACLE
    iou = (pred & obstacle).sum() / (pred | obstacle).sum()
    assert iou > 0.8
    ground = truth.ground_mask[0] & near & (labels.labels != stereo.UNKNOWN)
    assert (labels.labels[ground] == stereo.GROUND).mean() > 0.97
    # footline: the trunk's lowest pixel row per column, and the distance it stands at
    cols = np.flatnonzero(obstacle.any(axis=0))[3:-3]
    base = np.array([np.flatnonzero(obstacle[:, c]).max() for c in cols])
    assert np.median(np.abs(labels.footline_row[cols] - base)) <= 2
    assert np.median(labels.footline_depth_m[cols]) == pytest.approx(2.85, abs=0.25)


def test_a_low_rock_is_an_obstacle_and_open_ground_is_not(rock, scene):
    frame, truth = labelled(scene([rock(2.6, 0.4, radius=0.25, height=0.2)]))
    lab = frame.labels.labels
    rock_px = truth.obstacle_mask[0] & (truth.depth_m[0] < 6.0)
    assert rock_px.sum() > 100
    assert (lab[rock_px] == stereo.OBSTACLE).mean() > 0.75
    open_ground = truth.ground_mask[0] & (truth.depth_m[0] < 6.0)
    assert (lab[open_ground] == stereo.OBSTACLE).mean() < 0.02


def test_labels_survive_a_pitch_the_calibration_does_not_know(scene, tree):
    # rendered 4 degrees further down than calibrated: the refit plane absorbs it
    pitched = CameraModel(pitch_deg=9.0)
    frame, truth = labelled(scene([tree(4.15, 0.8, radius=0.25)], camera=pitched))
    assert frame.labels.plane.fitted
    assert frame.labels.plane.tilt_deg(GEOM.nominal_plane()) == pytest.approx(4.0, abs=1.5)
    known = frame.labels.labels != stereo.UNKNOWN
    near = truth.depth_m[0] < 6.0
    truth_lab = np.where(truth.obstacle_mask[0], stereo.OBSTACLE, stereo.GROUND)
    assert (frame.labels.labels == truth_lab)[known & near].mean() > 0.95


def test_sky_is_distant_not_obstacle(forest_frames):
    left, right, truth = forest_frames[2]
    frame = stereo.StereoLabeler().process(left, right)
    sky = ~np.isfinite(truth.depth_m[0])
    # only SGBM's fattened edges beside near trunks read as obstacle
    assert (frame.labels.labels[sky] == stereo.OBSTACLE).mean() < 0.08
    assert (frame.labels.labels[sky] == stereo.DISTANT).mean() > 0.5


def test_geometry_from_metadata_or_the_default_rig():
    geom, source = stereo.StereoGeometry.from_metadata({})
    assert geom == GEOM and "default rig" in source
    raw = dataclasses.asdict(dataclasses.replace(GEOM, baseline_m=0.2))
    geom, source = stereo.StereoGeometry.from_metadata({"stereo_geometry": raw})
    assert geom.baseline_m == 0.2 and source == "recording metadata"
    with pytest.raises(DataError, match="stereo_geometry"):
        stereo.StereoGeometry.from_metadata({"stereo_geometry": {"baseline": 1}})


def test_stereo_config_names_the_bad_key():
    with pytest.raises(Exception, match="num_disparities"):
        stereo.StereoConfig.from_dict({"num_disparities": 50})
    with pytest.raises(Exception, match="bogus"):
        stereo.StereoConfig.from_dict({"bogus": 1})


def rig_calibration(camera: CameraModel):
    """The calibration `rover calibrate` would write for the simulator's (ideal) rig."""
    from drivers.calibration import StereoCalibration

    k = camera.intrinsics()
    fb = camera.fx_px * camera.baseline_m
    p1 = np.hstack([k, np.zeros((3, 1))])
    p2 = p1.copy()
    p2[0, 3] = -fb
    q = np.eye(4)
    return StereoCalibration(
        (camera.width_px, camera.height_px),
        k,
        np.zeros((1, 5)),
        k,
        np.zeros((1, 5)),
        np.eye(3),
        np.array([[-camera.baseline_m], [0.0], [0.0]]),
        np.eye(3),
        np.eye(3),
        p1,
        p2,
        q,
        0.1,
    )


def test_geometry_from_a_recorded_calibration():
    meta = {
        "calibration": rig_calibration(CameraModel()).to_yaml(),
        "robot_config": {"traversability": {"camera_height_m": 0.3}},
    }
    geom, source = stereo.StereoGeometry.from_metadata(meta)
    assert "calibration" in source
    assert geom.fx_px == pytest.approx(GEOM.fx_px) and geom.cy_px == pytest.approx(GEOM.cy_px)
    assert geom.baseline_m == pytest.approx(0.12) and geom.height_m == 0.3
    with pytest.raises(DataError, match="recorded calibration"):
        stereo.StereoGeometry.from_metadata({"calibration": "not yaml at all: ["})
