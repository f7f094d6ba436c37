"""`rover rig`: the robot's hardware, stood in for by the nearest real things that run here.

- Cameras: two video files rendered by the simulator along the expert's drive through a
  scenario, read by the camera node through the same OpenCV capture path as a camera. Their
  frames are raw YUV (I420), as a USB camera at 320x240 sends raw YUYV (MJPG is for larger
  sizes): the host converts their colour and decodes nothing (MJPG files cost 0.24 ms more a
  frame and eye here, on the glass-to-motor path, which the robot does not pay). With them
  comes the calibration file of the simulator's (ideal) stereo pair, so
  rectification, traversability and steering see realistic frames. Rendered once per
  (scenario, seed, seconds) into the user's cache folder and reused.
- Motor controller: the firmware emulator (``python -m drivers.emulator``) on a pty, as a
  background process (pid in ``DIR/mcu.pid``), its device at the stable path ``DIR/mcu`` (a
  symlink, like /dev/serial/by-id/...). It logs every DRIVE's arrival to ``DIR/mcu-drives.log``
  (``rover bench latency`` reads it). ``--mcu avr`` runs the compiled firmware in simavr
  instead (``rover mcu serve --avr``; it keeps no DRIVE log).

``DIR/rig.toml`` is a robot config for all of it: ``rover teleop --config DIR/rig.toml``,
``rover drive --config DIR/rig.toml --model M``, ``rover doctor --config DIR/rig.toml`` run every
node exactly as on the robot. ``rover rig --stop [DIR]`` stops the motor controller. Run
``rover rig`` again after the motor controller died (or was killed): it starts a new one on the
same path, the videos stay.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rover import priority
from rover.errors import ConfigError, DeviceError

RENDER_VERSION = 2  # bump when the rendering changes: cached videos are then made again
MCU_START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0
FPS = 30.0
FOURCC = "I420"  # raw YUV 4:2:0: no decoding, like the raw YUYV frames of a camera this size


@dataclass(frozen=True)
class RigSpec:
    """What `rover rig` stands in for: the videos' drive, and the motor controller."""

    out: Path
    mcu: str = "emulator"
    scenario: str = "forest"
    seed: int | None = None
    seconds: float = 20.0
    baud: int | None = None  # the emulator waits the wire time of this baud rate
    watchdog_ms: int = 250
    loop: bool = True

    def __post_init__(self) -> None:
        if self.mcu not in MCUS:
            raise ConfigError(f"--mcu {self.mcu}: use one of {', '.join(MCUS)}")
        if not 1.0 <= self.seconds <= 600.0:
            raise ConfigError(f"--seconds {self.seconds:g}: give 1 to 600 seconds of video")
        if self.baud is not None and self.baud <= 0:
            raise ConfigError(f"--baud {self.baud}: give a positive baud rate, e.g. 115200")


@dataclass(frozen=True)
class RigFiles:
    """Where a rig's pieces are."""

    root: Path

    @property
    def toml(self) -> Path:
        return self.root / "rig.toml"

    @property
    def state(self) -> Path:
        return self.root / "rig.json"

    @property
    def port(self) -> Path:
        return self.root / "mcu"

    @property
    def pidfile(self) -> Path:
        return self.root / "mcu.pid"

    @property
    def mcu_log(self) -> Path:
        return self.root / "mcu.log"

    @property
    def drive_log(self) -> Path:
        return self.root / "mcu-drives.log"


