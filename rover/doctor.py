"""`rover doctor --config robot.toml`: a preflight before driving a robot (or the rig).

One line per check: ``ok``, ``warn`` (a run works, but look), or ``FAIL`` and the fix. Exits
non-zero when anything a run needs fails. The checks, in order (``--skip NAME`` leaves one out):

- config: the TOML file parses and validates;
- calibration: the file is there and made at the configured image size;
- cameras: both eyes open and deliver the configured rate (read in a child process, so a
  camera that hangs cannot hang the doctor); eye-to-eye skew p99 of the grab stamps;
- serial: the port exists and this user may open it (the dialout group); the firmware answers a
  DRIVE with its STATE (the protocol has no version query: the echo of the DRIVE's seq in a
  valid STATE frame is protocol version 1 answering); its watchdog trips when commands stop.
  Every DRIVE the doctor sends is disarmed with zero throttle: the motors never move;
- disk: free space for 20 minutes of recording at the MB per minute this camera's frames take
  as the recorder's JPEGs;
- torch: the device the steering node would use (CUDA, Jetson, Apple MPS, CPU);
- models: the steering model (``--model``, default the bundled one) and the traversability
  segmenter load (weights_only);
- nodes: the real camera, steering and traversability nodes run on live frames for
  ``--seconds`` and their per-frame latency p99 stays within budget. Over budget on an
  otherwise idle machine fails; over budget while other programs kept the cores busy (the
  CPU they used meanwhile, measured in the same window) warns: rerun on an idle machine.
"""

from __future__ import annotations

import argparse
import grp
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from rover.errors import RoverError

RECORD_MINUTES = 20
SERIAL_REPLY_S = 0.5


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    status: str  # "ok", "warn", "FAIL"
    check: str
    text: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.check}: {self.text}"


@dataclass
class Context:
    """What the checks share: the options, the config, what earlier checks found."""

    args: argparse.Namespace
    cfg: object = None
    pairs: list = field(default_factory=list)  # frames the camera check read
    failed: set[str] = field(default_factory=set)


def ok(check: str, text: str) -> Finding:
    return Finding("ok", check, text)


def warn(check: str, text: str) -> Finding:
    return Finding("warn", check, text)


def fail(check: str, text: str) -> Finding:
    return Finding("FAIL", check, text)


def check_config(ctx: Context) -> Iterator[Finding]:
    from rover.config import load_config

    try:
        ctx.cfg = load_config(ctx.args.config, ctx.args.set)
    except RoverError as exc:
        yield fail("config", str(exc))
        return
    yield ok("config", f"{ctx.args.config or 'built-in defaults'} is valid")


def check_calibration(ctx: Context) -> Iterator[Finding]:
    from drivers.calibration import StereoCalibration

    camera = ctx.cfg.camera
    if camera.calibration is None:
        yield warn(
            "calibration",
            "none configured: frames are not rectified and traversability uses the simulator's "
            "camera; run `rover calibrate` and set [camera] calibration",
        )
        return
    try:
        calib = StereoCalibration.load(camera.calibration, (camera.width, camera.height))
    except RoverError as exc:
        yield fail("calibration", str(exc))
        return
    w, h = calib.image_size
    yield ok(
        "calibration",
        f"{camera.calibration}: {w}x{h}, baseline {calib.baseline_m * 100:.1f} cm, "
        f"RMS {calib.rms_px:.2f} px",
    )


def check_cameras(ctx: Context) -> Iterator[Finding]:
    from rover.doctor_probes import probe_camera

    camera = replace(ctx.cfg.camera, calibration=None)  # the calibration has its own line
    result = probe_camera(camera, ctx.args.camera_timeout)
    if result.error:
        yield fail("cameras", result.error)
        return
    ctx.pairs = result.pairs
    fps, want = result.fps, camera.fps
    eyes = "side-by-side source" if camera.side_by_side else f"{camera.left} + {camera.right}"
    text = f"{eyes}: {result.frames} pairs at {fps:.1f} fps (configured {want:g})"
    files = isinstance(camera.left, str) and os.path.exists(camera.left)
    if files and fps > 1.5 * want:  # read as fast as they decode; the camera node paces them
        text += f"; files read as fast as they decode, the camera node sends {want:g} fps"
    if fps < 0.9 * want:
        yield fail(
            "cameras",
            f"{text}: too slow: lower [camera] fps or the size, or use another USB port/hub",
        )
    else:
        yield ok("cameras", text)
    limit_ms = 250.0 / want  # a quarter of a frame period
    skew = result.skew_p99_ms
    text = f"eye-to-eye skew p99 {skew:.2f} ms (limit {limit_ms:.1f} ms)"
    if skew > limit_ms:
        yield warn(
            "camera skew",
            f"{text}: the eyes see different moments; use a synchronised stereo camera "
            "or a lower resolution",
        )
    else:
        yield ok("camera skew", text)


