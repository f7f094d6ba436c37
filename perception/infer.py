"""Load a steering checkpoint safely and run it on stereo pairs: device and precision pick.

A checkpoint is a plain dict of tensors and primitive values, loaded with
``torch.load(..., weights_only=True)``: a file from the internet cannot run code. A missing,
corrupt or foreign file raises DataError in one line that says what to do.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import warnings
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from perception.steering.model import (
    SteeringModelConfig,
    SteeringNet,
    build_model,
    prepare,
)
from perception.steering.settings import DEVICES, PRECISIONS
from rover.errors import ConfigError, DataError

CHECKPOINT_FORMAT = "rover-steering-cnn"
CHECKPOINT_VERSION = 1
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_MEMORY_NS = 500_000_000  # the last answer guides the next one only if it is this recent


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else Apple MPS, else CPU; or the device named."""
    if name not in DEVICES:
        raise ConfigError(f"device {name!r}: use one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda: no CUDA GPU visible to torch; use --device cpu or auto")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:  # private in torch.cpu; absent on other builds: then no
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            pass
    return False


def pick_precision(name: str, device: torch.device) -> torch.dtype:
    """The dtype the network's weighted layers run in; preprocessing and decoding stay fp32.

    ``auto``: fp16 on CUDA, else fp32. ``bf16`` on a CPU that computes it natively
    (`cpu_has_bf16`) takes ~0.3 ms off the pilotnet forward here, but it is opt-in: the
    rounding moves an answer by ~0.004 on average and that was enough to change where the
    bundled model wandered in one open held-out world (docs/steering.md). Training is fp32.
    """
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in PRECISIONS:
        raise ConfigError(f"precision {name!r}: use one of {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type == "cpu":
        raise ConfigError("precision fp16 runs on CUDA or MPS only: use bf16 or fp32 on a CPU")
    return _DTYPES[name]


def precision_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"``."""
    return next(k for k, v in _DTYPES.items() if v == dtype)


def software_version() -> dict[str, str]:
    """rover's package version, its git commit when run from a checkout, and torch's."""
    try:
        rover_version = metadata.version("rover")
    except metadata.PackageNotFoundError:
        rover_version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"rover": rover_version, "git": commit, "torch": str(torch.__version__)}


def plain(value: Any) -> Any:
    """Nested dicts/lists of str, int, float, bool, None only: what weights_only loads back."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, type(None))):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded steering checkpoint: config, weights and what it was trained on."""

    path: Path
    config: SteeringModelConfig
    state_dict: dict[str, torch.Tensor]
    cruise_throttle: float
    info: dict[str, Any]  # software, data, training settings, metrics

    def build(self) -> SteeringNet:
        """The model with these weights, in training layout (unfused)."""
        model = build_model(self.config)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise DataError(
                f"{self.path}: weights do not fit the {self.config.arch} model ({first}); "
                "the file is damaged or from another version: retrain or re-download it"
            ) from None
        return model