def cache_dir() -> Path:
    """The user's cache folder for rendered rig videos."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rover" / "rig"


def rig_calibration(camera):
    """The calibration `rover calibrate` would write for the simulator's ideal stereo pair
    (``sim.camera.CameraModel``): no distortion, parallel eyes, so rectifying changes nothing."""
    import numpy as np

    from drivers.calibration import StereoCalibration

    k = camera.intrinsics()
    baseline = camera.baseline_m
    p1 = np.hstack([k, np.zeros((3, 1))])
    p2 = p1.copy()
    p2[0, 3] = -camera.fx_px * baseline
    q = np.array(
        [
            [1.0, 0.0, 0.0, -camera.cx_px],
            [0.0, 1.0, 0.0, -camera.cy_px],
            [0.0, 0.0, 0.0, camera.fx_px],
            [0.0, 0.0, 1.0 / baseline, 0.0],
        ]
    )
    eye, zeros = np.eye(3), np.zeros((1, 5))
    t = np.array([[-baseline], [0.0], [0.0]])
    size = (camera.width_px, camera.height_px)
    return StereoCalibration(size, k, zeros, k, zeros, eye, t, eye, eye, p1, p2, q, 0.0)


def render_videos(spec: RigSpec, quiet: bool = False) -> dict[str, Path]:
    """Left and right videos and the calibration for `spec`'s drive, from the cache when
    already rendered; written atomically, so an interrupted render leaves no half file."""
    key = json.dumps([RENDER_VERSION, spec.scenario, spec.seed, spec.seconds, FPS])
    folder = cache_dir() / hashlib.sha256(key.encode()).hexdigest()[:16]
    files = {name: folder / name for name in ("left.avi", "right.avi", "calib.yaml")}
    if all(p.exists() for p in files.values()):
        return files
    import cv2

    from sim.camera import CameraModel

    camera = CameraModel()
    count = round(spec.seconds * FPS)
    if not quiet:
        print(f"rendering {count} stereo frames of {spec.scenario} (once; cached in {folder})")
    from rover.bench.common import expert_frames  # numpy and the simulator: only to render

    pairs = expert_frames(spec.scenario, count, spec.seed)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot make the video cache {folder} ({exc.strerror}): set XDG_CACHE_HOME"
        ) from None
    size = (camera.width_px, camera.height_px)
    for eye, name in ((0, "left.avi"), (1, "right.avi")):
        tmp = folder / f".{name}.{os.getpid()}.avi"
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), FPS, size)
        if not writer.isOpened():
            raise DeviceError(f"OpenCV cannot write {FOURCC} video to {tmp}: check the folder")
        for pair in pairs:
            writer.write(cv2.cvtColor(pair[eye], cv2.COLOR_RGB2BGR))
        writer.release()
        os.replace(tmp, files[name])
    rig_calibration(camera).save(files["calib.yaml"])
    return files


def rig_toml(spec: RigSpec, files: RigFiles) -> str:
    """The robot config of the rig (absolute paths, so it works from any folder)."""
    root = files.root
    motor_baud = f"baud = {spec.baud}\n" if spec.baud else ""
    return (
        f"# written by `rover rig`: {spec.scenario} video cameras and the {spec.mcu} motor "
        f"controller in {root}\n"
        "# (`rover rig --stop` stops it; every key is a robot.toml key, see README)\n\n"
        "[camera]\n"
        f'left = "{root / "left.avi"}"\n'
        f'right = "{root / "right.avi"}"\n'
        f'calibration = "{root / "calib.yaml"}"\n'
        f"width = 320\nheight = 240\nfps = {FPS}\n"
        f"loop = {'true' if spec.loop else 'false'}   # false: the file ends, the run says so\n\n"
        "[motor]\n"
        f'port = "{files.port}"\n{motor_baud}\n'
        "[traversability]\n"
        "camera_height_m = 0.25   # the simulator's camera: 0.25 m up, its pitch is in the "
        "calibration\ncamera_pitch_deg = 0.0\n"
    )


def _start_emulator(spec: RigSpec, files: RigFiles) -> subprocess.Popen:
    argv = [sys.executable, "-m", "drivers.emulator", "--link", str(files.port)]
    argv += ["--watchdog-ms", str(spec.watchdog_ms), "--drive-log", str(files.drive_log)]
    if spec.baud:
        argv += ["--baud", str(spec.baud)]
    with open(files.mcu_log, "ab") as log:
        # its own session: it outlives this command, and the terminal's Ctrl-C of a stack
        # run later in the same terminal does not reach it
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, priority.PRIORITY_ENV: priority.PATH},
        )


def _start_avr(spec: RigSpec, files: RigFiles) -> subprocess.Popen:
    """The compiled firmware in simavr (`rover mcu serve --avr`); it logs no DRIVE arrivals."""
    if spec.baud:
        raise ConfigError("--baud models the emulator's wire: leave it out with --mcu avr")
    from drivers.avr_sim import build_firmware

    build_firmware()  # here, so a missing toolchain is one line and the start is quick
    argv = [sys.executable, "-m", "rover.cli", "mcu", "serve", "--avr", "--link", str(files.port)]
    with open(files.mcu_log, "ab") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )


# `--mcu NAME` -> starts the motor controller on files.port, returns its process
MCUS: dict[str, Callable[[RigSpec, RigFiles], subprocess.Popen]] = {
    "emulator": _start_emulator,
    "avr": _start_avr,
}


def mcu_pid(files: RigFiles) -> int | None:
    """The pid of the rig's running motor controller, or None (no pidfile, or it died)."""
    try:
        pid = int(files.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    return pid if str(files.port) in cmdline.split("\0") else None  # not a reused pid


def _wait_for_port(proc: subprocess.Popen, files: RigFiles) -> None:
    deadline = time.monotonic() + MCU_START_TIMEOUT_S
    while not files.port.exists():
        if proc.poll() is not None:
            tail = files.mcu_log.read_text(errors="replace").strip().splitlines()[-1:]
            raise DeviceError(
                f"the motor controller exited at start ({tail[0] if tail else proc.returncode}): "
                f"see {files.mcu_log}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise DeviceError(f"the motor controller did not create {files.port} in time")
        time.sleep(0.02)  # polling a path another process creates


def start_rig(spec: RigSpec, quiet: bool = False) -> RigFiles:
    """Render (or reuse) the videos, start the motor controller, write rig.toml and rig.json."""
    files = RigFiles(spec.out.resolve())
    try:
        files.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {spec.out}: cannot make the folder ({exc.strerror})") from None
    running = mcu_pid(files)
    if running is not None:
        state = json.loads(files.state.read_text()) if files.state.exists() else {}
        if state.get("spec") and state["spec"] != _spec_json(spec):
            raise ConfigError(
                f"a rig with other options runs in {files.root} (motor controller pid "
                f"{running}): stop it first with `rover rig --stop {spec.out}`"
            )
        if not quiet:
            print(f"rig in {files.root} already running (motor controller pid {running})")
        return files
    videos = render_videos(spec, quiet)
    for name, path in videos.items():
        link = files.root / name
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(path)
    proc = MCUS[spec.mcu](spec, files)
    _wait_for_port(proc, files)
    files.pidfile.write_text(f"{proc.pid}\n")
    _write_atomic(files.toml, rig_toml(spec, files))
    state = {"spec": _spec_json(spec), "mcu_pid": proc.pid, "port": str(files.port)}
    state["drive_log"] = str(files.drive_log) if spec.mcu == "emulator" else None
    _write_atomic(files.state, json.dumps(state, indent=1) + "\n")
    if not quiet:
        print(
            f"rig in {files.root}: {spec.scenario} video cameras ({spec.seconds:g} s"
            f"{', looping' if spec.loop else ''}), {spec.mcu} motor controller at {files.port}"
            f" (pid {proc.pid}{f', {spec.baud} baud wire' if spec.baud else ''})\n"
            f"  rover doctor --config {files.toml}\n"
            f"  rover teleop --config {files.toml} --record\n"
            f"  rover drive --config {files.toml} --model M\n"
            f"  rover rig --stop {spec.out}"
        )
    return files


def stop_rig(out: Path, quiet: bool = False) -> bool:
    """Stop the rig's motor controller (SIGTERM, then SIGKILL); False when none ran."""
    files = RigFiles(out.resolve())
    pid = mcu_pid(files)
    if pid is None:
        files.pidfile.unlink(missing_ok=True)
        if not quiet:
            print(f"no rig running in {files.root}")
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while mcu_pid(files) is not None and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for another session's process to exit
    if mcu_pid(files) is not None:
        os.kill(pid, signal.SIGKILL)
    files.pidfile.unlink(missing_ok=True)
    if not quiet:
        print(f"stopped the rig's motor controller (pid {pid}) in {files.root}")
    return True


def _spec_json(spec: RigSpec) -> dict:
    raw = asdict(spec)
    raw["out"] = str(Path(spec.out).resolve())
    return raw


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`rover rig`'s options."""
    parser.add_argument("--out", default="rig", help="the rig's folder (default: ./rig)")
    parser.add_argument(
        "--stop", nargs="?", const="", metavar="DIR", help="stop the rig in DIR (default: --out)"
    )
    parser.add_argument("--mcu", default="emulator", help=f"motor controller: {', '.join(MCUS)}")
    parser.add_argument("--scenario", default="forest", help="where the videos are driven")
    parser.add_argument("--seed", type=int, default=None, help="world seed of the videos")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the videos")
    parser.add_argument("--baud", type=int, default=None, help="model a wire at this baud")
    parser.add_argument("--watchdog-ms", type=int, default=250, help="the motor watchdog")
    parser.add_argument(
        "--no-loop", action="store_true", help="the videos end instead of starting over"
    )


def run(args: argparse.Namespace) -> int:
    """`rover rig ...`: start or stop the rig."""
    if args.stop is not None:
        stop_rig(Path(args.stop or args.out))
        return 0
    spec = RigSpec(
        out=Path(args.out),
        mcu=args.mcu,
        scenario=args.scenario,
        seed=args.seed,
        seconds=args.seconds,
        baud=args.baud,
        watchdog_ms=args.watchdog_ms,
        loop=not args.no_loop,
    )
    start_rig(spec)
    return 0
