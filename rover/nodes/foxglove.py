"""Foxglove live node: the running robot as Foxglove (or Lichtblick) shows a recording.

    python -m rover.nodes.foxglove --namespace NS [--address [HOST:]PORT]

A Foxglove WebSocket server (the `foxglove-sdk` package) with the recordings' channels and
schemas (rover.recording.format): `/camera/left/compressed` and `/camera/right/compressed` as
`foxglove.CompressedImage` (protobuf, JPEG), every other recorded topic as JSON with the same
JSON Schema, plus `/perception/traversability` (JSON) and its cost map as a colour JPEG on
`/perception/traversability/compressed`. Log times are the wall clock at receipt, as in a
recording. The protocol has no authentication, so the server stays on loopback: reach it from
a laptop through an SSH tunnel.
"""

from __future__ import annotations

import json
import logging
import time

import foxglove
from foxglove.channels import CompressedImageChannel
from foxglove.messages import CompressedImage, Timestamp

from rover import bus, topics
from rover import messages as m
from rover import remote as r
from rover.node import Shutdown, node_argparser, node_config, run_main
from rover.recording import format as fmt

log = logging.getLogger("rover.foxglove")
TRAV_IMAGE_TOPIC = "/perception/traversability/compressed"


def _image(jpeg: bytes, frame_id: str, wall_ns: int) -> CompressedImage:
    stamp = Timestamp(sec=wall_ns // 1_000_000_000, nsec=wall_ns % 1_000_000_000)
    return CompressedImage(timestamp=stamp, frame_id=frame_id, data=jpeg, format="jpeg")


class FoxgloveLive:
    """Bus messages -> Foxglove channels (images rate-limited to `max_hz`)."""

    def __init__(self, bus_cfg: topics.BusConfig, max_hz: float, quality: int):
        self.camera = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg)
        json_topics = [t for t in fmt.recorded_topics() if not t.frames and not t.sim_only]
        json_topics.append(topics.PERCEPTION_TRAVERSABILITY)
        self.subs = [self.camera] + [bus.Subscriber(t, bus_cfg) for t in json_topics]
        self.eyes = {name: CompressedImageChannel(name) for name in fmt.IMAGE_TOPICS}
        self.trav_image = CompressedImageChannel(TRAV_IMAGE_TOPIC)
        self.channels = {
            t: foxglove.Channel(
                fmt.channel_topic(t), schema=json.loads(fmt.json_schema(t.msg_type))
            )
            for t in json_topics
        }
        self.preview = r.PreviewEncoder(max_hz, quality)

    def spin_once(self, timeout_ms: float = 200) -> None:
        for sub in bus.wait_any(self.subs, timeout_ms):
            msg = sub.receive()
            if msg is None:
                continue
            wall = time.time_ns()
            if sub is self.camera:
                self._frame(msg)
                continue
            self.channels[sub.topic].log(fmt.message_json(msg), log_time=wall)
            if isinstance(msg, m.TraversabilityMap):
                jpeg = r.overlay_jpeg(msg.cost)
                self.trav_image.log(_image(jpeg, "left", wall), log_time=wall)

    def _frame(self, frame: m.StereoImage) -> None:
        preview = self.preview.offer(frame, time.monotonic_ns())
        if preview is None:
            return
        stamp = preview.capture_wall_ns
        for name, jpeg in zip(
            fmt.IMAGE_TOPICS, (preview.left_jpeg, preview.right_jpeg), strict=True
        ):
            frame_id = name.split("/")[2]  # left / right, as in recordings
            self.eyes[name].log(_image(jpeg.tobytes(), frame_id, stamp), log_time=time.time_ns())


def main() -> None:
    parser = node_argparser(__doc__)
    parser.add_argument("--address", default="127.0.0.1:8766", metavar="[HOST:]PORT")
    parser.add_argument("--max-hz", type=float, default=15.0, help="most image frames/s")
    parser.add_argument("--jpeg-quality", type=int, default=80)
    args = parser.parse_args()
    _, bus_cfg = node_config(args)
    host, port = r.parse_address(args.address)
    r.require_foxglove_loopback(host)
    live = FoxgloveLive(bus_cfg, args.max_hz, args.jpeg_quality)
    server = foxglove.start_server(name="rover", host=host, port=port)
    print(f"foxglove: ws://{host}:{server.port} (open it in Foxglove or Lichtblick)", flush=True)
    stop = Shutdown()
    try:
        while not stop.requested:
            live.spin_once()
    finally:
        server.stop()


if __name__ == "__main__":
    run_main("foxglove", main)
