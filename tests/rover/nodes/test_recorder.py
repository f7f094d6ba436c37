"""The recorder node as a real process on a real bus: clean stop, SIGKILL and recovery, and
recording the simulator stack in lock-step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rover import bus, topics
from rover import messages as m
from rover.errors import DataError
from rover.node import RateKeeper
from rover.recording import format as fmt
from rover.recording.cli import main as recordings_main
from rover.recording.reader import Session
from rover.recording.tools import session_info

REPO = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def start_recorder(bus_cfg: topics.BusConfig, out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "rover.nodes.recorder", "--namespace", bus_cfg.namespace]
    return subprocess.Popen(
        [*argv, "--out", str(out)], cwd=REPO, env=ENV, stderr=subprocess.PIPE, text=True
    )


def readable_frames(out: Path) -> list[int]:
    """Frame seqs readable from the session now (the recorder may still be writing it)."""
    try:
        return [f.frame_seq for f in Session(out, partial_ok=True).frames()]
    except DataError:
        return []  # no segment yet, or its header not yet written


class Traffic:
    """Publishes stereo frames and the command answering each, paced at `rate_hz`."""

    def __init__(self, bus_cfg: topics.BusConfig, rate_hz: float = 100.0):
        self.frames = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
        self.commands = bus.Publisher(topics.CONTROL_COMMAND, bus_cfg)
        self.rate = RateKeeper(rate_hz)
        self.sent_at: dict[int, float] = {}
        self.image = np.zeros((240, 320, 3), np.uint8)

    def step(self) -> int:
        self.image[:, :, 0] = len(self.sent_at) % 256
        msg = self.frames.publish(m.StereoImage(left=self.image, right=self.image))
        self.commands.publish(
            m.ControlCommand(frame_seq=msg.seq, steering=(msg.seq % 200) / 100 - 1)
        )
        self.sent_at[msg.seq] = time.monotonic()
        self.rate.keep_time()
        return msg.seq

    def until(self, done, timeout_s: float = 20.0) -> None:
        """Publish until `done()` (checked every 10 frames), failing after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.step() % 10 == 0 and done():
                return
            assert time.monotonic() < deadline, "the recorder never caught up"

    def close(self) -> None:
        self.frames.close()
        self.commands.close()


@pytest.fixture
def traffic(bus_cfg):
    t = Traffic(bus_cfg)
    yield t
    t.close()


def test_sigint_writes_every_frame_the_counts_and_the_index(bus_cfg, traffic, tmp_path):
    out = tmp_path / "session"
    proc = start_recorder(bus_cfg, out)
    try:
        traffic.until(lambda: len(readable_frames(out)) >= 10)
        last = max(traffic.sent_at)
        for _ in range(30):
            last = traffic.step()
        deadline = time.monotonic() + 10
        while last not in readable_frames(out):  # flushed within flush_s
            assert time.monotonic() < deadline, "the last frame never reached the disk"
            traffic.rate.keep_time()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped:" in err and "0 dropped" in err
    assert recordings_main(["verify", str(out)]) == 0
    info = session_info(out)
    seqs = [f.frame_seq for f in Session(out).frames()]
    assert seqs == list(range(seqs[0], last + 1))  # every frame from the first one received
    assert info["dropped_frames"] == 0 and info["command_source"] == {"frame": len(seqs)}
    counts = info["recorder_counts"]["camera/stereo"]
    assert counts["received"] == counts["written"] >= len(seqs) and counts["dropped"] == 0


