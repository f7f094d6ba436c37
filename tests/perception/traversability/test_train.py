"""Training the traversability segmenter from the command line."""

from __future__ import annotations

import pytest

from perception.traversability import train
from perception.traversability.model import load_model
from rover.errors import ConfigError, DataError


def test_train_cli_from_the_simulator_writes_a_loadable_model(tmp_path, capsys, cli_args):
    out = tmp_path / "trav.pt"
    argv = ["--sim", "open", "--sim-seeds", "4", "--sim-steps", "24"]
    argv += ["--epochs", "1", "--out", str(out), "--quiet"]
    assert train.run(cli_args(train, argv)) == 0
    net, info = load_model(out)
    assert info["metrics"]["train_frames"] >= 1 and "val_accuracy" in info["metrics"]
    assert "geometry from simulator" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="not both"):
        train.run(cli_args(train, ["rec", "--sim", "open", "--out", str(out)]))


def test_train_cli_on_a_folder_without_recordings_is_one_line(tmp_path, cli_args):
    args = cli_args(train, [str(tmp_path), "--out", str(tmp_path / "m.pt")])
    with pytest.raises(DataError, match="holds no recordings") as err:
        train.run(args)
    assert "\n" not in str(err.value) and not (tmp_path / "m.pt").exists()
