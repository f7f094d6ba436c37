"""Scenario files: bundled families, the regression suite, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from rover.errors import ConfigError
from sim.scenario import (
    RESERVED_SEED_MIN,
    SCENARIO_DIR,
    Scenario,
    list_suite,
    load_scenario,
    resolve_scenario_path,
)

FAMILIES = ("open", "forest", "corridor")


@pytest.mark.parametrize("name", FAMILIES)
def test_bundled_family_loads_by_name_and_by_path(name):
    by_name = load_scenario(name)
    by_path = load_scenario(SCENARIO_DIR / f"{name}.toml")
    assert by_name == by_path
    assert by_name.name == name
    assert by_name.obstacles, "every family places obstacles"
    assert not by_name.held_out and by_name.seed < RESERVED_SEED_MIN


def test_unknown_scenario_names_the_choices():
    with pytest.raises(ConfigError, match="open") as err:
        load_scenario("swamp")
    assert "swamp" in str(err.value) and "\n" not in str(err.value)


def test_regression_suite_covers_families_and_held_out_cases():
    suite = [load_scenario(p) for p in list_suite("regression")]
    assert len(suite) >= 8
    assert len({s.name for s in suite}) == len(suite)
    for family in FAMILIES:
        assert any(s.name.startswith(family) for s in suite), family
    held_out = [s for s in suite if s.held_out]
    assert len(held_out) >= 3
    assert all(s.seed >= RESERVED_SEED_MIN for s in held_out)
    assert all(s.seed < RESERVED_SEED_MIN for s in suite if not s.held_out)
    # Regression episodes stay short so the suite runs quickly.
    assert all(s.task.time_limit_s <= 60 for s in suite)


def test_held_out_scenarios_show_nothing_a_training_family_shows():
    seen_in_training = set().union(*(load_scenario(f).appearance_materials() for f in FAMILIES))
    for path in list_suite("regression"):
        scenario = load_scenario(path)
        if scenario.held_out:
            shared = scenario.appearance_materials() & seen_in_training
            assert not shared, f"{scenario.name} reuses training materials {shared}"


def test_base_inherits_tables_and_overrides_keys(tmp_path):
    child = tmp_path / "short_forest.toml"
    child.write_text('base = "forest"\nseed = 5\n[task]\nlength_m = 12.0\n')
    scenario = load_scenario(child)
    forest = load_scenario("forest")
    assert scenario.task.length_m == 12.0
    assert scenario.task.width_m == forest.task.width_m
    assert scenario.obstacles == forest.obstacles
    assert scenario.name == "short_forest" and scenario.seed == 5


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[task]\nlenght_m = 5\n", "task.lenght_m"),
        ("[task]\nlength_m = -3\n", "task.length_m"),
        ("[lighting]\nfog_distance_m = [50, 10]\n", "lighting.fog_distance_m"),
        ('[[obstacles]]\nshape = "dragon"\ndensity_per_100m2 = 1\n', "obstacles[0].shape"),
        ('[[obstacles]]\nshape = "tree"\n', "density_per_100m2"),
        ('[[obstacles]]\nshape = "tree"\ndensity_per_100m2 = 1\nmaterials = ["gold"]\n', "gold"),
        ('[[obstacles]]\nshape = "cone"\ndensity_per_100m2 = 1\nregion = "trail"\n', "corridor"),
        ("held_out = true\nseed = 4\n", str(RESERVED_SEED_MIN)),
        ("seed = -1\n", "seed"),
        ("[task\nlength_m = 5\n", "invalid TOML"),
        ('base = "bad.toml"\n', "loops"),
    ],
)
def test_bad_file_raises_one_line_config_error_naming_the_problem(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    message = str(err.value)
    assert needle in message
    assert "\n" not in message
    assert str(path) in message or "not found" in message


def test_too_many_obstacle_materials_is_refused():
    families = [
        {"shape": "rock", "density_per_100m2": 0.1, "materials": [m]}
        for m in ("rock_grey", "rock_mossy", "rock_red")
    ] + [
        {"shape": "box", "density_per_100m2": 0.1, "materials": [m]}
        for m in ("cardboard", "crate_wood", "crate_blue", "brick", "concrete", "hedge")
    ]
    with pytest.raises(ConfigError, match="at most 8"):
        Scenario.from_dict({"name": "busy", "obstacles": families})


def test_suite_folder_errors():
    with pytest.raises(ConfigError, match="not found"):
        list_suite("no/such/folder")
    assert resolve_scenario_path("regression/forest_201").name == "forest_201.toml"
