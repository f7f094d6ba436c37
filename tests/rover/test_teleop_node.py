import signal
import subprocess
import sys
import time

from rover import bus, topics


def test_teleop_node_publishes_safe_commands_at_50hz_and_stops_on_sigint(bus_cfg):
    sub = bus.Subscriber(topics.TELEOP_COMMAND, bus_cfg, newest=False, hwm=500)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rover.nodes.teleop",
            "--headless",
            "--namespace",
            bus_cfg.namespace,
        ],
        stderr=subprocess.PIPE,
    )
    try:
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 60 and time.monotonic() < deadline:
            got += sub.drain() if sub.poll(100) else []
        assert len(got) >= 60, "no teleop commands"
        span_s = (got[-1].stamp_ns - got[10].stamp_ns) / 1e9
        assert 40 <= (len(got) - 11) / span_s <= 60
        # nobody touches anything: no throttle, deadman released, manual mode
        assert all(c.throttle == 0 and not c.deadman and not c.autopilot for c in got)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0, proc.stderr.read()