def test_sigkill_loses_at_most_about_a_second_and_recover_repairs(
    bus_cfg, traffic, tmp_path, capsys
):
    out = tmp_path / "session"
    proc = start_recorder(bus_cfg, out)
    try:
        traffic.until(lambda: len(readable_frames(out)) >= 10)
        for _ in range(150):  # 1.5 s more at 100 Hz, then kill it mid-stream
            traffic.step()
        flushed = readable_frames(out)  # on disk before the kill: a SIGKILL cannot take it
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    assert recordings_main(["verify", str(out)]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without an index" in err[0] and "recover" in err[0]
    assert recordings_main(["recover", str(out)]) == 0
    assert recordings_main(["verify", str(out), "--decode"]) == 0
    seqs = [s.frame_seq for s in Session(out).samples()]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # no hole: only the tail is lost
    # what was flushed survives; how much of the tail a kill loses (about flush_s): the
    # recorder's figure in `rover bench faults`, since a loaded machine delays the flushes
    assert len(flushed) >= 10 and set(flushed) <= set(seqs), "flushed frames were lost"
    assert "rebuilt" in capsys.readouterr().out


@pytest.mark.slow
def test_records_the_lockstep_simulator_stack(bus_cfg, tmp_path):
    # the shipped path: `--record` starts the recorder and lock-step waits until it hears
    drive = subprocess.run(
        [sys.executable, "-m", "rover.cli", "drive", "--sim", "forest", "--model", "expert",
         "--headless", "--lockstep", "--duration", "3", "--namespace", bus_cfg.namespace,
         "--record", str(tmp_path / "recs")],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert drive.returncode == 0, drive.stderr
    (out,) = (tmp_path / "recs").iterdir()
    info = json.loads(_cli_json(["info", str(out), "--json"]))
    assert abs(info["stereo_pairs"] - 90) <= 1 and info["dropped_frames"] == 0
    assert info["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert info["command_source"] == {"frame": info["stereo_pairs"]}  # lock-step: all answered
    channels = {t["topic"] for t in info["topics"]}
    assert {fmt.LEFT_TOPIC, fmt.RIGHT_TOPIC, "/control/command", "/motor/state"} <= channels


def _cli_json(argv: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "rover.recording.cli", *argv],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _operator(bus_cfg: topics.BusConfig):
    """The teleop node with the scripted operator input, stepped by the test."""
    from drivers.gamepad import ScriptedGamepad
    from rover.nodes.teleop import TeleopNode

    return TeleopNode(ScriptedGamepad([]), bus_cfg, autopilot=False)


def _hud_until(operator, traffic: Traffic, word: str) -> int:
    """Step the operator and the traffic until the HUD shows `word`; the last frame sent."""
    deadline = time.monotonic() + 20
    while operator.input.latches.recording_word() != word:
        assert time.monotonic() < deadline, f"the HUD never showed {word}"
        operator.step()
        last = traffic.step()
    return last


def _stop_when_written(proc: subprocess.Popen, traffic: Traffic, out: Path, last: int) -> str:
    """Ctrl-C the recorder once frame `last` is readable in the session; its stderr."""
    traffic.until(lambda: last in readable_frames(out))
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=10)[1]


def test_the_record_key_pauses_and_resumes_the_recording(bus_cfg, traffic, tmp_path):
    out = tmp_path / "session"
    proc = start_recorder(bus_cfg, out)
    operator = _operator(bus_cfg)
    try:
        before = _hud_until(operator, traffic, "REC")  # recording from the start (--record)
        traffic.until(lambda: before in readable_frames(out))
        operator.input.latches.apply("record")  # Tab / Start, as the key maps it
        paused_from = _hud_until(operator, traffic, "PAUSED") + 1
        for _ in range(50):  # half a second while paused
            operator.step()
            paused_to = traffic.step()
        operator.input.latches.apply("record")
        resumed = _hud_until(operator, traffic, "REC") + 1
        for _ in range(30):
            operator.step()
            last = traffic.step()
        err = _stop_when_written(proc, traffic, out, last)
    finally:
        operator.close()
        proc.kill()
    assert proc.returncode == 0, err
    assert "recording paused by the record key" in err and "recording resumed" in err
    assert recordings_main(["verify", str(out)]) == 0
    seqs = set(readable_frames(out))
    assert before in seqs and set(range(resumed, last + 1)) <= seqs
    assert not seqs & set(range(paused_from, paused_to + 1))  # nothing while paused
    info = session_info(out)
    assert len(info["pauses"]) == 1 and info["pauses"][0]["length_s"] >= 0.4
    assert info["paused_frames"] >= paused_to - paused_from + 1
    assert info["dropped_frames"] == 0  # a pause is not a loss, nor a gap in the capture
    assert all(g["length_s"] < info["pauses"][0]["length_s"] for g in info["gaps"])


def test_without_a_recorder_the_record_key_says_how_to_record(bus_cfg):
    heard = bus.Subscriber(topics.TELEOP_COMMAND, bus_cfg, newest=False)
    operator = _operator(bus_cfg)
    try:
        operator.input.latches.apply("record")
        operator.step()
        assert operator.input.latches.recording_word() == "not recording: start with --record DIR"
        deadline = time.monotonic() + 10
        while (cmd := heard.receive(timeout_ms=100)) is None:
            operator.step()
            assert time.monotonic() < deadline, "no teleop command"
        assert not cmd.record_paused
    finally:
        operator.close()
        heard.close()


def test_a_remote_operators_record_button_pauses_while_the_window_never_touched_its_key(
    bus_cfg, traffic, tmp_path
):
    """The console's button (record_paused on teleop/remote) pauses the recording although the
    teleop window keeps saying record_paused=False (it never pressed its key); the window's key
    then resumes it: the latest change wins."""
    out = tmp_path / "session"
    proc = start_recorder(bus_cfg, out)
    operator = _operator(bus_cfg)
    remote = bus.Publisher(topics.TELEOP_REMOTE, bus_cfg)

    def from_console(paused: bool) -> None:
        remote.publish(m.TeleopCommand(operator="remote phone", record_paused=paused))

    try:
        _hud_until(operator, traffic, "REC")
        paused_from = None
        for _ in range(500):
            from_console(True)
            operator.step()
            seq = traffic.step()
            if operator.input.latches.recording_word() == "PAUSED":
                paused_from = seq + 1
                break
        assert paused_from is not None, "the console's button never paused the recording"
        for _ in range(30):  # the window keeps sending record_paused=False meanwhile
            from_console(True)
            operator.step()
            paused_to = traffic.step()
        assert operator.input.latches.recording_word() == "PAUSED"
        operator.input.latches.apply("record")  # the window's key: pause...
        operator.step()
        operator.input.latches.apply("record")  # ... and resume: its change is the latest
        resumed = _hud_until(operator, traffic, "REC") + 1
        for _ in range(20):
            from_console(True)  # the console still says paused: no change, no effect
            operator.step()
            last = traffic.step()
        err = _stop_when_written(proc, traffic, out, last)
    finally:
        remote.close()
        operator.close()
        proc.kill()
    assert proc.returncode == 0, err
    assert "recording paused by the record key (remote phone)" in err
    seqs = set(readable_frames(out))
    assert not seqs & set(range(paused_from, paused_to + 1))
    assert set(range(resumed, last + 1)) <= seqs
