"""World generation and the geometry queries collisions and the expert rely on."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.geometry import Shapes
from sim.scenario import load_scenario
from sim.world import generate_world


def test_same_seed_same_world_and_new_seed_new_world():
    scenario = load_scenario("forest")
    a, b = generate_world(scenario, 7), generate_world(scenario, 7)
    assert a.obstacles == b.obstacles and a.lighting == b.lighting
    c = generate_world(scenario, 8)
    assert c.obstacles != a.obstacles


def test_default_seed_comes_from_the_file():
    scenario = load_scenario("open")
    assert generate_world(scenario).seed == scenario.seed


def test_forest_is_cluttered_yet_keeps_gaps_and_a_clear_start():
    scenario = load_scenario("forest")
    world = generate_world(scenario, 3)
    inside = world.bounds[0] + 1.0, scenario.task.width_m / 2 - 0.5  # not the border rows
    field = [o for o in world.obstacles if o.x_m > inside[0] and abs(o.y_m) < inside[1]]
    area = (world.bounds[1] - world.bounds[0]) * scenario.task.width_m
    assert len(field) / area * 100 > 5.0, "forest should hold several obstacles per 100 m2"
    xy = np.array([[o.x_m, o.y_m] for o in field])
    r = np.array([o.radius_m for o in field])
    gap = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) - r[:, None] - r[None]
    np.fill_diagonal(gap, np.inf)
    assert gap.min() >= scenario.min_gap_m - 1e-9
    assert all(math.hypot(o.x_m, o.y_m) > scenario.task.start_clear_m for o in world.obstacles)


def test_field_is_fenced_so_driving_sideways_hits_the_border():
    world = generate_world(load_scenario("forest"), 1)
    shapes = world.shapes
    for y_dir in (1.0, -1.0):
        ys = np.linspace(0, y_dir * (world.bounds[3] + 1.0), 400)
        xs = np.full_like(ys, 20.0)
        # A 0.3 m wide vehicle driving straight out to the side touches something.
        assert (shapes.distance(xs, ys) < 0.15).any()


def test_corridor_trail_is_walled_and_passable():
    world = generate_world(load_scenario("corridor"), 4)
    trail = world.trail
    assert trail is not None
    xs = np.linspace(0.0, world.goal_x_m, 300)
    centre = np.asarray(trail.centre_y(xs))
    # Walls on both sides at about half the trail width.
    for side in (1.0, -1.0):
        off = centre + side * (trail.half_width_m + 0.15)
        assert (world.shapes.distance(xs, off) < 0.05).mean() > 0.9
    # Something on the trail leaves a gap of at least 0.9 m beside it.
    on_trail = [
        o
        for o in world.obstacles
        if o.shape != "wall" and abs(o.y_m - trail.centre_y(o.x_m)) < trail.half_width_m
    ]
    assert on_trail, "the corridor family puts obstacles on the trail"
    for o in on_trail:
        off = abs(o.y_m - float(trail.centre_y(o.x_m)))
        assert trail.half_width_m + off - o.radius_m >= 0.9


def test_footprint_hits_circles_and_rotated_boxes(box, tree):
    shapes = Shapes([tree(2.0, 0.0, radius=0.2), box(0.0, 2.0, math.pi / 4, 1.0, 0.2)])
    assert shapes.footprint_hits(1.6, 0.0, 0.0, 0.25, 0.15).tolist() == [0]
    assert shapes.footprint_hits(1.5, 0.0, 0.0, 0.25, 0.15).size == 0
    assert shapes.footprint_hits(0.0, 1.6, 0.0, 0.25, 0.15).tolist() == [1]
    # Just clear of the box's corner along its diagonal.
    assert shapes.footprint_hits(0.0, 1.3, 0.0, 0.25, 0.15).size == 0


def _rect_points(x, y, yaw, hl, hw, n=25):
    u, v = np.meshgrid(np.linspace(-hl, hl, n), np.linspace(-hw, hw, n))
    c, s = math.cos(yaw), math.sin(yaw)
    return x + c * u - s * v, y + s * u + c * v


@settings(max_examples=120, deadline=None)
@given(
    x=st.floats(-1.5, 1.5),
    y=st.floats(-1.5, 1.5),
    yaw=st.floats(-math.pi, math.pi),
    box_yaw=st.floats(-math.pi, math.pi),
)
def test_collision_and_clearance_agree_with_sampled_geometry(x, y, yaw, box_yaw, box, rock):
    shapes = Shapes([rock(0.6, 0.0, radius=0.3), box(-0.6, 0.2, box_yaw, 0.8, 0.3)])
    hl, hw = 0.25, 0.15
    px, py = _rect_points(x, y, yaw, hl, hw)
    sampled = shapes.distance(px.ravel(), py.ravel())
    hit = shapes.footprint_hits(x, y, yaw, hl, hw).size > 0
    clearance = shapes.footprint_clearance(x, y, yaw, hl, hw)
    if sampled.min() < -0.01:
        assert hit and clearance == 0.0
    if not hit:
        # Clearance is exact for separated shapes: never more than any sampled point's distance.
        assert clearance <= sampled.min() + 1e-9
        assert clearance >= sampled.min() - 0.03  # sampling grid spacing
