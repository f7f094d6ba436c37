"""Per-frame traversability: stereo near, learned far, fused, summarised along arcs.

    pipe = TraversabilityPipeline.from_config(TraversabilityConfig(model="trav.pt"))
    result = pipe.process(left, right)     # RGB uint8 pair, rectified
    result.polar.free_m                    # free distance along each candidate arc

Stages, each timed: disparity (SGBM), labels (plane fit, ground/obstacle), segmenter (network
features, the offline head or the adapted head's prediction), fuse (near range from stereo,
the rest from the network; arcs), online (the adapted head learns from this frame, after the
answer is ready). Pure compute: no bus.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields, replace

import cv2
import numpy as np

from perception import stereo
from perception.traversability.online import OnlineConfig
from perception.traversability.polar import ArcCaster, ArcConfig, PolarSummary
from rover.config import dataclass_from_dict
from rover.errors import ConfigError

log = logging.getLogger("perception.traversability")
UNKNOWN_COST = 255  # cost-map value where nothing is known (no stereo, no model)
_NESTED = {"stereo": stereo.StereoConfig, "online": OnlineConfig, "arcs": ArcConfig}


@dataclass(frozen=True)
class _Flat:
    model: str = "bundled"  # segmenter file; "bundled": the one shipped; "": stereo only
    threads: int = 1  # torch threads: several processes share the cores
    opencv_threads: int = 0  # SGBM's threads; 0: OpenCV's default (every core)
    map_width_px: int = 80
    map_height_px: int = 60
    camera_height_m: float = 0.25  # over flat ground; used with a real camera calibration
    camera_pitch_deg: float = 0.0  # downward tilt; used with a real camera calibration


@dataclass(frozen=True)
class TraversabilityConfig(_Flat):
    """[traversability] section: model file, threads, published map size, camera height and
    pitch (real rigs), and sub-tables [traversability.stereo], [.online], [.arcs]."""

    stereo: stereo.StereoConfig = field(default_factory=stereo.StereoConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    arcs: ArcConfig = field(default_factory=ArcConfig)

    @classmethod
    def from_dict(cls, raw: dict) -> TraversabilityConfig:
        """Build from the [traversability] table; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(
                f"[traversability] unknown key(s) {sorted(unknown)}: valid keys are {sorted(known)}"
            )
        nested = {}
        for key, sub in _NESTED.items():
            table = raw.get(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[traversability.{key}] must be a table")
            nested[key] = sub.from_dict(table)
        flat = dataclass_from_dict(
            _Flat, {k: v for k, v in raw.items() if k not in _NESTED}, "traversability"
        )
        if flat.threads < 1 or flat.opencv_threads < 0:
            raise ConfigError("[traversability] use threads >= 1 and opencv_threads >= 0")
        if flat.map_width_px < 8 or flat.map_height_px < 8:
            raise ConfigError("[traversability] use a map of at least 8x8")
        if not 0.02 <= flat.camera_height_m <= 5.0:
            raise ConfigError(
                f"[traversability] camera_height_m = {flat.camera_height_m}: measure the lens "
                "height over flat ground in metres"
            )
        return cls(**vars(flat), **nested)

    def with_overrides(
        self, model: str | None = None, online: bool | None = None
    ) -> TraversabilityConfig:
        """A copy with the model file and/or online switch replaced (None keeps them)."""
        out = self
        if model is not None:
            out = replace(out, model=model)
        if online is not None:
            out = replace(out, online=replace(out.online, enabled=online))
        return out


def resolve_model(model: str) -> str:
    """The model file a config names: "bundled" is the shipped one (none in a checkout that
    lacks it: stereo only), "" is none."""
    if model != "bundled":
        return model
    from perception.traversability.bundled import bundled_model_path

    path = bundled_model_path()
    if path is None:
        log.warning("no bundled traversability model in this checkout: stereo only")
        return ""
    return str(path)


@dataclass(frozen=True)
class TraversabilityResult:
    """One frame's answer."""

    obstacle_prob: np.ndarray  # (H, W) float32 fused: stereo near, network beyond
    known: np.ndarray  # (H, W) bool: stereo or the network said something
    polar: PolarSummary
    stereo: stereo.StereoFrame
    learned_prob: np.ndarray | None  # (H, W) offline head, when computed
    online_prob: np.ndarray | None  # (H, W) adapted head, when online is on
    timings_ms: dict[str, float]

    def cost_map(self, width_px: int, height_px: int) -> np.ndarray:
        """(height, width) uint8: 0 free .. 254 obstacle, 255 unknown (area-averaged)."""
        size = (width_px, height_px)
        prob = cv2.resize(self.obstacle_prob, size, interpolation=cv2.INTER_AREA)
        known = cv2.resize(self.known.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        cost = np.round(prob * 254).astype(np.uint8)
        cost[known < 0.5] = UNKNOWN_COST
        return cost


class TraversabilityPipeline:
    """Holds the matcher, the network, the online head and the arc caster for a run."""

    def __init__(
        self,
        cfg: TraversabilityConfig | None = None,
        geom: stereo.StereoGeometry | None = None,
        net=None,
        prior=None,
    ):
        self.cfg = cfg = cfg or TraversabilityConfig()
        self.geom = geom or stereo.StereoGeometry.from_camera_model()
        if cfg.opencv_threads:
            cv2.setNumThreads(cfg.opencv_threads)
        self.labeler = stereo.StereoLabeler(self.geom, cfg.stereo)
        self.arcs = ArcCaster(self.geom, cfg.arcs)
        self.net = net
        self.online = None
        self._pending = None  # (online inputs, stereo counts) waiting for `learn`
        self.model_hash = ""
        if net is not None:
            import torch

            from perception.traversability.model import ONLINE_EXTRA, fused_for_inference
            from perception.traversability.online import OnlineHead

            torch.set_num_threads(cfg.threads)
            self.net = fused_for_inference(net).to(memory_format=torch.channels_last)
            width = net.cfg.features + ONLINE_EXTRA
            self.online = OnlineHead(net.head, width, cfg.online, prior)

    @classmethod
    def from_config(
        cls, cfg: TraversabilityConfig, geom: stereo.StereoGeometry | None = None
    ) -> TraversabilityPipeline:
        """Load the configured model (if any) and build the pipeline."""
        net = None
        path = resolve_model(cfg.model)
        if path:
            from perception.traversability.model import load_model

            net, info = load_model(path)
            pipe = cls(cfg, geom, net, info["replay"])
            pipe.model_hash = info["sha256"]
            return pipe
        return cls(cfg, geom, net)

    def process(
        self, left: np.ndarray, right: np.ndarray, offline: bool = False, learn: bool = True
    ) -> TraversabilityResult:
        """Everything for one rectified pair; ``offline`` also keeps the offline head's map
        when online adaptation is on (evaluation compares the two). ``learn=False`` leaves the
        online step for a later `learn()` call: the node publishes first, then learns."""
        t = [time.perf_counter()]
        disparity = self.labeler.disparity(left, right)
        t.append(time.perf_counter())
        labels = self.labeler.label(disparity)
        t.append(time.perf_counter())
        learned = online = None
        adapting = self.online is not None and self.online.cfg.enabled
        if self.net is not None:
            cells, learned, counts = self._segment(left, labels, offline)
            if adapting:
                online = self._upsample(self.online.predict(cells))
                self._pending = (cells, counts)
        t.append(time.perf_counter())
        prob, known = self._fuse(labels, online if online is not None else learned)
        polar = self.arcs.cast(prob, labels.plane)
        t.append(time.perf_counter())
        names = ("disparity", "labels", "segmenter", "fuse")
        timings = {n: (b - a) * 1e3 for n, a, b in zip(names, t[:-1], t[1:], strict=True)}
        timings["online"] = self.learn() if learn else 0.0
        timings["total"] = sum(timings.values())
        return TraversabilityResult(
            prob, known, polar, stereo.StereoFrame(disparity, labels), learned, online, timings
        )

    def learn(self) -> float:
        """The online head's step on the last processed frame (once); returns milliseconds."""
        if self._pending is None:
            return 0.0
        start = time.perf_counter()
        self.online.update(*self._pending)
        self._pending = None
        return (time.perf_counter() - start) * 1e3

    def _segment(self, left, labels: stereo.StereoLabels, offline: bool):
        import torch

        from perception.traversability.data import block_counts
        from perception.traversability.model import make_input, online_inputs

        plane = labels.plane
        x = make_input(left, (plane.a, plane.b, plane.c), self.geom, self.net.cfg)
        with torch.inference_mode():
            feats = self.net.features(x.contiguous(memory_format=torch.channels_last))
            need_offline = offline or self.online is None or not self.online.cfg.enabled
            learned = self._upsample(self.net.head(feats)) if need_offline else None
            # one (1, C + 4, h, w) array for the numpy online head
            cells = online_inputs(x, feats).contiguous().numpy()
        counts = block_counts(labels.labels, cells.shape[-2:])
        return cells, learned, counts

    def _upsample(self, logits) -> np.ndarray:
        """Full-size obstacle probability from (1, 3, h, w) logits (torch or numpy)."""
        from perception.traversability.model import OBSTACLE_CLASS

        z = logits.numpy() if hasattr(logits, "numpy") else logits
        z = z[0] - z[0, OBSTACLE_CLASS]  # softmax of one class: 1 / sum(exp(z_k - z_obs))
        prob = (1.0 / np.exp(z).sum(0)).astype(np.float32)
        size = (self.geom.width_px, self.geom.height_px)
        return cv2.resize(prob, size, interpolation=cv2.INTER_LINEAR)

    def _fuse(self, labels: stereo.StereoLabels, learned: np.ndarray | None):
        """Stereo where it labelled (the near range trusts stereo), the network elsewhere."""
        lab = labels.labels
        stereo_known = lab != stereo.UNKNOWN
        prob = np.zeros(lab.shape, np.float32) if learned is None else learned.copy()
        prob[lab == stereo.GROUND] = 0.0
        prob[lab == stereo.DISTANT] = 0.0
        prob[lab == stereo.OBSTACLE] = 1.0
        known = np.ones(lab.shape, bool) if learned is not None else stereo_known
        return prob, known
