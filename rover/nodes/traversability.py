"""Traversability node: newest stereo pair → cost map + free distance along K arcs.

Takes the newest camera/stereo frame (a slow frame never queues the next), runs stereo labels,
the segmenter and its online step (`perception.traversability`), and publishes
perception/traversability stamped with the frame's capture time and frame_seq.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from perception.stereo import StereoGeometry
from perception.traversability.pipeline import TraversabilityConfig, TraversabilityPipeline
from rover import bus, topics
from rover.messages import TraversabilityMap
from rover.node import Shutdown, node_argparser, node_config, run_main, spin
from rover.topics import PERCEPTION_TRAVERSABILITY

log = logging.getLogger("rover.traversability")


def geometry_for(cfg, trav: TraversabilityConfig) -> tuple[StereoGeometry, str]:
    """The rig: the camera calibration when configured (height and pitch from [traversability]),
    else the robot's default rig (drivers.stereo_rig)."""
    calibration = getattr(cfg.camera, "calibration", None) if hasattr(cfg, "camera") else None
    if not calibration:
        return StereoGeometry.from_camera_model(), "the default rig (drivers.stereo_rig)"
    from drivers.calibration import StereoCalibration

    calib = StereoCalibration.load(calibration, (cfg.camera.width, cfg.camera.height))
    pitch = math.radians(trav.camera_pitch_deg)
    return StereoGeometry.from_calibration(calib, trav.camera_height_m, pitch), calibration


class TraversabilityNode:
    """Wires the pipeline to the bus: one frame in, one map out."""

    def __init__(self, trav: TraversabilityConfig, bus_cfg: topics.BusConfig, geom: StereoGeometry):
        self.pipeline = TraversabilityPipeline.from_config(trav, geom)
        self.model_tag = self.pipeline.model_hash
        self.trav = trav
        self.frames = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg, newest=True)
        self.pub = bus.Publisher(PERCEPTION_TRAVERSABILITY, bus_cfg)

    def spin_once(self, timeout_ms: float = 100.0) -> TraversabilityMap | None:
        """Process the newest frame if one arrived within ``timeout_ms``; returns what was sent."""
        frame = self.frames.receive(timeout_ms)
        if frame is None:
            return None
        result = self.pipeline.process(frame.left, frame.right, learn=False)
        plane = result.stereo.labels.plane
        polar = result.polar
        online = self.pipeline.online
        sent = self.pub.publish(
            TraversabilityMap(
                stamp_ns=frame.stamp_ns,
                frame_seq=frame.seq,
                cost=result.cost_map(self.trav.map_width_px, self.trav.map_height_px),
                arcs=np.stack([polar.steering, polar.free_m]),
                plane_height_m=plane.height_m,
                plane_fitted=plane.fitted,
                online_updates=online.updates if online is not None else 0,
                latency_ms=result.timings_ms["total"],
                model=self.model_tag or "",
            )
        )
        self.pipeline.learn()  # after publishing: learning adds no latency to the answer
        return sent

    def close(self) -> None:
        self.frames.close()
        self.pub.close()


def main() -> None:
    parser = node_argparser(__doc__)
    parser.add_argument("--model", default=None, help="segmenter file (default: config's)")
    parser.add_argument("--no-online", action="store_true", help="switch online adaptation off")
    args = parser.parse_args()
    cfg, bus_cfg = node_config(args)
    trav = cfg.sections.get("traversability") or TraversabilityConfig()
    trav = trav.with_overrides(model=args.model, online=False if args.no_online else None)
    import cv2

    cv2.setNumThreads(1)  # six processes share two cores: no thread pools fighting
    geom, source = geometry_for(cfg, trav)
    log.info("stereo geometry from %s", source)
    stop = Shutdown()
    spin(TraversabilityNode(trav, bus_cfg, geom), stop)


if __name__ == "__main__":
    run_main("traversability", main)
