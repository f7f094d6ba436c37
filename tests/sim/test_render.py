"""The stereo renderer: images, ground truth against a brute-force reference, stereo geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.camera import CameraModel
from sim.render import StereoRenderer
from sim.simulation import Simulation


def reference_truth(world, camera: CameraModel, x: float, y: float, yaw: float):
    """Depth and obstacle id per pixel by brute force: every pixel ray against every obstacle.

    Obstacles are vertical prisms of their footprint (tree trunks, boxes) up to their height;
    a pixel sees the nearest one whose height range its ray passes through before the ground.
    """
    h, w = camera.height_px, camera.width_px
    rows = np.arange(h, dtype=np.float64)[:, None]
    k = (np.arange(w) - camera.cx_px) / camera.fx_px
    fwd = np.array([math.cos(yaw), math.sin(yaw)])
    right = np.array([math.sin(yaw), -math.cos(yaw)])
    slope = (rows - camera.cy_px) / camera.fy_px  # drop per metre of depth
    with np.errstate(divide="ignore"):
        ground = np.where(slope > 0, camera.height_m / slope, np.inf)
    depth = np.full((2, h, w), np.inf)
    ids = np.full((2, h, w), -1)
    for eye, side in enumerate((1.0, -1.0)):
        origin = np.array([x, y]) - side * camera.baseline_m / 2 * right
        best = np.broadcast_to(ground, (h, w)).copy()
        best_id = np.full((h, w), -1)
        direction = fwd[None] + k[:, None] * right[None]
        for i, ob in enumerate(world.obstacles):
            t = _enter(ob, origin, direction)
            height = camera.height_m - t[None, :] * slope
            seen = (height > 0) & (height <= ob.height_m) & (t[None, :] < best)
            best = np.where(seen, t[None, :], best)
            best_id = np.where(seen, i, best_id)
        depth[eye], ids[eye] = (
            np.where(best_id >= 0, best, np.where(slope > 0, ground, np.inf)),
            best_id,
        )
    return depth, ids


def _enter(ob, origin, direction):
    """Ray parameter where each column's ray enters the obstacle's footprint (inf: misses)."""
    if ob.is_round:
        p = np.array([ob.x_m, ob.y_m]) - origin
        a = (direction**2).sum(1)
        b = direction @ p
        c = p @ p - ob.radius_m**2
        disc = b * b - a * c
        t = (b - np.sqrt(np.maximum(disc, 0))) / a
        return np.where((disc >= 0) & (t > 0), t, np.inf)
    c, s = math.cos(ob.yaw_rad), math.sin(ob.yaw_rad)
    rot = np.array([[c, s], [-s, c]])
    o = rot @ (origin - np.array([ob.x_m, ob.y_m]))
    d = direction @ rot.T
    half = np.array([ob.length_m / 2, ob.width_m / 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - o) / d, (half - o) / d
    tmin = np.minimum(t1, t2).max(1)
    tmax = np.maximum(t1, t2).min(1)
    return np.where((tmax >= tmin) & (tmin > 0), tmin, np.inf)


@pytest.fixture(scope="module")
def scene(box, tree, world_with):
    obstacles = [
        tree(6.0, 0.4, radius=0.25, height=6.0),
        tree(9.0, -1.6, radius=0.3, height=8.0),
        box(3.0, -0.7, 0.4, 0.6, 0.4, height=0.3),  # low box in front of the tall tree below
        tree(6.5, -0.9, radius=0.2, height=5.0),
        box(12.0, 2.5, 1.2, 3.0, 0.3, height=1.2),  # a wall segment, seen obliquely
    ]
    world = world_with(obstacles)
    return world, StereoRenderer(world)


@pytest.mark.parametrize("pose", [(0.0, 0.0, 0.0), (0.7, 0.3, 0.12), (1.5, -0.4, -0.2)])
def test_ground_truth_matches_brute_force_rays(scene, pose):
    world, renderer = scene
    _, _, truth = renderer.render(*pose)
    depth, ids = reference_truth(world, renderer.camera, *pose)
    assert (truth.shape_id == ids).mean() > 0.999  # a pixel may flip on an exact edge
    same = truth.shape_id == ids
    np.testing.assert_allclose(truth.depth_m[same], depth[same], rtol=1e-4)
    assert np.array_equal(truth.obstacle_mask, truth.shape_id >= 0)


def test_other_camera_models_render_the_same_geometry(scene):
    world, _ = scene
    camera = CameraModel(width_px=200, height_px=150, hfov_deg=70, pitch_deg=12, baseline_m=0.3)
    left, _, truth = StereoRenderer(world, camera).render(0.4, 0.2, 0.05)
    assert left.shape == (150, 200, 3)
    depth, ids = reference_truth(world, camera, 0.4, 0.2, 0.05)
    assert (truth.shape_id == ids).mean() > 0.999
    same = truth.shape_id == ids
    np.testing.assert_allclose(truth.depth_m[same], depth[same], rtol=1e-4)


def test_low_obstacle_hides_only_the_bottom_of_a_tall_one_behind(scene):
    _, renderer = scene
    _, _, truth = renderer.render(0.0, 0.0, 0.0)
    ids = truth.shape_id[0]
    cols = np.flatnonzero((ids == 2).any(axis=0) & (ids == 3).any(axis=0))
    assert cols.size, "the box and the tree behind it share columns"
    for c in cols:
        box_rows, tree_rows = np.flatnonzero(ids[:, c] == 2), np.flatnonzero(ids[:, c] == 3)
        assert tree_rows.max() < box_rows.min(), "the tree shows above the box, not below"


def test_images_are_rgb_uint8_contiguous_and_deterministic(scene):
    _, renderer = scene
    left, right, _ = renderer.render(0.2, 0.1, 0.05)
    for image in (left, right):
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8
        assert image.flags["C_CONTIGUOUS"]
    again_left, again_right, _ = renderer.render(0.2, 0.1, 0.05)
    assert np.array_equal(left, again_left) and np.array_equal(right, again_right)
    assert not np.array_equal(left, right), "the two eyes see from different places"


def test_stereo_pair_obeys_the_published_intrinsics(scene):
    world, renderer = scene
    cam = renderer.camera
    _, _, truth = renderer.render(0.0, 0.0, 0.0)
    K = cam.intrinsics()
    target = world.obstacles[0]  # trunk at x = 6, y = 0.4; rig at the origin facing +x
    z = target.x_m  # depth of its centre along the optical axis
    columns = []
    for eye, eye_y in enumerate((cam.baseline_m / 2, -cam.baseline_m / 2)):
        lateral = -(target.y_m - eye_y)  # camera x points right
        u, v, _ = K @ np.array([lateral / z, (cam.height_m - 1.0) / z, 1.0])
        columns.append(u)
        assert truth.shape_id[eye, round(v), round(u)] == 0
    disparity = columns[0] - columns[1]
    assert disparity == pytest.approx(cam.fx_px * cam.baseline_m / z, rel=1e-9)
    front = truth.depth_m[0, round(v), round(columns[0])]
    measured = truth.disparity_px(cam)[round(v), round(columns[0])]
    assert measured == pytest.approx(cam.fx_px * cam.baseline_m / front, rel=1e-5)


def test_sky_above_horizon_ground_below_with_texture_and_fog(world_with):
    world = world_with([])
    renderer = StereoRenderer(world)
    left, _, truth = renderer.render(0.0, 0.0, 0.0)
    horizon = math.ceil(renderer.camera.cy_px)
    assert np.isinf(truth.depth_m[:, :horizon]).all()
    assert np.isfinite(truth.depth_m[:, horizon:]).all()
    assert not truth.obstacle_mask.any()
    near = left[-40:].astype(float)
    assert near.std(axis=(0, 1)).max() > 4.0, "the ground is textured, not flat colour"
    # Distance fog: rows near the horizon approach the fog colour.
    fog = np.array(world.lighting.fog_rgb, float)
    far = left[horizon + 1].astype(float).mean(axis=0)
    assert np.abs(far - fog).max() < np.abs(near.mean(axis=(0, 1)) - fog).max()


def test_obstacles_get_shaded_and_fogged_by_distance(tree, world_with):
    world = world_with([tree(3.0, 0.0, radius=0.3), tree(40.0, 3.0, radius=0.6, height=9.0)])
    renderer = StereoRenderer(world)
    left, _, truth = renderer.render(0.0, 0.0, 0.0)
    fog = np.array(world.lighting.fog_rgb, float)
    near = left[truth.shape_id[0] == 0].astype(float).mean(axis=0)
    far = left[truth.shape_id[0] == 1].astype(float).mean(axis=0)
    assert np.abs(far - fog).sum() < np.abs(near - fog).sum()


def test_rock_silhouette_narrows_toward_its_top(rock, world_with):
    world = world_with([rock(2.0, 0.0, radius=0.5, height=0.5)])
    renderer = StereoRenderer(world)
    _, _, truth = renderer.render(0.0, 0.0, 0.0)
    mask = truth.obstacle_mask[0]
    rows = np.flatnonzero(mask.any(axis=1))
    widths = mask[rows].sum(axis=1)
    assert widths[0] < 0.5 * widths.max(), "a dome, not a box"


@pytest.mark.parametrize("name", ["forest", "corridor"])
def test_the_renderer_draws_each_pose_along_a_drive(name):
    # How fast: `rover bench sim` (render_pairs_per_s, against a per-pixel floor).
    sim = Simulation(name)
    sim.render()
    pairs = [sim.renderer.render_vehicle(0.5 * i, 0.0, 0.0)[:2] for i in range(8)]
    for left, right in pairs:
        assert left.shape == right.shape == (240, 320, 3) and left.dtype == np.uint8
        assert left.std() > 5 and not np.array_equal(left, right)  # a scene, two viewpoints
    assert all(not np.array_equal(a[0], b[0]) for a, b in zip(pairs, pairs[1:], strict=False))
