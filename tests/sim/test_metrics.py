"""Run metrics (the figures reports quote) and the top-down trajectory picture."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from rover.errors import DataError
from sim.metrics import (
    LEGEND_PX,
    MIN_WIDTH_PX,
    TITLE_PX,
    RunLog,
    collision_spots,
    compute_metrics,
    write_trajectory_png,
)

REQUIRED = {
    "distance_m",
    "collisions",
    "mean_distance_between_collisions_m",
    "autonomy_pct",
    "goal_progress",
    "min_clearance_m",
    "steering_smoothness",
    "elapsed_s",
}


def make_log(collisions: int, steps: int = 100, dt: float = 0.1) -> RunLog:
    log = RunLog()
    for i in range(steps):
        x = 0.2 * (i + 1)
        steering = 0.1 if i % 2 else 0.0  # flips by 0.1 every 0.1 s: rate 1.0 per second
        log.append((i + 1) * dt, (x, 0.0, 0.0), 2.0, (steering, 0.5), 1.0 - 0.005 * i)
    log.distance_m = 20.0
    log.collision_xy = [(5.0, 0.0)] * collisions
    return log


def test_metrics_follow_dave_and_pilotnet_definitions(world_with):
    world = world_with([], length_m=40.0)
    metrics = compute_metrics(make_log(collisions=1), world)
    assert metrics.keys() >= REQUIRED
    assert metrics["elapsed_s"] == pytest.approx(10.0)
    assert metrics["autonomy_pct"] == pytest.approx(100 * (1 - 6 * 1 / 10.0))
    assert metrics["mean_distance_between_collisions_m"] == pytest.approx(20.0)
    assert metrics["goal_progress"] == pytest.approx(20.0 / 40.0)
    assert metrics["min_clearance_m"] == pytest.approx(1.0 - 0.005 * 99)
    assert metrics["steering_smoothness"] == pytest.approx(1.0)
    json.dumps(metrics)  # JSON-ready: plain numbers, strings and bools


def test_autonomy_is_clamped_and_no_collision_divides_by_one(world_with):
    world = world_with([])
    assert compute_metrics(make_log(collisions=3), world)["autonomy_pct"] == 0.0
    clean = compute_metrics(make_log(collisions=0), world)
    assert clean["autonomy_pct"] == 100.0
    assert clean["mean_distance_between_collisions_m"] == clean["distance_m"]


def test_trajectory_png_shows_obstacles_trail_and_collisions(tmp_path, tree, world_with):
    world = world_with([tree(6.0, 2.0, radius=0.5)], length_m=20.0)
    path = write_trajectory_png(tmp_path / "run.png", world, make_log(collisions=1), px_per_m=10)
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    x0, x1, y0, y1 = world.bounds
    map_h = int((y1 - y0) * 10) + 1
    assert image.shape[:2] == (TITLE_PX + map_h + LEGEND_PX, max(MIN_WIDTH_PX, 201))
    red = (image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] < 80)
    blue = (image[..., 2] > 150) & (image[..., 0] < 100)
    assert red.any() and blue.any()
    row, col = TITLE_PX + int((y1 - 2.0) * 10), int((6.0 - x0) * 10)  # the tree's centre
    assert np.abs(image[row, col].astype(int) - (96, 84, 70)).max() < 10
    ink = image.max(axis=2) < 120  # dark text on the light bands
    assert ink[:TITLE_PX].sum() > 300, "a title and the run's figures above the map"
    assert ink[-LEGEND_PX:].sum() > 300, "a legend and a scale bar below it"


def test_repeated_collisions_at_one_put_back_spot_show_their_count(tmp_path, world_with):
    """Twelve collisions at one spot are one mark labelled x12, not one bare cross."""
    assert collision_spots([(5.0, 0.0)] * 12 + [(5.3, 0.2), (15.0, 1.0)]) == [
        (5.0, 0.0, 13),
        (15.0, 1.0, 1),
    ]
    world = world_with([], length_m=20.0)
    _, _, _, y1 = world.bounds
    row, col = TITLE_PX + int(y1 * 10), int((5.0 - world.bounds[0]) * 10)
    labels = []
    for n in (1, 12):
        path = write_trajectory_png(tmp_path / f"{n}.png", world, make_log(n), px_per_m=10)
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        beside = image[row - 20 : row, col + 7 : col + 40]  # where the count goes
        labels.append(((beside[..., 0] > 180) & (beside[..., 1] < 90)).sum())
    assert labels[0] == 0 and labels[1] > 15


def test_trajectory_png_into_a_missing_folder_says_so(tmp_path, world_with):
    with pytest.raises(DataError, match="does not exist"):
        write_trajectory_png(tmp_path / "nope" / "run.png", world_with([]), make_log(0))
