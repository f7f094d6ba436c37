"""The stack on a robot (no simulator), from real parts: file cameras through OpenCV, the
firmware emulator on a pty, a scripted operator, `rover teleop` as a user starts it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from drivers.emulator import PtyEmulator
from rover import bus, topics
from rover import messages as m
from rover.namespace import NamespaceInUse, NamespaceLock
from rover.recording.reader import Session


def rover(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rover.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture
def mcu():
    with PtyEmulator() as emu:
        yield emu


@pytest.fixture
def namespace():
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    topics.BusConfig(namespace=name).remove_ipc_root()


def _stopped(group_pids, proc, namespace: str) -> bool:
    """No process of the stack's group but `rover` itself, and its namespace lock free."""
    if set(group_pids(proc.pid)) - {proc.pid}:
        return False
    try:
        NamespaceLock(topics.BusConfig(namespace=namespace)).acquire("test").release()
    except NamespaceInUse:
        return False
    return True


def _ready(namespace: str) -> bool:
    root = topics.BusConfig(namespace=namespace).ipc_path()
    return os.path.exists(os.path.join(root, "ready.recorder"))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_robot_stack_in_2s_with_a_clean_recording_and_motors_stopped(
    tmp_path,
    mcu,
    namespace,
    how,
    start_rover,
    stop_group,
    wait_until,
    write_robot,
    write_script,
    group_pids,
):
    robot = write_robot(tmp_path, mcu.device_path)
    script = write_script(tmp_path)
    elsewhere = tmp_path / "cwd"  # the TOML's relative camera paths must not depend on it
    elsewhere.mkdir()
    log = tmp_path / "stack.log"
    args = ["teleop", "--config", str(robot), "--namespace", namespace]
    args += ["--record", str(tmp_path / "rec"), "--teleop-script", str(script)]
    proc = start_rover(*args, cwd=elsewhere, log=log)
    try:
        # the operator drives: the motors follow, and the recorder hears frames and commands
        wait_until(lambda: _ready(namespace), 60, "the recorder")
        wait_until(lambda: mcu.outputs.throttle > 0.3, 20, "the motors to follow the script")
        cmds = bus.Subscriber(topics.CONTROL_COMMAND, topics.BusConfig(namespace=namespace))
        heard = []
        wait_until(lambda: heard.extend(cmds.drain()) or len(heard) > 30, 10, "30 commands")
        cmds.close()
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        else:
            proc.send_signal(signal.SIGTERM)  # `kill PID` of the rover command alone
        sent = time.monotonic()
        sent_ns = time.monotonic_ns()
        # stopped: every node gone and the namespace free (the manager has cleaned up); then
        # `rover` itself prints its summary (it reads the recording) and exits
        wait_until(
            lambda: _stopped(group_pids, proc, namespace), 2.0, "the stack to stop", poll_s=0.01
        )
        gone_s = time.monotonic() - sent
        assert proc.wait(10) == 0, log.read_text()
        exit_s = time.monotonic() - sent
    finally:
        stop_group(proc)
    assert gone_s <= 2.0
    print(f"{how}: nodes gone, namespace free {gone_s:.2f} s after the signal; exit {exit_s:.2f} s")
    text = log.read_text()
    assert "restarting" not in text and "Traceback" not in text, text
    last = mcu.last_drive
    assert last is not None and last.throttle == 0.0 and not last.arm
    session = next((tmp_path / "rec").iterdir())
    verify = rover("recordings", "verify", str(session))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    last_frame_ns = Session(session).frames()[-1].stamp_ns
    assert sent_ns - last_frame_ns < 0.5e9  # nothing lost but the last half second
    info = rover("recordings", "info", "--json", str(session))
    counts = {t["topic"]: t["messages"] for t in json.loads(info.stdout)["topics"]}
    assert counts["/teleop/command"] > 30 and counts["/control/command"] > 30
    assert not os.path.exists(topics.BusConfig(namespace=namespace).ipc_path())
    assert not _log_folders(namespace)  # a clean stop leaves no node logs in the temp folder


def _log_folders(namespace: str) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"rover-{namespace}-logs-*"))


@pytest.mark.slow
def test_the_node_logs_of_a_killed_stack_go_with_the_next_run(
    tmp_path,
    mcu,
    namespace,
    start_rover,
    stop_group,
    wait_until,
    write_robot,
    write_script,
    group_pids,
):
    """SIGKILL leaves the manager no chance to tidy up; the next run removes the folder of a
    manager that is gone, unless it was kept for a failure the user was told about."""
    from rover.manager import KEPT_MARKER, prune_kept_logs

    robot = write_robot(tmp_path, mcu.device_path)
    args = ["teleop", "--config", str(robot), "--namespace", namespace]
    proc = start_rover(
        *args,
        "--teleop-script",
        str(write_script(tmp_path)),
        cwd=tmp_path,
        log=tmp_path / "stack.log",
    )
    try:
        folder = wait_until(lambda: _log_folders(namespace), 60, "the node log folder")[0]
        wait_until(lambda: (folder / "control.log").exists(), 60, "the control node")
        proc.kill()  # the manager alone: its nodes follow it (parent-death signal)
        proc.wait(10)
        wait_until(lambda: not group_pids(proc.pid), 10, "the nodes to follow the manager")
    finally:
        stop_group(proc)
    assert folder.is_dir()  # nobody tidied up
    failed = Path(tempfile.mkdtemp(prefix=f"rover-{namespace}x-logs-{proc.pid}-"))
    (failed / KEPT_MARKER).write_text("node control exited with code 1\n")
    try:
        removed = prune_kept_logs(Path(tempfile.gettempdir()))
        assert folder in removed and not folder.exists()
        assert failed.is_dir()  # kept for a failure: the newest few stay
    finally:
        shutil.rmtree(failed, ignore_errors=True)


