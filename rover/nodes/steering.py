"""Steering node: the CNN's answer to the newest camera frame, on perception/steering.

Takes the newest stereo pair (a slow model skips frames rather than queueing them), runs the
checkpoint given by ``--model`` and publishes the estimate with the frame's ``frame_seq`` and
capture ``stamp_ns``, so glass-to-motor latency can be traced through the graph, and its own
processing time of the frame (``latency_ms``: received -> answer sent). Device, precision,
threads and smoothing come from the robot config's ``[steering]`` section
(`perception.steering.settings.SteeringNodeConfig`); the thread count is explicit: this is one
process among several on a small computer.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time

import numpy as np

from rover import bus, topics
from rover import messages as m
from rover.node import Shutdown, node_argparser, node_config, run_main

log = logging.getLogger("rover.steering")
WARM_UP_CALLS = 3


class SteeringNode:
    """Wires a `perception.infer.SteeringPredictor` to the bus."""

    def __init__(self, predictor, bus_cfg: topics.BusConfig):
        self.predictor = predictor
        self.frames = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg, newest=True)
        self.estimates = bus.Publisher(topics.PERCEPTION_STEERING, bus_cfg)
        self.source = f"cnn:{predictor.checkpoint.path.stem}"
        self.answered = 0

    def warm_up(self, calls: int = WARM_UP_CALLS) -> None:
        """Inferences on a blank frame: the first calls allocate (and a frozen graph profiles
        and optimises itself in its first runs); the camera's frames should not pay that."""
        blank = np.zeros(self.predictor.frame_shape, np.uint8)
        for _ in range(calls):
            self.predictor.raw(blank, blank)
            self.predictor.raw(blank, blank, previous=0.0)

    def spin_once(self, timeout_ms: float = 100.0) -> m.SteeringEstimate | None:
        """Answer the newest frame, if one arrived within `timeout_ms`."""
        frame = self.frames.receive(timeout_ms)
        if frame is None:
            return None
        pred = self.predictor.predict(frame.left, frame.right, frame.stamp_ns)
        self.answered += 1
        return self.estimates.publish(
            m.SteeringEstimate(
                frame_seq=frame.frame_seq,
                stamp_ns=frame.stamp_ns,
                steering=pred.steering,
                throttle=pred.throttle,
                source=self.source,
                latency_ms=(time.monotonic_ns() - self.frames.last_recv_ns) / 1e6,
            )
        )

    def close(self) -> None:
        self.frames.close()
        self.estimates.close()


def build_parser() -> argparse.ArgumentParser:
    """The standard node arguments plus the model's; the rest is the [steering] section."""
    parser = node_argparser(__doc__)
    parser.add_argument("--model", required=True, help="checkpoint from `rover train steering`")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    cfg, bus_cfg = node_config(args)
    settings = cfg.steering
    import cv2
    import torch  # lazily: a second of start-up and hundreds of MB, only in this node

    from perception.infer import SteeringPredictor, cpu_has_bf16

    torch.set_num_threads(settings.threads)
    cv2.setNumThreads(settings.threads)
    stop = Shutdown()
    predictor = SteeringPredictor(
        args.model,
        device=settings.device,
        smoothing_s=settings.smoothing_s,
        precision=settings.precision,
    )
    frozen = predictor.freeze()  # the same answers, ~0.4 ms a frame less in Python
    log.info(
        "%s on %s, %s, %d thread(s), %s",
        predictor.checkpoint.path.name,
        predictor.device,
        predictor.precision,
        settings.threads,
        "frozen graph" if frozen else "eager (the frozen graph did not give the same answers)",
    )
    if predictor.precision == "bf16" and predictor.device.type == "cpu" and not cpu_has_bf16():
        log.warning("this CPU has no native bf16: it is emulated and slower than fp32")
    node = SteeringNode(predictor, bus_cfg)
    node.warm_up()
    # torch's ~170k objects out of the collector's sight: a full collection of them is a
    # 50-180 ms pause of the answer, whenever one comes due
    gc.freeze()
    started = time.monotonic()
    try:
        while not stop.requested:
            node.spin_once()
    finally:
        node.close()
    elapsed = time.monotonic() - started
    stats = node.frames.stats
    log.info(
        "answered %d frames in %.1f s, skipped %d (newest-frame policy)",
        node.answered,
        elapsed,
        stats.skipped,
    )


if __name__ == "__main__":
    run_main("steering", main)
