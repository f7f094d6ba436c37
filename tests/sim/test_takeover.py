"""The simulator's safety operator (sim.takeover): when it takes the wheel, and that its
take-overs go through the path a human's do (teleop/command → control → recorder → training).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from mcap.reader import make_reader

from perception.dataset import collect
from perception.infer import save_checkpoint
from perception.steering.budget import TAKEOVER
from perception.steering.model import SteeringModelConfig, build_model
from rover.errors import ConfigError
from rover.recording.cli import main as recordings_main
from rover.recording.reader import Session
from rover.topics import BusConfig
from sim.simulation import Simulation
from sim.takeover import TakeoverConfig, TakeoverOperator, parse_takeover

LEFT_STEERING, MODEL_THROTTLE = 0.2, 0.5  # what the test's model always answers


def test_takeover_option_parses_and_bad_values_name_the_fix():
    assert parse_takeover("expert") == TakeoverConfig()
    assert parse_takeover("expert,0.5") == TakeoverConfig(clearance_m=0.5)
    assert parse_takeover("expert, 0.5, 2") == TakeoverConfig(clearance_m=0.5, hold_s=2.0)
    for bad in ("human", "expert,near", "expert,0,1", "expert,0.3,1,2", "expert,0.3,-1"):
        with pytest.raises(ConfigError, match="expert,0.35,1"):
            parse_takeover(bad)


def test_operator_leaves_open_ground_to_the_model_and_takes_the_wheel_near_trouble():
    sim = Simulation("open", 1)
    operator = TakeoverOperator(TakeoverConfig(clearance_m=0.35, hold_s=0.5))
    assert not operator.answer(sim.observation()).driving  # nothing near the start
    for _ in range(600):  # the "model" steers hard left at cruise until the operator acts
        said = operator.answer(sim.observation())
        if said.driving:
            break
        sim.step(LEFT_STEERING, MODEL_THROTTLE)
    assert said.driving and operator.expert.plan.clearance_m < 0.35 or sim.state.collided
    assert operator.answer(sim.observation()) == said  # once per step: a re-sent frame
    start = sim.state.time_s
    while said.driving and sim.state.time_s < start + 10:
        sim.step(said.steering, said.throttle)
        said = operator.answer(sim.observation())
    assert not said.driving, "the operator hands back once the trouble is behind"
    assert sim.state.time_s - start >= 0.5 - 1e-9  # it held the wheel for hold_s at least


def _left_model(path: Path) -> Path:
    """A checkpoint for the simulator's camera that always steers hard left at cruise."""
    torch.manual_seed(0)
    net = build_model(SteeringModelConfig(arch="dave", steering_bins=0))
    with torch.no_grad():
        net.head[-1].weight.zero_()
        net.head[-1].bias.copy_(torch.tensor([LEFT_STEERING, MODEL_THROTTLE]))
    return save_checkpoint(path, net, MODEL_THROTTLE, {})


@pytest.fixture
def namespace():
    """A private bus namespace for the stack, removed afterwards."""
    cfg = BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    yield cfg.namespace
    cfg.remove_ipc_root()


def _teleop_by_frame(segment: Path) -> dict[int, dict]:
    with open(segment, "rb") as f:
        return {
            cmd["frame_seq"]: cmd
            for _, ch, msg in make_reader(f).iter_messages(topics=["/teleop/command"])
            if (cmd := json.loads(msg.data))
        }


@pytest.mark.slow
def test_drive_with_takeover_records_spans_labelled_by_the_experts_command(
    tmp_path: Path, namespace, capsys
):
    model = _left_model(tmp_path / "left.pt")
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    cmd = [sys.executable, "-m", "rover.cli", "drive", "--sim", "forest", "--seed", "3"]
    cmd += ["--model", str(model), "--headless", "--lockstep", "--duration", "10"]
    cmd += ["--takeover", "expert,0.35,0.5", "--record", str(tmp_path / "rec")]
    cmd += ["--namespace", namespace, "--metrics-out", str(tmp_path / "m.json")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["late_frames"] == 0 and metrics["operator_takeover_s"] > 0.5
    session = Session(next((tmp_path / "rec").iterdir()))
    assert session.takeovers(), "the control node's switch to teleop is a marked take-over"
    samples = list(session.samples(decode=False))
    driven = [s for s in samples if s.source == "teleop"]  # the frames the operator drove
    # marked by log time: a span's first frame may reach the recorder before the command
    assert sum(s.takeover for s in driven) >= len(driven) - len(session.takeovers()) > 0
    assert {s.source for s in samples} == {"teleop", "cnn:left"}  # it handed back
    assert len(driven) == round(metrics["operator_takeover_s"] * 30)
    # each of them is labelled with the expert's command for that frame, through the control
    # node's slew limit (6/s: 0.2 a frame) from the frame before: not the model's hard left
    teleop = _teleop_by_frame(session.segments[0])
    for s in driven:
        said, before = teleop[s.frame_seq], samples[s.index - 1].steering
        assert not said["autopilot"] and said["deadman"]
        expected = min(max(said["steering"], before - 0.2), before + 0.2)
        assert s.steering == pytest.approx(expected, abs=1e-4)
    assert min(s.steering for s in driven) < LEFT_STEERING - 0.3
    # training keeps exactly those frames, as take-overs; the model's own are skipped
    frames = collect(iter(samples), SteeringModelConfig(), workers=1)
    assert (frames.kind == TAKEOVER).sum() == len(frames) == len(driven)
    assert frames.skipped_learner == len(samples) - len(driven)
    assert recordings_main(["info", str(session.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["takeover_frames"] >= len(driven) and info["takeover_s"] > 0


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--sim", "forest"], "--takeover is the expert taking the wheel from a model"),
        (["--sim", "forest", "--takeover", "expert,x"], "CLEARANCE_M and SECONDS are numbers"),
        (["--model", "m.pt"], "--takeover is for the simulator"),
    ],
)
def test_takeover_without_a_model_or_simulator_fails_in_one_line(extra, says):
    cmd = [sys.executable, "-m", "rover.cli", "drive", "--takeover", "expert", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("rover: error: ")
    assert says in done.stderr