def test_a_second_stack_in_a_namespace_is_refused_and_the_first_lives_on(
    tmp_path, mcu, namespace, start_rover, stop_group, wait_until, write_robot, write_script
):
    robot = write_robot(tmp_path, mcu.device_path)
    script = write_script(tmp_path)
    args = ["teleop", "--config", str(robot), "--namespace", namespace]
    first = start_rover(*args, "--teleop-script", str(script), cwd=tmp_path, log=tmp_path / "1.log")
    try:
        cmds = bus.Subscriber(topics.CONTROL_COMMAND, topics.BusConfig(namespace=namespace))
        wait_until(lambda: cmds.receive(10), 60, "the first stack's control commands")
        second = rover(*args, "--record", str(tmp_path / "rec2"))
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert second.returncode != 0 and len(lines) == 1, second.stderr
        assert f"namespace {namespace!r} is in use" in lines[0]
        assert f"pid {first.pid}" in lines[0] and "--namespace" in lines[0]
        assert not (tmp_path / "rec2").exists()  # refused before it touched anything
        cmds.drain()
        wait_until(lambda: cmds.receive(10), 5, "the first stack, still running")
        assert first.poll() is None
    finally:
        stop_group(first)
        cmds.close()


def test_a_stale_lock_from_a_killed_stack_is_taken_over(tmp_path, namespace):
    bus_cfg = topics.BusConfig(namespace=namespace)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rover.manager import NamespaceLock; "
            "from rover.topics import BusConfig; "
            f"NamespaceLock(BusConfig(namespace={namespace!r})).acquire('rover drive'); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    stale_socket = os.path.join(bus_cfg.ipc_root(), "camera.stereo")
    open(stale_socket, "w").close()
    with pytest.raises(NamespaceInUse, match=f"pid {holder.pid}: rover drive"):
        NamespaceLock(bus_cfg).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = NamespaceLock(bus_cfg).acquire("test")
    try:
        assert f"pid {holder.pid}" in lock.took_over_from
        assert not os.path.exists(stale_socket)  # the dead stack's sockets are gone
    finally:
        lock.release()
    assert NamespaceLock(bus_cfg).acquire().took_over_from == ""  # released cleanly


