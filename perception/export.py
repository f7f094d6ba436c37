"""`rover export MODEL --onnx [--torchscript]`: the steering model for TensorRT or C++.

Exports the inference model (fp32; TensorRT picks fp16 itself) with its
preprocessing inside: inputs ``left`` and ``right`` are camera frames, uint8 (N, H, W, 3) RGB;
output ``controls`` is (N, k): steering, then throttle when the model predicts it; output
``raw`` is the head before decoding (steering-bin logits, then throttle) for a runtime that
applies the node's keep-to-the-chosen-way decoding (`SteeringNet.decode` with ``previous``).
Each export is run back on real frames and compared with the PyTorch model before it is kept.

On a Jetson: ``trtexec --onnx=steering.onnx --fp16 --saveEngine=steering.plan``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from perception.infer import load_checkpoint
from perception.steering.model import SteeringNet, prepare
from rover.errors import ConfigError, DataError

ONNX_OPSET = 17
TOLERANCE = 1e-4  # fp32 through a different runtime: same maths, different summation order


def _example(model: SteeringNet, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.cfg
    shape = (batch, cfg.image_height_px, cfg.image_width_px, 3)
    g = torch.Generator().manual_seed(0)
    left = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    return left, torch.roll(left, 3, dims=2)


class _Exported(torch.nn.Module):
    """Both outputs: decoded controls and the raw head."""

    def __init__(self, net: SteeringNet):
        super().__init__()
        self.net = net

    def forward(self, left: torch.Tensor, right: torch.Tensor):
        raw = self.net.forward_raw(prepare(left, right, self.net.cfg))
        return self.net.decode(raw), raw


def inference_model(model_path: str | Path) -> SteeringNet:
    """The checkpoint's model as it runs in the node: eval mode, fp32, CPU."""
    return load_checkpoint(model_path).build().eval()


def export_onnx(model_path: str | Path, out: str | Path) -> Path:
    """Write an ONNX file (dynamic batch) with the model config in its metadata."""
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "ONNX export needs the onnx package: pip install 'rover[export]'"
        ) from None
    model, out = inference_model(model_path), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = {0: "batch"}
    exported = _Exported(model).eval()
    with warnings.catch_warnings():
        # the TorchScript-based exporter works without onnxscript; its deprecation is noise
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            exported,
            _example(model),
            str(out),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["left", "right"],
            output_names=["controls", "raw"],
            dynamic_axes={"left": batch, "right": batch, "controls": batch, "raw": batch},
        )
    proto = onnx.load(str(out))
    meta = {
        "rover_model_config": json.dumps(model.cfg.to_dict()),
        "rover_outputs": ",".join(model.cfg.outputs),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def export_torchscript(model_path: str | Path, out: str | Path) -> Path:
    """Write a traced TorchScript file (loads in C++ with torch::jit::load); it returns the
    (controls, raw) pair."""
    model, out = inference_model(model_path), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(_Exported(model).eval(), _example(model))
    traced.save(str(out))
    return out


def run_onnx(path: str | Path, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Outputs of an exported file: onnxruntime when installed, else ONNX's reference runtime."""
    feeds = {"left": left, "right": right}
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(str(path)).run(["controls"], feeds)[0]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["controls"], feeds)[0]


def check_export(
    model_path: str | Path, exported: str | Path, left: np.ndarray, right: np.ndarray
) -> float:
    """Largest output difference between the checkpoint and an export on frames (N, H, W, 3)."""
    model = inference_model(model_path)
    with torch.no_grad():
        want = model(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    path = Path(exported)
    if path.suffix == ".onnx":
        got = run_onnx(path, left, right)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.load(str(path))
        with torch.no_grad():
            got = traced(torch.from_numpy(left), torch.from_numpy(right))[0].numpy()
    return float(np.abs(np.asarray(got) - want).max())


def sample_frames(model_path: str | Path, count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A few real stereo pairs from the simulator, at the model's frame size."""
    from sim.camera import CameraModel
    from sim.simulation import Simulation

    cfg = load_checkpoint(model_path).config
    camera = CameraModel(width_px=cfg.image_width_px, height_px=cfg.image_height_px)
    sim = Simulation("forest", camera=camera)
    lefts, rights = [], []
    for i in range(count):
        left, right, _ = sim.render()
        lefts.append(left)
        rights.append(right)
        for _ in range(10):
            sim.step(0.3 * (-1) ** i, 0.6)
    return np.stack(lefts), np.stack(rights)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("model", help="checkpoint from `rover train steering`")
    parser.add_argument("--onnx", nargs="?", const="", metavar="PATH", help="write ONNX")
    parser.add_argument(
        "--torchscript", nargs="?", const="", metavar="PATH", help="write TorchScript"
    )


def run(args: argparse.Namespace) -> int:
    """Export, then check each file against the checkpoint on real frames."""
    if args.onnx is None and args.torchscript is None:
        raise ConfigError("nothing to export: add --onnx and/or --torchscript")
    model = Path(args.model)
    left, right = sample_frames(model)
    for kind, target, suffix, write in (
        ("ONNX", args.onnx, ".onnx", export_onnx),
        ("TorchScript", args.torchscript, ".ts", export_torchscript),
    ):
        if target is None:
            continue
        out = write(model, target or model.with_suffix(suffix))
        diff = check_export(model, out, left, right)
        if diff > TOLERANCE:
            out.unlink()
            raise DataError(
                f"{kind} export differs from the model by {diff:.2g} (> {TOLERANCE}): "
                "not kept; report this with your torch and onnx versions"
            )
        print(f"wrote {out} ({kind}); max difference to the model on real frames: {diff:.1e}")
    return 0
