"""The segmenter's saved file: it loads with the same predictions, bad files are one line; the bundled model."""

from __future__ import annotations

import pytest
import torch

from perception.traversability.model import SegmenterNet, load_model, save_model
from perception.traversability.pipeline import (
    TraversabilityConfig,
)
from rover.errors import DataError


def test_saved_model_loads_with_the_same_predictions(tmp_path, stereo_geometry, tiny_segmenter):
    net = SegmenterNet(tiny_segmenter).eval()
    path = save_model(tmp_path / "trav.pt", net, stereo_geometry, {"val_accuracy": 0.5})
    loaded, info = load_model(path)
    x = torch.randn(1, 4, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert info["metrics"]["val_accuracy"] == 0.5 and len(info["sha256"]) == 12


def test_bad_model_files_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="rover train traversability"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(DataError, match="retrain"):
        load_model(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(DataError, match="not a rover-traversability"):
        load_model(foreign)


def test_the_bundled_model_is_the_default_and_loads_when_shipped():
    from pathlib import Path

    from perception.traversability.pipeline import resolve_model

    assert TraversabilityConfig().model == "bundled"
    assert resolve_model("") == "" and resolve_model("my.pt") == "my.pt"
    path = resolve_model("bundled")  # the weights ship with the project
    assert path and Path(path).is_file()
    net, info = load_model(path)
    assert info["replay"] is not None and info["metrics"]["val_accuracy"] > 0.9
