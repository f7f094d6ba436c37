"""Exports for TensorRT and C++ give the model's outputs on real simulator frames."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from perception import export
from perception.infer import save_checkpoint
from perception.steering.model import SteeringModelConfig, build_model
from rover.errors import ConfigError


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("export") / "steering.pt"
    cfg = SteeringModelConfig(arch="dave", steering_bins=0)
    return save_checkpoint(path, build_model(cfg), 0.6, {})


@pytest.fixture(scope="module")
def frames(model_path):
    return export.sample_frames(model_path, count=3)


def test_onnx_export_gives_the_same_outputs_as_the_model(model_path, frames, tmp_path):
    out = export.export_onnx(model_path, tmp_path / "steering.onnx")
    assert export.check_export(model_path, out, *frames) < export.TOLERANCE
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["rover_outputs"] == "steering,throttle"
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["left", "right"]
    assert [o.name for o in graph.output] == ["controls", "raw"]


def test_binned_model_exports_its_decoding_too(tmp_path, frames):
    torch.manual_seed(1)
    cfg = SteeringModelConfig(arch="dave", steering_bins=21)
    path = save_checkpoint(tmp_path / "binned.pt", build_model(cfg), 0.6, {})
    out = export.export_onnx(path, tmp_path / "binned.onnx")
    assert export.check_export(path, out, *frames) < export.TOLERANCE


def test_torchscript_export_gives_the_same_outputs_as_the_model(model_path, frames, tmp_path):
    out = export.export_torchscript(model_path, tmp_path / "steering.ts")
    assert export.check_export(model_path, out, *frames) < export.TOLERANCE
    single = export.check_export(model_path, out, frames[0][:1], frames[1][:1])
    assert single < export.TOLERANCE  # batch size is free


def test_export_command_writes_files_next_to_the_model(model_path, capsys):
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    assert export.run(parser.parse_args([str(model_path), "--onnx", "--torchscript"])) == 0
    assert model_path.with_suffix(".onnx").is_file()
    assert model_path.with_suffix(".ts").is_file()
    assert "max difference" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="nothing to export"):
        export.run(parser.parse_args([str(model_path)]))


def test_sample_frames_are_real_rendered_pairs(frames):
    left, right = frames
    assert left.shape == (3, 240, 320, 3) and left.dtype == np.uint8
    assert not np.array_equal(left, right)  # two eyes, two viewpoints