def check_serial(ctx: Context) -> Iterator[Finding]:
    motor = ctx.cfg.motor
    port = motor.port
    if not os.path.exists(port):
        yield fail(
            "serial port",
            f"{port} does not exist: plug in the motor controller, or set [motor] port "
            "(see ls /dev/serial/by-id)",
        )
        return
    if not os.access(port, os.R_OK | os.W_OK):
        yield fail("serial port", f"{port}: {_permission_hint(port)}")
        return
    yield ok("serial port", f"{port} -> {os.path.realpath(port)}, readable and writable")
    from rover.doctor_probes import probe_firmware

    for status, check, text in probe_firmware(motor, SERIAL_REPLY_S):
        yield Finding(status, check, text)


def _permission_hint(port: str) -> str:
    try:
        dialout = grp.getgrnam("dialout").gr_gid
    except KeyError:
        dialout = None
    if dialout is not None and dialout not in os.getgroups():
        return (
            "no permission: add yourself to the dialout group (sudo usermod -aG dialout "
            "$USER) and log in again"
        )
    return f"no permission to read and write it: check its owner and mode (ls -l {port})"


def check_disk(ctx: Context) -> Iterator[Finding]:
    import cv2

    if not ctx.pairs:
        yield warn("disk", "skipped: no camera frames to size a recording by")
        return
    quality = ctx.cfg.recorder.jpeg_quality
    sizes = []
    for left, right in ctx.pairs[:30]:
        for image in (left, right):
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            sizes.append(len(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]))
    mb_per_min = 2 * sum(sizes) / len(sizes) * ctx.cfg.camera.fps * 60 / 1e6
    folder = Path(ctx.args.record_dir).resolve()
    while not folder.exists():
        folder = folder.parent
    free_gb = shutil.disk_usage(folder).free / 1e9
    need_gb = RECORD_MINUTES * mb_per_min / 1e3
    text = (
        f"{free_gb:.1f} GB free in {folder}; {RECORD_MINUTES} min of recording at "
        f"{mb_per_min:.0f} MB/min needs {need_gb:.1f} GB"
    )
    if free_gb < need_gb:
        yield fail("disk", f"{text}: free some space or record elsewhere (--record DIR)")
    else:
        yield ok("disk", text)


def check_torch(ctx: Context) -> Iterator[Finding]:
    import torch

    from perception.infer import pick_device

    try:
        device = pick_device(ctx.cfg.steering.device)
    except RoverError as exc:
        yield fail("torch", f"{exc} (set [steering] device)")
        ctx.failed.add("torch")
        return
    what = {"cuda": "CUDA", "mps": "Apple MPS", "cpu": "CPU"}[device.type]
    if device.type == "cuda":
        what = f"CUDA ({torch.cuda.get_device_name(0)})"
    if os.path.exists("/etc/nv_tegra_release"):
        what = f"Jetson, {what}"
    missing = [] if device.type == "cuda" else ["no CUDA GPU"]
    yield ok(
        "torch",
        f"torch {torch.__version__}, the steering node runs on {what}"
        + (f" ({', '.join(missing)})" if missing else ""),
    )


def check_scheduling(ctx: Context) -> Iterator[Finding]:
    """Whether the glass-to-motor path will run in real time (rover.priority): a warning, not
    a failure: the stack runs either way, with longer tails when the computer is busy."""
    from rover import priority

    allowed, why = priority.realtime_allowed()
    if allowed:
        yield ok(
            "scheduling",
            "the camera, steering and control nodes run in real time "
            f"(SCHED_FIFO {priority.REALTIME_PRIORITY}); traversability and the recorder at "
            f"nice {priority.BACKGROUND_NICE}",
        )
    else:
        yield warn(
            "scheduling",
            f"the camera, steering and control nodes run as ordinary processes ({why})",
        )


