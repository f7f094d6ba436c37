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
        assert all(c.operator == "" for c in got)  # no pad: nothing that could stop the robot
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0, proc.stderr.read()


def test_scripted_operator_in_drive_mode_starts_on_autopilot_then_takes_over(bus_cfg, tmp_path):
    script = tmp_path / "ops.json"
    script.write_text('[{"t_s": 0}, {"t_s": 0.4, "throttle": 0.5, "deadman": true}]')
    sub = bus.Subscriber(topics.TELEOP_COMMAND, bus_cfg, newest=False, hwm=500)
    argv = [sys.executable, "-m", "rover.nodes.teleop", "--namespace", bus_cfg.namespace]
    argv += ["--mode", "drive", "--script", str(script)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    try:
        got = []
        deadline = time.monotonic() + 20
        while not any(c.throttle > 0 for c in got) and time.monotonic() < deadline:
            got += sub.drain() if sub.poll(100) else []
        assert got and got[0].autopilot and got[0].operator == "script ops.json"
        driving = next(c for c in got if c.throttle > 0)
        assert driving.throttle == 0.5 and driving.deadman and not driving.autopilot
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0, proc.stderr.read()
