"""The steering node as a real process on a real bus: answers frames, fails in one line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import torch

from perception.infer import SteeringPredictor, save_checkpoint
from perception.steering.model import build_model
from rover import bus, topics
from rover import messages as m
from rover.config import load_config
from rover.errors import ConfigError
from rover.topics import BusConfig


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, tiny_config):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("node") / "tiny.pt"
    return save_checkpoint(path, build_model(tiny_config()), 0.6, {})


def _start(bus_cfg, model) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rover.nodes.steering", "--namespace", bus_cfg.namespace]
    return subprocess.Popen(
        [*cmd, "--model", str(model), "--set", "steering.threads=1"],
        stderr=subprocess.PIPE,
        text=True,
    )


def _until_answered(node, frames, answers, pair, timeout_s=60.0) -> m.SteeringEstimate:
    """Slow joiner: repeat a frame until the node (model loaded, subscribed) answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert node.poll() is None, node.stderr.read()
        frames.publish(m.StereoImage(left=pair[0], right=pair[1]))
        est = answers.receive(timeout_ms=200)
        if est is not None:
            return est
    raise AssertionError("the steering node never answered")


@pytest.fixture(scope="module")
def running(model_path, bar_frames):
    bus_cfg = BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    frames = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
    answers = bus.Subscriber(topics.PERCEPTION_STEERING, bus_cfg, newest=False, hwm=1000)
    node = _start(bus_cfg, model_path)
    pair = bar_frames(0.5, np.random.default_rng(0))
    _until_answered(node, frames, answers, pair)
    answers.drain()
    yield node, frames, answers
    node.send_signal(signal.SIGINT)
    assert node.wait(10) == 0
    frames.close()
    answers.close()
    bus_cfg.remove_ipc_root()


def test_steering_settings_come_from_the_config_and_bad_ones_fail_in_one_line():
    cfg = load_config(None, ["steering.precision=fp32", "steering.threads=2"])
    steering = cfg.steering
    assert (steering.precision, steering.threads, steering.device) == ("fp32", 2, "auto")
    for bad, words in (
        ("steering.precision=fp8", "precision = 'fp8'"),
        ("steering.device=tpu", "device = 'tpu'"),
        ("steering.threads=0", "threads >= 1"),
    ):
        with pytest.raises(ConfigError, match=re.escape(words)) as exc:
            load_config(None, [bad])
        assert "\n" not in str(exc.value)


def test_node_answers_a_frame_with_its_seq_stamp_and_the_models_output(
    running, model_path, bar_frames
):
    node, frames, answers = running
    left, right = bar_frames(0.2, np.random.default_rng(1))
    sent = frames.publish(m.StereoImage(stamp_ns=123_456_789, left=left, right=right))
    deadline = time.monotonic() + 10
    est = None
    while time.monotonic() < deadline and (est is None or est.frame_seq != sent.seq):
        est = answers.receive(timeout_ms=100)
    assert est is not None and est.frame_seq == sent.seq
    assert est.stamp_ns == 123_456_789  # the capture stamp: latency is traceable
    assert est.source == "cnn:tiny"
    torch.set_num_threads(1)
    want = SteeringPredictor(model_path, device="cpu").predict(left, right)
    assert est.steering == pytest.approx(want.steering, abs=1e-5)
    assert est.throttle == pytest.approx(want.throttle, abs=1e-5)


def test_node_answers_the_newest_frame_after_a_burst(running, bar_frames):
    node, frames, answers = running
    rng = np.random.default_rng(2)
    pairs = [bar_frames(x, rng) for x in np.linspace(0.1, 0.9, 12)]
    sent = [frames.publish(m.StereoImage(left=lt, right=rt)) for lt, rt in pairs]
    seen: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not seen or seen[-1] != sent[-1].seq):
        est = answers.receive(timeout_ms=100)
        if est is not None:
            seen.append(est.frame_seq)
    assert seen and seen[-1] == sent[-1].seq  # the last frame is always answered
    assert seen == sorted(set(seen))  # never twice, never out of order


@pytest.mark.slow
def test_bad_model_file_stops_the_node_with_one_line(bus_cfg, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    node = _start(bus_cfg, junk)
    _, err = node.communicate(timeout=60)
    assert node.returncode == 4  # DataError: the manager does not restart it
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("steering: error: ") and "junk.pt" in lines[-1]
    assert "Traceback" not in err


@pytest.mark.slow
def test_frames_from_another_camera_stop_the_node_with_one_line(bus_cfg, model_path):
    frames = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
    node = _start(bus_cfg, model_path)
    big = np.zeros((240, 320, 3), np.uint8)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frames.publish(m.StereoImage(left=big, right=big))  # until the node gives up
        try:
            node.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            continue
    _, err = node.communicate(timeout=10)
    frames.close()
    assert node.returncode == 4
    assert "expects 128x128 RGB frames, the camera gives 320x240" in err.splitlines()[-1]
