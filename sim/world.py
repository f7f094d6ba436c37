"""Worlds: a scenario drawn with a seed into obstacles, lighting, ground and a goal.

Frame: x along the task (start at x = 0, goal line at x = length), y to the left, yaw
counter-clockwise from +x. Layout, lighting and looks use separate random streams, so
changing how a world looks never moves its obstacles.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from sim.geometry import Obstacle, Shapes
from sim.materials import MATERIALS
from sim.scenario import ObstacleFamily, Scenario

SUN_STRENGTH = {"clear": 0.8, "hazy": 0.5, "overcast": 0.2, "dusk": 0.55}
BEHIND_START_M = 6.0  # the field starts this far behind the start line
PAST_GOAL_M = 25.0  # and runs on past the goal so the view ahead does not end
PASSABLE_M = 0.9  # free width kept beside anything placed on a corridor's trail


@dataclass(frozen=True)
class Lighting:
    """Sky, sun and fog of one world."""

    sky: str
    sun_elevation_rad: float
    sun_azimuth_rad: float
    ambient: float
    sun_strength: float
    fog_distance_m: float
    fog_rgb: tuple[int, int, int]
    canopy: float = 0.0  # fraction of the upper sky hidden by leaves


@dataclass(frozen=True)
class Trail:
    """A corridor's centre line y(x) = a sin(2 pi x / wavelength + phase) - a sin(phase)."""

    half_width_m: float
    amplitude_m: float
    wavelength_m: float
    phase_rad: float

    def centre_y(self, x_m: np.ndarray | float) -> np.ndarray | float:
        """Lateral position of the trail's centre at ``x_m``."""
        w = 2.0 * math.pi / self.wavelength_m
        return self.amplitude_m * (
            np.sin(w * np.asarray(x_m) + self.phase_rad) - math.sin(self.phase_rad)
        )

    def heading_rad(self, x_m: float) -> float:
        """Direction of the trail at ``x_m``."""
        w = 2.0 * math.pi / self.wavelength_m
        return math.atan(self.amplitude_m * w * math.cos(w * x_m + self.phase_rad))


@dataclass(frozen=True)
class World:
    """Everything static in one episode: obstacles, looks, the start and the goal."""

    scenario: Scenario
    seed: int
    obstacles: tuple[Obstacle, ...]
    lighting: Lighting
    ground_materials: tuple[str, ...]
    trail_material: str
    patch_size_m: float
    trail: Trail | None
    start_pose: tuple[float, float, float]  # x_m, y_m, yaw_rad
    goal_x_m: float
    bounds: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max
    look_seed: int

    shapes: Shapes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shapes", Shapes(self.obstacles))

    def goal_progress(self, x_m: float) -> float:
        """Fraction of the way from the start line to the goal line, clamped to [0, 1]."""
        start = self.start_pose[0]
        return float(min(1.0, max(0.0, (x_m - start) / (self.goal_x_m - start))))

    def reached_goal(self, x_m: float) -> bool:
        """True once the vehicle has crossed the goal line."""
        return x_m >= self.goal_x_m

    def materials_in_use(self) -> list[str]:
        """Obstacle materials actually placed, in a stable order."""
        return sorted({o.material for o in self.obstacles})


def generate_world(scenario: Scenario, seed: int | None = None) -> World:
    """Draw a world from ``scenario``; the same (scenario, seed) always gives the same world."""
    seed = scenario.seed if seed is None else int(seed)
    layout_seq, light_seq, look_seq = np.random.SeedSequence(seed).spawn(3)
    layout, light = np.random.default_rng(layout_seq), np.random.default_rng(light_seq)
    task = scenario.task
    bounds = (-BEHIND_START_M, task.length_m + PAST_GOAL_M, -task.width_m / 2, task.width_m / 2)
    trail = _draw_trail(scenario, layout)
    placer = _Placer(scenario, layout, bounds, trail)
    placer.place_border()
    if trail is not None:
        placer.place_corridor_walls()
    for family in scenario.obstacles:
        placer.place_family(family)
    start_yaw = 0.0 if trail is None else trail.heading_rad(0.0)
    return World(
        scenario=scenario,
        seed=seed,
        obstacles=tuple(placer.obstacles),
        lighting=_draw_lighting(scenario, light),
        ground_materials=scenario.ground.materials,
        trail_material=scenario.ground.trail,
        patch_size_m=scenario.ground.patch_size_m.sample(light),
        trail=trail,
        start_pose=(0.0, 0.0, start_yaw),
        goal_x_m=task.length_m,
        bounds=bounds,
        look_seed=int(look_seq.generate_state(1)[0]),
    )


