"""Training the traversability segmenter: from stereo labels of simulator drives, and from the
command line."""

from __future__ import annotations

import pytest
import torch

from perception import stereo
from perception.traversability import data, train
from perception.traversability.model import SegmenterNet, load_model
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


@pytest.fixture(scope="module")
def labelled_set(tiny_segmenter) -> data.LabelledSet:
    """Stereo-labelled frames from short forest and open drives (no simulator truth)."""
    pairs = data.sim_pairs(("forest", "open"), seeds=(3,), steps=64, every=4)
    return data.label_pairs(pairs, stereo.StereoLabeler(), tiny_segmenter, progress=False)


def test_labelled_set_counts_stereo_labels_per_cell(labelled_set):
    assert len(labelled_set) == 32
    assert labelled_set.images.shape[1:] == (48, 64, 3)
    counts = labelled_set.counts
    assert counts.shape[1:] == (3, 24, 32)
    assert counts.sum(1).max() <= 100  # a 10x10 pixel cell holds at most 100 labels
    assert counts[:, 1].sum() > 0 and counts[:, 0].sum() > counts[:, 1].sum()


def test_training_learns_from_stereo_labels(labelled_set, tiny_segmenter):
    train_set, val_set = labelled_set.split(0.25)
    torch.manual_seed(0)
    before = train.evaluate(SegmenterNet(tiny_segmenter), val_set, tiny_segmenter)
    cfg = train.TrainConfig(epochs=8, batch_size=8, lr=1e-2, threads=1)
    net, metrics = train.train(train_set, val_set, tiny_segmenter, cfg, progress=False)
    assert metrics["val_accuracy"] > 0.9
    assert metrics["val_accuracy"] > before["val_accuracy"] + 0.2
    assert metrics["train_frames"] == 24
    # obstacles are the rare class: the class weights must keep them from being ignored
    assert train.evaluate(net, train_set, tiny_segmenter)["val_obstacle_iou"] > 0.3
