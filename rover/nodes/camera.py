"""Camera node: grabs the stereo pair (rectified when calibrated) and publishes camera/stereo."""

from __future__ import annotations

from drivers.camera import EndOfStream, open_camera
from rover import bus, topics
from rover import messages as m
from rover.node import RateKeeper, Shutdown, node_argparser, node_config, run_main


def main() -> None:
    args = node_argparser(__doc__).parse_args()
    cfg, bus_cfg = node_config(args)
    stop = Shutdown()
    camera = open_camera(cfg.camera)
    pub = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
    rate = RateKeeper(cfg.camera.fps)  # paces file sources; a live device paces itself
    try:
        while not stop.requested:
            try:
                frame = camera.read()
            except EndOfStream:
                break
            pub.publish(
                m.StereoImage(
                    stamp_ns=frame.left_stamp_ns,
                    left=frame.left,
                    right=frame.right,
                    left_stamp_ns=frame.left_stamp_ns,
                    right_stamp_ns=frame.right_stamp_ns,
                )
            )
            rate.keep_time()
    finally:
        camera.close()


if __name__ == "__main__":
    run_main("camera", main)