def _draw_lighting(scenario: Scenario, rng: np.random.Generator) -> Lighting:
    spec = scenario.lighting
    sky = spec.sky[int(rng.integers(len(spec.sky)))]
    horizon = np.asarray(MATERIALS[sky].stops[0], dtype=float)
    return Lighting(
        sky=sky,
        sun_elevation_rad=math.radians(spec.sun_elevation_deg.sample(rng)),
        sun_azimuth_rad=math.radians(spec.sun_azimuth_deg.sample(rng)),
        ambient=spec.ambient.sample(rng),
        sun_strength=SUN_STRENGTH[sky],
        fog_distance_m=spec.fog_distance_m.sample(rng),
        fog_rgb=tuple(int(v) for v in horizon),  # type: ignore[arg-type]
        canopy=spec.canopy.sample(rng),
    )


def _draw_trail(scenario: Scenario, rng: np.random.Generator) -> Trail | None:
    spec = scenario.corridor
    if spec is None:
        return None
    return Trail(
        half_width_m=spec.half_width_m.sample(rng),
        amplitude_m=spec.amplitude_m.sample(rng),
        wavelength_m=spec.wavelength_m.sample(rng),
        phase_rad=float(rng.uniform(0.0, 2.0 * math.pi)),
    )


class _Placer:
    """Places obstacles one by one, keeping the free gap between them."""

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator,
        bounds: tuple[float, float, float, float],
        trail: Trail | None,
    ) -> None:
        self.scenario, self.rng, self.bounds, self.trail = scenario, rng, bounds, trail
        self.obstacles: list[Obstacle] = []
        self._xy = np.zeros((0, 2))
        self._r = np.zeros(0)
        self._gap_checked = np.zeros(0, dtype=bool)

    def _add(self, obstacle: Obstacle, gap_checked: bool = True) -> None:
        self.obstacles.append(obstacle)
        self._xy = np.vstack([self._xy, [obstacle.x_m, obstacle.y_m]])
        self._r = np.append(self._r, obstacle.radius_m)
        self._gap_checked = np.append(self._gap_checked, gap_checked)

    def place_border(self) -> None:
        """Line the sides and the back of the field so nothing drives out of it."""
        spec = self.scenario.border
        x0, x1, y0, y1 = self.bounds
        sides = [((x0, y1), (x1, y1)), ((x0, y0), (x1, y0)), ((x0, y0), (x0, y1))]
        for (ax, ay), (bx, by) in sides:
            length = math.hypot(bx - ax, by - ay)
            yaw = math.atan2(by - ay, bx - ax)
            if spec.shape == "wall":
                count = max(1, math.ceil(length / 2.0))
                for i in range(count):
                    f = (i + 0.5) / count
                    self._add(
                        self._box(
                            "wall",
                            ax + f * (bx - ax),
                            ay + f * (by - ay),
                            yaw,
                            length / count + 0.05,
                            0.2,
                            spec.height_m.sample(self.rng),
                            spec.materials,
                        ),
                        gap_checked=False,
                    )
                continue
            along = 0.0
            while along < length:
                radius = spec.radius_m.sample(self.rng)
                f = along / length
                jitter = self.rng.normal(0.0, 0.1)
                self._add(
                    self._round(
                        spec.shape,
                        ax + f * (bx - ax) - jitter * math.sin(yaw),
                        ay + f * (by - ay) + jitter * math.cos(yaw),
                        radius,
                        spec.height_m.sample(self.rng),
                        spec.materials,
                    ),
                    gap_checked=False,
                )
                along += 2 * radius + spec.spacing_m.sample(self.rng)

    def place_corridor_walls(self) -> None:
        """Two continuous walls of short segments following the trail's bends."""
        spec, trail = self.scenario.corridor, self.trail
        assert spec is not None and trail is not None
        x0, x1 = self.bounds[0], self.bounds[1]
        step = 1.0
        thickness = 0.3
        for x in np.arange(x0, x1, step):
            xm = x + step / 2
            yaw = trail.heading_rad(xm)
            offset = trail.half_width_m + thickness / 2
            seg = step / math.cos(yaw) + 0.15  # overlap a little so bends leave no gaps
            for side in (1.0, -1.0):
                cx = xm - side * offset * math.sin(yaw)
                cy = float(trail.centre_y(xm)) + side * offset * math.cos(yaw)
                self._add(
                    self._box(
                        "wall",
                        cx,
                        cy,
                        yaw,
                        seg,
                        thickness,
                        spec.wall_height_m.sample(self.rng),
                        spec.wall_materials,
                    ),
                    gap_checked=False,
                )

    def place_family(self, family: ObstacleFamily) -> None:
        """Scatter ``family`` over its region at its density, keeping gaps."""
        x0, x1, y0, y1 = self.bounds
        area = (x1 - x0) * (y1 - y0)
        count = round(family.density_per_100m2 * area / 100.0)
        for _ in range(count):
            self._place_one(family)

    def _place_one(self, family: ObstacleFamily, tries: int = 40) -> None:
        x0, x1, y0, y1 = self.bounds
        margin = 0.6
        xs = self.rng.uniform(x0 + margin, x1 - margin, tries)
        ys = self.rng.uniform(y0 + margin, y1 - margin, tries)
        yaw = float(self.rng.uniform(0.0, math.pi))
        obstacle = self._draw(family, 0.0, 0.0, yaw)
        r = obstacle.radius_m
        ok = np.hypot(xs, ys) > self.scenario.task.start_clear_m + r
        ok &= self._region_ok(family.region, xs, ys, r)
        if self._r.size:
            dist = np.hypot(xs[:, None] - self._xy[:, 0], ys[:, None] - self._xy[:, 1])
            gap = dist - r - self._r
            need = np.where(
                self._gap_checked | (family.region == "field"), self.scenario.min_gap_m, 0.3
            )
            ok &= (gap >= need).all(axis=1)
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            return  # the field is full here; a denser file just saturates
        i = int(hits[0])
        self._add(dataclasses.replace(obstacle, x_m=float(xs[i]), y_m=float(ys[i])))

    def _region_ok(self, region: str, xs: np.ndarray, ys: np.ndarray, r: float) -> np.ndarray:
        y0, y1 = self.bounds[2], self.bounds[3]
        inner = (ys - r > y0 + 0.5 + self.scenario.min_gap_m) & (
            ys + r < y1 - 0.5 - self.scenario.min_gap_m
        )
        if self.trail is None:
            return inner
        off = np.abs(ys - self.trail.centre_y(xs))
        hw = self.trail.half_width_m
        if region == "trail":
            # The far side always keeps PASSABLE_M free: the trail stays drivable.
            return (off + r <= hw - 0.1) & (hw - r >= PASSABLE_M)
        return (off - r > hw + 0.6) & (ys - r > y0 + 0.3) & (ys + r < y1 - 0.3)

    def _draw(self, family: ObstacleFamily, x: float, y: float, yaw: float) -> Obstacle:
        height = family.height_m.sample(self.rng)
        if family.is_box:
            return self._box(
                family.shape,
                x,
                y,
                yaw,
                family.length_m.sample(self.rng),
                family.width_m.sample(self.rng),
                height,
                family.materials,
            )
        return self._round(
            family.shape, x, y, family.radius_m.sample(self.rng), height, family.materials
        )

    def _material(self, materials: tuple[str, ...]) -> str:
        return materials[int(self.rng.integers(len(materials)))]

    def _round(
        self,
        shape: str,
        x: float,
        y: float,
        radius: float,
        height: float,
        materials: tuple[str, ...],
    ) -> Obstacle:
        return Obstacle(
            shape,
            x,
            y,
            0.0,
            radius,
            2 * radius,
            2 * radius,
            height,
            self._material(materials),
            float(self.rng.uniform(0.85, 1.15)),
        )

    def _box(
        self,
        shape: str,
        x: float,
        y: float,
        yaw: float,
        length: float,
        width: float,
        height: float,
        materials: tuple[str, ...],
    ) -> Obstacle:
        radius = math.hypot(length, width) / 2
        return Obstacle(
            shape,
            x,
            y,
            yaw,
            radius,
            length,
            width,
            height,
            self._material(materials),
            float(self.rng.uniform(0.85, 1.15)),
        )
