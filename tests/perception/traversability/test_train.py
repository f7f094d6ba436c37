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


def test_train_cli_names_the_missing_recording_reader(tmp_path, cli_args):
    args = cli_args(train, [str(tmp_path), "--out", str(tmp_path / "m.pt")])
    try:
        import rover.recording.reader  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="rover.recording"):
            train.run(args)
    else:
        with pytest.raises(DataError):
            train.run(args)  # an empty folder holds no recordings