def checkpoint_dict(
    model: SteeringNet, cruise_throttle: float, info: dict[str, Any]
) -> dict[str, Any]:
    """What `save_checkpoint` writes: only tensors and primitive values."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model_config": model.cfg.to_dict(),
        "state_dict": state,
        "cruise_throttle": float(cruise_throttle),
        "software": software_version(),
        **plain(info),
    }


def save_checkpoint(
    path: str | Path, model: SteeringNet, cruise_throttle: float, info: dict[str, Any]
) -> Path:
    """Write a checkpoint atomically (a crash never leaves half a file under `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint_dict(model, cruise_throttle, info), tmp)
    tmp.replace(path)
    return path


EMPTY_MODEL_FIX = "a training run was cut short? train again (`rover train steering`)"


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a steering checkpoint with ``weights_only=True``; DataError on anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist: check the path or train one first")
    if path.stat().st_size == 0:
        raise DataError(f"model file {path} is empty (0 bytes): {EMPTY_MODEL_FIX}")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise DataError(
            f"{path} is not a readable torch checkpoint (not a zip archive): "
            "pass a model written by `rover train steering`"
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as exc:
        raise DataError(
            f"{path} is not a readable torch checkpoint ({type(exc).__name__}): "
            "pass a model written by `rover train steering`"
        ) from None
    except pickle.UnpicklingError:
        raise DataError(
            f"{path} holds code or objects, not just weights: refusing to load it; "
            "pass a model written by `rover train steering`"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise DataError(
            f"{path} is a torch file but not a rover steering model: "
            "pass a model written by `rover train steering`"
        )
    if raw.get("format_version") != CHECKPOINT_VERSION:
        raise DataError(
            f"{path} is steering checkpoint format {raw.get('format_version')}, this rover "
            f"reads {CHECKPOINT_VERSION}: retrain it or use the matching rover version"
        )
    try:
        config = SteeringModelConfig.from_dict(raw["model_config"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: bad model config in checkpoint ({exc}): retrain it") from None
    info = {k: v for k, v in raw.items() if k not in ("model_config", "state_dict")}
    return Checkpoint(path, config, raw["state_dict"], float(raw.get("cruise_throttle", 0.5)), info)


class PairPreparer:
    """`prepare` for one stereo pair of numpy frames, fast, into one reused buffer.

    OpenCV's area resize pools whole pixels with the same round-half-up as `prepare`, 5x
    faster (0.04 vs 0.21 ms a pair here). It is used only where it gives `prepare`'s exact
    bits, checked once on random frames at construction (SIMD paths differ between CPUs and
    OpenCV builds); elsewhere `prepare` runs. Either way the model sees what training saw.
    The returned tensor is overwritten by the next call.
    """

    def __init__(self, cfg: SteeringModelConfig):
        self.cfg = cfg
        h, w = cfg.input_hw
        self._rows = slice(cfg.crop_top_px, cfg.image_height_px - cfg.crop_bottom_px)
        self._out = np.empty((1, 6, h, w), np.uint8)
        self._tensor = torch.from_numpy(self._out)
        self.fast = cfg.downsample > 1 and self._opencv_agrees()

    def __call__(self, left: np.ndarray, right: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 per eye -> (1, 6, h, w) uint8, as `prepare` gives it."""
        if self.fast:
            return self._opencv(left, right)
        return prepare(torch.from_numpy(left)[None], torch.from_numpy(right)[None], self.cfg)

    def _opencv(self, left: np.ndarray, right: np.ndarray) -> torch.Tensor:
        h, w = self.cfg.input_hw
        for eye, frame in enumerate((left, right)):
            small = cv2.resize(frame[self._rows], (w, h), interpolation=cv2.INTER_AREA)
            self._out[0, 3 * eye : 3 * eye + 3] = small.transpose(2, 0, 1)
        return self._tensor

    def _opencv_agrees(self) -> bool:
        rng = np.random.default_rng(0)
        shape = (self.cfg.image_height_px, self.cfg.image_width_px, 3)
        for _ in range(4):
            left, right = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
            want = prepare(torch.from_numpy(left)[None], torch.from_numpy(right)[None], self.cfg)
            if not torch.equal(self._opencv(left, right), want):
                return False
        return True


def _frozen(module: torch.nn.Module, example: tuple) -> torch.jit.ScriptModule:
    """`module` traced on `example` and frozen (weights folded in as constants)."""
    # the agreement check in `SteeringPredictor.freeze` stands in for the tracer's own
    with warnings.catch_warnings():  # torch 2.10+ calls TorchScript deprecated; it still runs
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.freeze(torch.jit.trace(module.eval(), example, check_trace=False))


class _Answer(torch.nn.Module):
    """A prepared pair -> decoded outputs: the network and its decoding, as one callable."""

    def __init__(self, model: SteeringNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model.forward_raw(x))


class _AnswerAfter(_Answer):
    """The same, decoded near the previous frame's steering (a binned model keeps its way)."""

    def forward(self, x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model.forward_raw(x), previous)


@dataclass(frozen=True)
class Prediction:
    """The model's answer to one stereo pair, in the bus's normalised units."""

    steering: float
    throttle: float


class SteeringPredictor:
    """Runs a checkpoint on stereo pairs: eval mode, channels_last, reduced precision where
    the hardware has it (`pick_precision`).

    ``smoothing_s`` eases the steering output (exponential, on the frames' stamps) against
    frame-to-frame jitter; 0 leaves it raw.
    """

    def __init__(
        self,
        checkpoint: Checkpoint | str | Path,
        device: str = "auto",
        smoothing_s: float = 0.0,
        precision: str = "auto",
    ):
        self.checkpoint = (
            checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        )
        self.config = self.checkpoint.config
        self.device = pick_device(device)
        self.dtype = pick_precision(precision, self.device)
        self.precision = precision_name(self.dtype)
        model = self.checkpoint.build().eval().to(self.device)
        model.features.to(self.dtype)  # the weighted layers; `forward_raw` casts their input
        model.head.to(self.dtype)
        self.model = model
        self.smoothing_s = smoothing_s
        self._steering: float | None = None
        self._stamp_ns = 0
        cfg = self.config
        self.frame_shape = (cfg.image_height_px, cfg.image_width_px, 3)
        self._prepare = PairPreparer(cfg)
        self._previous = torch.zeros(1, device=self.device)  # reused: no tensor per frame
        self._answer = _Answer(model)
        self._answer_after = _AnswerAfter(model)
        self.frozen = False

    def check_frame(self, left: np.ndarray, right: np.ndarray) -> None:
        """DataError when the cameras' frames are not what the model was trained on."""
        if left.shape != self.frame_shape or right.shape != self.frame_shape:
            h, w = self.frame_shape[:2]
            raise DataError(
                f"model {self.checkpoint.path.name} expects {w}x{h} RGB frames, the camera "
                f"gives {left.shape[1]}x{left.shape[0]}: set the camera to {w}x{h} "
                "or train a model on recordings from this camera"
            )

    @torch.inference_mode()
    def raw(self, left: np.ndarray, right: np.ndarray, previous: float | None = None) -> np.ndarray:
        """Model outputs for one pair (float32, one per output), unsmoothed and unclamped;
        ``previous`` steering lets a binned model keep to the way it chose."""
        x = self.prepare(left, right)
        if previous is None:
            out = self._answer(x)
        else:
            self._previous.fill_(previous)
            out = self._answer_after(x, self._previous)
        return out[0].float().cpu().numpy()

    def prepare(self, left: np.ndarray, right: np.ndarray) -> torch.Tensor:
        """The network's input for one pair (cropped, pooled, on the device); the tensor is
        overwritten by the next call."""
        self.check_frame(left, right)
        x = self._prepare(np.ascontiguousarray(left), np.ascontiguousarray(right))
        return x.to(self.device)

    def forward_prepared(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded outputs (1, outputs) of a prepared pair on the device, no previous
        steering: the bare network the node runs (frozen once `freeze` succeeded)."""
        return self._answer(x)

    def freeze(self) -> bool:
        """Run the network and its decoding as one frozen TorchScript graph from now on.

        The eager call spends ~0.3-0.5 ms a frame (of ~1.7) in Python between the layers;
        the frozen graph gives the eager answers to the bit, which is checked here on random
        frames (with and without a previous steering), else the predictor stays eager. Costs
        ~0.2 s once: for a node that answers a camera, not for a one-off prediction.
        Returns whether the frozen graph is in use.
        """
        x = self._prepare(*(np.zeros(self.frame_shape, np.uint8) for _ in range(2))).clone()
        x = x.to(self.device)
        try:
            with torch.inference_mode():
                plain = _frozen(_Answer(self.model), (x,))
                after = _frozen(_AnswerAfter(self.model), (x, self._previous.clone()))
        except (RuntimeError, AttributeError, NotImplementedError):  # a torch without it
            return False
        if not self._agrees(plain, after):
            return False
        self._answer, self._answer_after = plain, after
        self.frozen = True
        return True

    def _agrees(self, plain, after) -> bool:
        # the first calls profile; the graph that runs from then on is optimised from them:
        # compare that one (frames 3 on), and the first ones too
        rng = np.random.default_rng(0)
        with torch.inference_mode():
            for i in range(6):
                left, right = (rng.integers(0, 256, self.frame_shape, np.uint8) for _ in (0, 1))
                x = self._prepare(left, right).to(self.device)
                prev = torch.tensor([0.5 - i / 3], device=self.device)
                if not torch.equal(plain(x), _Answer(self.model)(x)):
                    return False
                if not torch.equal(after(x, prev), _AnswerAfter(self.model)(x, prev)):
                    return False
        return True

    def predict(self, left: np.ndarray, right: np.ndarray, stamp_ns: int = 0) -> Prediction:
        """Steering and throttle in [-1, 1] for one stereo pair captured at ``stamp_ns``."""
        fresh = self._steering is not None and 0 < stamp_ns - self._stamp_ns < _MEMORY_NS
        out = self.raw(left, right, self._steering if fresh else None)
        steering = float(np.clip(out[0], -1.0, 1.0))
        if self.smoothing_s > 0 and fresh:
            alpha = 1.0 - math.exp(-(stamp_ns - self._stamp_ns) / 1e9 / self.smoothing_s)
            steering = self._steering + alpha * (steering - self._steering)
        self._steering, self._stamp_ns = steering, stamp_ns
        if self.config.predict_throttle:
            throttle = float(np.clip(out[1], -1.0, 1.0))
        else:
            throttle = self.checkpoint.cruise_throttle
        return Prediction(steering, throttle)
