"""An operator on "another machine": its own process, its own keys, the robot's --listen link.

    python tests/rover/nodes/remote_operator.py ADDRESS KEYS_DIR ROBOT_KEY SECONDS [--plain]

Sends 50 Hz commands (deadman released, then held with throttle 0.6) and prints one JSON line
with what arrived; a refused link prints the CLI's one error line and exits 5. `--plain`
connects without CURVE at all (a peer with no key).
"""

import contextlib
import json
import sys
import time

import zmq

from rover import messages as m
from rover import topics
from rover.errors import LinkError
from rover.remote import COMMAND_PORT_OFFSET, parse_address
from rover.remote_client import RemoteLink


def plain(address: str, seconds: float) -> dict:
    host, port = parse_address(address)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://{host}:{port}")
    cmd = ctx.socket(zmq.DEALER)
    cmd.connect(f"tcp://{host}:{port + COMMAND_PORT_OFFSET}")
    got, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        with_cmd = m.TeleopCommand(throttle=0.6, deadman=time.monotonic() > deadline - seconds / 2)
        with contextlib.suppress(zmq.Again):
            cmd.send_multipart(m.encode(topics.TELEOP_REMOTE.wire_name, with_cmd), zmq.NOBLOCK)
        if sub.poll(20):
            sub.recv_multipart()
            got += 1
    return {"received": got}


def drive(address: str, keys: str, robot_key: str, seconds: float) -> dict:
    link = RemoteLink(address, keys, robot_key, timeout_s=5)
    start = time.monotonic()
    while (t := time.monotonic() - start) < seconds:
        held = t > 0.3
        link.send(m.TeleopCommand(steering=0.1, throttle=0.6 if held else 0.0, deadman=held))
        link.poll(20)
    counts = {name: s.messages for name, s in link.stats.items()}
    return {"received": sum(counts.values()), "topics": counts, "role": link.role}


if __name__ == "__main__":
    address, keys, robot_key, seconds = sys.argv[1:5]
    try:
        if "--plain" in sys.argv:
            result = plain(address, float(seconds))
        else:
            result = drive(address, keys, robot_key, float(seconds))
    except LinkError as exc:
        print(f"rover: error: {exc}", flush=True)
        sys.exit(exc.exit_code)
    print(json.dumps(result), flush=True)