def check_models(ctx: Context) -> Iterator[Finding]:
    from perception.infer import load_checkpoint
    from perception.traversability.pipeline import resolve_model

    path = ctx.args.model or _bundled_steering()
    if path is None:
        yield warn("steering model", "none given and none bundled: pass --model M")
    else:
        try:
            ckpt = load_checkpoint(path)
            yield ok("steering model", f"{path} loads ({ckpt.config.arch}, weights only)")
        except RoverError as exc:
            ctx.failed.add("models")
            yield fail("steering model", str(exc))
    trav = resolve_model(ctx.cfg.traversability.model)
    if not trav:
        yield ok("traversability model", "none configured: stereo only")
        return
    from perception.traversability.model import load_model

    try:
        _, info = load_model(trav)
        yield ok("traversability model", f"{trav} loads ({info['sha256'][:12]}, weights only)")
    except RoverError as exc:
        ctx.failed.add("models")
        yield fail("traversability model", str(exc))


def _bundled_steering() -> str | None:
    from perception.steering.bundled import bundled_model_path

    path = bundled_model_path()
    return str(path) if path else None


def check_nodes(ctx: Context) -> Iterator[Finding]:
    from rover.doctor_probes import run_nodes

    if not ctx.pairs or ctx.failed & {"torch", "models"}:
        yield warn("nodes", "skipped: needs working cameras, torch and models (see above)")
        return
    model = ctx.args.model or _bundled_steering()
    budgets = {"steering": ctx.args.steering_budget_ms}
    budgets["traversability"] = ctx.args.traversability_budget_ms or 1000 / ctx.cfg.camera.fps
    for name, summary, error in run_nodes(ctx.args, model, ctx.args.seconds):
        if error:
            yield fail(f"{name} node", error)
            continue
        yield node_finding(name, summary, budgets[name], ctx.args.seconds)


def node_finding(name: str, summary: dict, budget_ms: float, seconds: float) -> Finding:
    """A node's latency against its budget: over it on an idle machine fails; while other
    programs kept the machine busy it warns, since the figure measures them as much."""
    text = (
        f"{summary['n']} live frames in {seconds:g} s, p50 {summary['p50_ms']:.2f} "
        f"ms, p99 {summary['p99_ms']:.2f} ms (budget p99 {budget_ms:.1f} ms)"
    )
    if summary["p99_ms"] <= budget_ms:
        return ok(f"{name} node", text)
    others = summary.get("others")
    if others is not None and others.busy():
        return warn(
            f"{name} node",
            f"{text}: over budget while {others.text()}: rerun on an idle machine",
        )
    idle = f" on an otherwise idle machine ({others.text()})" if others is not None else ""
    return fail(
        f"{name} node",
        f"{text}: too slow{idle}: fewer threads fighting ([{name}] threads), a GPU, "
        "or a smaller model",
    )


CHECKS: dict[str, Callable[[Context], Iterator[Finding]]] = {
    "config": check_config,
    "calibration": check_calibration,
    "cameras": check_cameras,
    "serial": check_serial,
    "disk": check_disk,
    "torch": check_torch,
    "scheduling": check_scheduling,
    "models": check_models,
    "nodes": check_nodes,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`rover doctor`'s options."""
    parser.add_argument("--config", help="robot TOML file (default: built-in defaults)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set motor.port=/dev/ttyACM0 (repeatable)",
    )
    parser.add_argument("--model", help="steering model to check (default: the bundled one)")
    parser.add_argument("--record-dir", default="recordings", help="where you will record")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the nodes run")
    parser.add_argument("--camera-timeout", type=float, default=5.0, help="seconds per camera")
    parser.add_argument(
        "--steering-budget-ms",
        type=float,
        default=5.0,
        help="the steering node's per-frame latency p99 must stay below this",
    )
    parser.add_argument(
        "--traversability-budget-ms", type=float, default=None, help="default: a frame period"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=list(CHECKS)[1:],
        help="leave out a check (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Run every check, one line each; 1 when any failed."""
    ctx = Context(args)
    failures = 0
    for name, check in CHECKS.items():
        if name in args.skip:
            continue
        for finding in check(ctx):
            print(finding.line(), flush=True)
            failures += finding.status == "FAIL"
        if name == "config" and ctx.cfg is None:
            break
    print(f"{failures} check(s) failed" if failures else "all checks passed")
    return 1 if failures else 0
