"""Camera node: grabs the stereo pair (rectified when calibrated) and publishes camera/stereo.

A file source that ends (``[camera] loop = false``) ends the run: the node reports it on
health/camera and exits 0 with the line "camera: end of file ...; set [camera] loop = true to
loop it", which the manager shows as the reason the stack stopped (a file that ended cannot
deliver more, so restarting the node would only replay it from the start). A live camera that
stops delivering is noticed by the control node, which watches camera/stereo's liveness.
"""

from __future__ import annotations

import gc

import cv2

from drivers.camera import EndOfStream, open_camera
from rover import bus, topics
from rover import messages as m
from rover.node import (
    HealthPublisher,
    NodeFinished,
    RateKeeper,
    Shutdown,
    node_argparser,
    node_config,
    run_main,
)


def main() -> None:
    args = node_argparser(__doc__).parse_args()
    cfg, bus_cfg = node_config(args)
    # one thread: decode, colour and rectification of a 320x240 pair are ~0.3 ms of work, and
    # a pool's second thread waits for a core the perception nodes are using (p50 of the
    # pair's retrieve 0.9-2.8 ms with the pool on a busy 2-core machine, 0.2-0.3 ms without)
    cv2.setNumThreads(1)
    stop = Shutdown()
    camera = open_camera(cfg.camera)
    pub = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
    health = HealthPublisher(topics.HEALTH_CAMERA, bus_cfg, "camera")
    rate = RateKeeper(cfg.camera.fps)  # paces file sources; a live device paces itself
    gc.freeze()  # what start-up made stays: no full collection of it between grab and publish
    try:
        while not stop.requested:
            try:
                frame = camera.read()
            except EndOfStream as end:
                text = f"{end}; set [camera] loop = true to loop it"
                health.set("camera_eof", True, text)
                raise NodeFinished(text) from None
            pub.publish(
                m.StereoImage(
                    stamp_ns=frame.left_stamp_ns,
                    left=frame.left,
                    right=frame.right,
                    left_stamp_ns=frame.left_stamp_ns,
                    right_stamp_ns=frame.right_stamp_ns,
                )
            )
            health.tick()
            rate.keep_time()
    finally:
        camera.close()
        health.close()


if __name__ == "__main__":
    run_main("camera", main)