def test_file_camera_at_its_end_stops_the_stack_with_one_line(
    tmp_path, mcu, namespace, write_robot, write_script
):
    robot = write_robot(tmp_path, mcu.device_path, loop=False, frames=15)
    result = rover(
        "teleop",
        "--config",
        str(robot),
        "--namespace",
        namespace,
        "--teleop-script",
        str(write_script(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    ends = [ln for ln in result.stderr.splitlines() if "end of file" in ln]
    assert len(ends) == 1, result.stderr
    assert str(tmp_path / "left.avi") in ends[0]
    assert "set [camera] loop = true to loop it" in ends[0]
    assert "restarting" not in result.stderr


def test_drive_on_a_robot_will_not_arm_without_an_operator_input(
    tmp_path, mcu, namespace, wait_until, write_robot
):
    """Headless, no gamepad, no script: the control node keeps the motors disarmed and says
    in one line what to connect; the autopilot's estimates change nothing."""
    from rover.manager import Manager
    from rover.runspec import Run

    robot = write_robot(tmp_path, mcu.device_path)
    overrides = ("control.require_operator=true", "control.autopilot_without_teleop=true")
    options = Run(
        mode="drive",
        bus=topics.BusConfig(namespace=namespace),
        config=str(robot),
        overrides=overrides,
        headless=True,
    )
    nodes = tuple(n for n in __import__("rover.manager").manager.NODES if n.name != "steering")
    mgr = Manager(options, nodes=nodes)
    bus_cfg = topics.BusConfig(namespace=namespace)
    estimates = bus.Publisher(topics.PERCEPTION_STEERING, bus_cfg)
    health = bus.Subscriber(topics.HEALTH_CONTROL, bus_cfg, newest=False)
    cmds = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=1000)
    mgr.start()
    try:

        def refused():
            mgr.poll()
            estimates.publish(m.SteeringEstimate(steering=0.1, throttle=0.8))
            return next((e for e in health.drain() if e.fault == "operator"), None)

        event = wait_until(refused, 60, "the control node to refuse")
        assert event.active and "plug in a gamepad" in event.text and "--unattended" in event.text
        got = cmds.drain()
        assert got and all(c.throttle == 0.0 and c.stale for c in got)  # stale: not armed
        assert any(c.source == "autopilot:no-operator" for c in got)  # fresh estimates, refused
        assert not mcu.outputs.armed and mcu.outputs.throttle == 0.0
    finally:
        mgr.stop()
        mgr.clean_up()
        for sock in (estimates, health, cmds):
            sock.close()


@pytest.mark.parametrize(
    "flag",
    [
        ["--duration", "5"],
        ["--lockstep"],
        ["--seed", "3"],
        ["--snapshot", "x.png"],
        ["--frame-drop", "0.1"],
        ["--serial-loss", "0.1"],
        ["--camera-latency-ms", "20"],
        ["--safety-driver", "2"],
        ["--metrics-out", "m.json"],
    ],
)
def test_a_simulator_flag_without_sim_is_an_error_naming_it(flag, namespace):
    result = rover("teleop", "--namespace", namespace, *flag)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert f"{flag[0]} is for the simulator" in lines[0] and "--sim" in lines[0]


def test_a_robot_flag_with_sim_is_an_error_naming_it(namespace):
    result = rover("drive", "--sim", "open", "--namespace", namespace, "--unattended")
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert (
        result.returncode == 2 and len(lines) == 1 and "--unattended is for the robot" in lines[0]
    )


def test_robot_toml_paths_are_relative_to_the_file(tmp_path):
    from rover.config import load_config

    (tmp_path / "cams").mkdir()
    toml = tmp_path / "robot.toml"
    toml.write_text(
        '[camera]\nleft = "cams/l.avi"\nright = 2\ncalibration = "calib.yaml"\n'
        '[motor]\nport = "/dev/ttyACM0"\n[traversability]\nmodel = "bundled"\n'
    )
    cfg = load_config(toml, ["camera.right=r.avi"])
    assert cfg.camera.left == str(tmp_path / "cams/l.avi")
    assert cfg.camera.calibration == str(tmp_path / "calib.yaml")
    assert cfg.camera.right == "r.avi"  # a command-line value stays relative to the cwd
    assert cfg.motor.port == "/dev/ttyACM0" and cfg.traversability.model == "bundled"


def _node_pid(group_pids, pgid: int, module: str) -> int:
    for pid in group_pids(pgid):
        try:
            if module in Path(f"/proc/{pid}/cmdline").read_text():
                return pid
        except OSError:
            continue
    raise AssertionError(f"no {module} process")


@pytest.mark.slow
def test_lost_motor_controller_and_stalled_camera_print_lines_and_are_counted(
    tmp_path,
    mcu,
    namespace,
    start_rover,
    stop_group,
    wait_until,
    write_robot,
    write_script,
    group_pids,
):
    robot = write_robot(tmp_path, mcu.device_path)
    log = tmp_path / "stack.log"
    args = ["teleop", "--config", str(robot), "--namespace", namespace]
    args += ["--record", str(tmp_path / "rec"), "--teleop-script", str(write_script(tmp_path))]
    proc = start_rover(*args, cwd=tmp_path, log=log)
    try:
        wait_until(lambda: _ready(namespace), 60, "the recorder")
        wait_until(lambda: mcu.outputs.throttle > 0.3, 20, "the motors to follow the script")
        mcu.unplug()  # the USB cable out
        wait_until(lambda: "control: motor controller lost" in log.read_text(), 5, "lost line")
        mcu.replug()
        wait_until(lambda: "control: motor controller back" in log.read_text(), 5, "back line")
        wait_until(lambda: mcu.outputs.throttle > 0.3, 5, "the motors to follow again")
        camera = _node_pid(group_pids, proc.pid, "rover.nodes.camera")
        os.kill(camera, signal.SIGSTOP)  # a camera that stops delivering
        try:
            wait_until(lambda: "control: camera stalled" in log.read_text(), 5, "stall line")
        finally:
            os.kill(camera, signal.SIGCONT)
        wait_until(lambda: "control: camera frames back" in log.read_text(), 5, "back line")
        listen = rover("topics", "--namespace", namespace, "--seconds", "1.5", "--json")
        faults = {(f["node"], f["fault"]): f for f in json.loads(listen.stdout)["faults"]}
        live_lost = faults[("control", "motor_link")]["count"]
        assert live_lost >= 1 and not faults[("control", "camera_stall")]["active"]
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        stop_group(proc)
    text = log.read_text()
    # one per unplug (a machine busy enough to delay replies for a second would add one):
    # each printed once, and the same count live and in the recording
    printed = text.count("control: motor controller lost")
    assert printed == live_lost, text
    info = rover("recordings", "info", "--json", str(next((tmp_path / "rec").iterdir())))
    recorded = {(f["node"], f["fault"]): f["count"] for f in json.loads(info.stdout)["faults"]}
    assert recorded[("control", "motor_link")] == printed
    assert recorded[("control", "camera_stall")] == text.count("control: camera stalled") >= 1
