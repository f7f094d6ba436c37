"""Foxglove live: the simulator's stack with `--foxglove`, read by a Foxglove-protocol client
(the `websockets` library speaking the Foxglove WebSocket protocol, foxglove.sdk.v1) that decodes a camera image."""

import asyncio
import json
import signal
import struct
import subprocess

import cv2
import numpy as np
import pytest
import websockets
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

from rover.bench.console import start_stack_for_url
from rover.recording import format as fmt

pytestmark = pytest.mark.slow
MESSAGE_DATA = 0x01  # server -> client binary opcode: subscription id, log time, payload


def start_stack(namespace: str) -> tuple[subprocess.Popen, str]:
    argv = ["drive", "--sim", "forest", "--model", "expert", "--headless"]
    argv += ["--namespace", namespace, "--foxglove", "127.0.0.1:0"]
    return start_stack_for_url(argv, "foxglove: ")


async def first_image(url: str, topic: str, timeout_s: float = 30) -> tuple[dict, bytes]:
    async with websockets.connect(url, subprotocols=["foxglove.sdk.v1"]) as ws:
        channels: dict[str, dict] = {}
        async with asyncio.timeout(timeout_s):
            while topic not in channels:
                msg = await ws.recv()
                if isinstance(msg, str) and json.loads(msg)["op"] == "advertise":
                    channels.update({c["topic"]: c for c in json.loads(msg)["channels"]})
            sub = {"id": 7, "channelId": channels[topic]["id"]}
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [sub]}))
            while True:
                msg = await ws.recv()
                if isinstance(msg, bytes) and msg[0] == MESSAGE_DATA:
                    sub_id, _log_time = struct.unpack_from("<IQ", msg, 1)
                    assert sub_id == 7
                    return channels, msg[13:]


def test_foxglove_client_receives_and_decodes_a_camera_image(bus_cfg):
    proc, url = start_stack(bus_cfg.namespace)
    try:
        channels, payload = asyncio.run(first_image(url, fmt.LEFT_TOPIC))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    left = channels[fmt.LEFT_TOPIC]
    assert left["schemaName"] == fmt.IMAGE_SCHEMA and left["encoding"] == "protobuf"
    motor = channels["/motor/state"]  # the same JSON Schema as the recordings'
    assert (
        motor["encoding"] == "json" and json.loads(motor["schema"])["title"] == "rover.MotorState"
    )
    image = CompressedImage.FromString(payload)
    assert image.format == "jpeg" and image.frame_id == "left"
    pixels = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
    assert pixels.shape[2] == 3 and pixels.shape[0] >= 60 and pixels.std() > 5  # a real picture
