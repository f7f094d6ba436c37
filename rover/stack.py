"""`rover drive`, `rover teleop`, `rover demo`: turn the user's request into a managed stack."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

from drivers.gamepad import has_display
from rover.config import load_config
from rover.errors import ConfigError, DataError
from rover.manager import Manager, NamespaceLock, RunOptions
from rover.topics import BusConfig, motor_port_for_sim

SIM_POLICIES = ("expert", "straight", "random")


# flags that only the simulator reads: (argparse destination, flag, its "not given" value)
SIM_ONLY_FLAGS = (
    ("duration", "--duration", None),
    ("lockstep", "--lockstep", False),
    ("seed", "--seed", None),
    ("snapshot", "--snapshot", None),
    ("frame_drop", "--frame-drop", 0.0),
    ("serial_loss", "--serial-loss", 0.0),
    ("camera_latency_ms", "--camera-latency-ms", 0.0),
    ("safety_driver", "--safety-driver", 0.0),
    ("metrics_out", "--metrics-out", None),
    ("mcu", "--mcu", "emulator"),
    ("takeover", "--takeover", None),
)
ROBOT_ONLY_FLAGS = (
    ("unattended", "--unattended", False),
    ("teleop_script", "--teleop-script", None),
)


def check_flags(args: argparse.Namespace) -> None:
    """A flag the chosen target ignores is a mistake: say which, in one line."""
    if args.sim is None:
        for dest, flag, unset in SIM_ONLY_FLAGS:
            if getattr(args, dest, unset) != unset:
                raise ConfigError(
                    f"{flag} is for the simulator: add --sim SCENARIO, or leave {flag} out "
                    "on the robot"
                )
        return
    for dest, flag, unset in ROBOT_ONLY_FLAGS:
        if getattr(args, dest, unset) != unset:
            raise ConfigError(f"{flag} is for the robot: leave it out with --sim")


def check_model_file(model: str | None) -> None:
    """A --model that is no file, or an empty one, fails here as it would in the steering
    node: the same DataError, the same exit code (without loading torch up front)."""
    if model is None:
        raise ConfigError(
            "rover drive needs --model M, a checkpoint from `rover train steering`; or drive "
            "the simulator: --sim SCENARIO (its expert drives unless --model is given)"
        )
    if not os.path.isfile(model):
        raise DataError(
            f"--model {model!r} is not a file: give a checkpoint from "
            "`rover train steering`, or in the simulator expert|straight|random"
        )
    if os.path.getsize(model) == 0:
        raise DataError(
            f"model file {model} is empty (0 bytes): a training run was cut short? "
            "train again (`rover train steering`)"
        )


def check_request(args: argparse.Namespace) -> str | None:
    """Every check of the command line that touches nothing (flags first, then the model);
    returns the model to drive with."""
    check_flags(args)
    if getattr(args, "mcu", "emulator") == "avr" and getattr(args, "serial_loss", 0.0):
        raise ConfigError("--serial-loss is the emulator's: drop it or --mcu avr")
    safety_driver = getattr(args, "safety_driver", 0.0)
    if not 0.0 <= safety_driver <= 30.0:
        raise ConfigError(f"--safety-driver {safety_driver:g}: give 0 to 30 seconds")
    model = getattr(args, "model", None)
    if args.mode == "drive" and model is None and args.sim is not None:
        model = "expert"  # the simulator's own driver, unless told otherwise
    if args.sim is None and model in SIM_POLICIES:
        raise ConfigError(f"--model {model} is a simulator policy: add --sim SCENARIO")
    if args.mode == "drive" and model not in SIM_POLICIES:
        check_model_file(model)
    _check_takeover(args, model)
    return model


def _check_takeover(args: argparse.Namespace, model: str | None) -> None:
    """``--takeover``: a simulated operator takes the wheel from a trained model only."""
    text = getattr(args, "takeover", None)
    if text is None:
        return
    from sim.takeover import parse_takeover

    parse_takeover(text)
    if args.mode != "drive" or model in SIM_POLICIES:
        raise ConfigError(
            f"--takeover is the expert taking the wheel from a model: give --model M (a "
            f"checkpoint), not {model or 'teleop'}"
        )


def build_options(args: argparse.Namespace) -> RunOptions:
    """Check the request and derive each node's arguments."""
    model = check_request(args)
    safety_driver = getattr(args, "safety_driver", 0.0)
    if getattr(args, "mcu", "emulator") == "avr":
        from drivers.avr_sim import build_firmware

        build_firmware()  # once, here: a missing toolchain is one line, not a failing node
    overrides = list(args.set)
    overrides += _perturb_overrides(args)
    if getattr(args, "randomise_materials", 0.0) and args.sim is None:
        raise ConfigError("--randomise-materials is for the simulator: add --sim SCENARIO")
    if not 0.0 <= getattr(args, "randomise_materials", 0.0) <= 1.0:
        raise ConfigError(f"--randomise-materials {args.randomise_materials:g}: give 0 to 1")
    sim_args: list[str] = []
    if args.sim is not None:
        _check_scenarios(args.sim)
        overrides.append(f"motor.port={motor_port_for_sim(args.namespace)}")
        sim_args = ["--scenario", args.sim, "--mode", args.mode]
        for flag, value in (
            ("--seed", args.seed),
            ("--duration", args.duration),
            ("--metrics-out", args.metrics_out),
            ("--snapshot", args.snapshot),
        ):
            if value is not None:
                sim_args += [flag, str(value)]
        for flag in ("camera_latency_ms", "frame_drop", "serial_loss"):
            value = getattr(args, flag, 0.0)
            if value:
                sim_args += [f"--{flag.replace('_', '-')}", str(value)]
        if safety_driver:
            sim_args += ["--safety-driver-s", str(safety_driver)]
        if getattr(args, "randomise_materials", 0.0):
            sim_args += ["--randomise-materials", str(args.randomise_materials)]
        if getattr(args, "takeover", None):
            sim_args += ["--takeover", args.takeover]
        if args.lockstep:
            sim_args.append("--lockstep")
        if getattr(args, "mcu", "emulator") == "avr":
            sim_args += ["--mcu", "avr"]
            if args.lockstep:  # simavr shares the CPU: on a loaded machine it lags real time
                sim_args += ["--lockstep-timeout", "5"]
        if model in SIM_POLICIES:
            sim_args += ["--policy", model]
        if args.headless or not has_display():
            sim_args.append("--headless")
    if args.mode == "drive":
        overrides.append("control.autopilot_without_teleop=true")
    unattended = bool(getattr(args, "unattended", False))
    if args.sim is None:
        overrides.append("control.camera_stale=true")
        if not unattended:
            overrides.append("control.require_operator=true")
    load_config(args.config, overrides)  # fail here, once, in one line: not in every node
    node_args = {"sim": sim_args, "teleop": _teleop_args(args)}
    if getattr(args, "lockstep", False):
        # inputs come frame by frame: the 50 Hz repeat re-sends the answer instead of judging
        # its age on the wall clock, so a loaded machine gives the same run as a quiet one
        node_args["control"] = ["--lockstep"]
        if getattr(args, "traversability", False):
            node_args["control"].append("--lockstep-maps")  # the guard sees frame N's map
    if model is not None and model not in SIM_POLICIES:
        node_args["steering"] = ["--model", model]
    record_dir = None
    if getattr(args, "record", None) is not None:
        from rover.recording.format import new_session_dir

        record_dir = str(new_session_dir(args.record))  # once: a restarted recorder appends
        node_args["recorder"] = ["--out", record_dir]
        sim_args += ["--wait-ready", "recorder"]  # not one frame before the recorder hears
        print(f"recording to {record_dir}")
    remote = _remote_args(args, node_args, record_dir)
    return RunOptions(
        **remote,
        mode=args.mode,
        sim=args.sim,
        model=model,
        config=args.config,
        namespace=args.namespace,
        overrides=tuple(overrides),
        record=record_dir,
        traversability=bool(getattr(args, "traversability", False)),
        node_args=node_args,
        unattended=unattended,
    )


def _teleop_args(args: argparse.Namespace) -> list[str]:
    """The teleop node's arguments: its mode (drive starts on the autopilot), window or not."""
    out = ["--mode", args.mode]
    if getattr(args, "headless", False):
        out.append("--headless")
    script = getattr(args, "teleop_script", None)
    if script is not None:
        if not os.path.isfile(script):
            raise ConfigError(f"--teleop-script {script} is not a file: give a JSON input script")
        out += ["--script", os.path.abspath(script)]
    return out


def _perturb_overrides(args: argparse.Namespace) -> list[str]:
    """``--perturb RATE,SIZE`` as [perturb] overrides (checked here, in one line)."""
    text = getattr(args, "perturb", None)
    if text is None:
        return []
    from rover.perturb import parse_perturb

    rate, size = parse_perturb(text)
    return [f"perturb.rate_hz={rate}", f"perturb.size={size}"]


def _check_scenarios(names: str) -> None:
    """Every scenario of ``--sim a,b,c`` exists (ConfigError naming the missing one)."""
    from sim.scenario import resolve_scenario_path

    items = [n.strip() for n in names.split(",")]
    if not all(items):
        raise ConfigError(f"--sim {names!r}: an empty name in the list; write forest,open")
    for name in items:
        resolve_scenario_path(name)


def _remote_args(args: argparse.Namespace, node_args: dict, record_dir: str | None) -> dict:
    """The remote node's and the Foxglove node's arguments (operators off the robot)."""
    listen, console = getattr(args, "listen", None), getattr(args, "console", None)
    foxglove = getattr(args, "foxglove", None)
    from rover.remote import parse_address, require_foxglove_loopback

    for flag, value in (("--listen", listen), ("--console", console), ("--foxglove", foxglove)):
        if value is not None:
            try:
                parse_address(value)
            except ConfigError as exc:
                raise ConfigError(f"{flag}: {exc}") from None
    remote: list[str] = []
    if listen:
        from rover.keys import KeyStore, check_curve

        check_curve()
        KeyStore(getattr(args, "keys", None)).pair("robot")  # no key: one line, before starting
        remote += ["--listen", listen]
    if console:
        import secrets

        from rover.nodes.remote import TOKEN_ENV

        # one token for the whole run: a restarted remote node keeps open pages working
        os.environ.setdefault(TOKEN_ENV, secrets.token_urlsafe(18))
        remote += ["--console", console]
    if getattr(args, "keys", None):
        remote += ["--keys", args.keys]
    if record_dir:
        remote += ["--recording", "--disk", record_dir]
    node_args["remote"] = remote
    if foxglove:
        require_foxglove_loopback(parse_address(foxglove)[0])
        node_args["foxglove"] = ["--address", foxglove]
    return {"listen": listen, "console": console, "foxglove": foxglove}


def run_stack(args: argparse.Namespace) -> int:
    """Run the stack until the simulator finishes, Ctrl-C, or a node fails for good; then
    say what it did and where its files are (rover.summary)."""
    from rover.summary import RunSummary

    check_request(args)  # a bad command line says so, even where the namespace is taken
    bus = load_config(args.config, list(args.set)).bus
    bus = BusConfig.from_dict({**bus.__dict__, "namespace": args.namespace})
    with RunSummary.prepare(args) as summary:  # in the simulator: metrics to quote at the end
        # before anything touches the namespace (its sockets, the simulator's port, a session)
        lock = NamespaceLock(bus).acquire(f"rover {args.mode}")
        try:
            options = build_options(args)
            manager = Manager(options, lock=lock)
        except BaseException:
            lock.release()
            raise
        reason = manager.run()
        summary.report(options.record)
    if manager.clean:
        if reason not in ("sim finished", "stopped", "interrupted", *manager.printed):
            print(f"rover: {reason}", file=sys.stderr, flush=True)
        if manager.kept_logs:  # it recovered, but say so: the logs were kept for a reason
            print(
                f"rover: note: {manager.failures[-1]}; restarted "
                f"({len(manager.failures)} failure(s)), node logs: {manager.kept_logs}",
                file=sys.stderr,
            )
        return 0
    logs = f" (node logs: {manager.kept_logs})" if manager.kept_logs else ""
    print(f"rover: error: {reason}{logs}", file=sys.stderr)
    return manager.exit_code  # the failing node's: the same as had the CLI caught it


def sim_drive_args(
    scenario: str,
    model: str,
    metrics_out: Path,
    *,
    headless: bool = True,
    lockstep: bool = True,
    duration: float | None = None,
    seed: int | None = None,
    summary: bool = True,
) -> argparse.Namespace:
    """The arguments of `rover drive --sim ...` for a run started from code (demo, bench)."""
    return argparse.Namespace(
        mode="drive",
        sim=scenario,
        model=model,
        seed=seed,
        headless=headless,
        lockstep=lockstep,
        duration=duration,
        metrics_out=str(metrics_out),
        snapshot=None,
        config=None,
        set=[],
        namespace=f"run{os.getpid()}x{uuid.uuid4().hex[:6]}",
        summary=summary,  # False: no end-of-run lines (a bench prints its own table)
    )


def run_demo(args: argparse.Namespace) -> int:
    """The simulator driven by the bundled steering CNN (else the expert), in a window or headless with a summary."""
    headless = args.headless or not has_display()
    duration = args.duration  # None: until the goal (or the scenario's time limit)
    metrics = Path(tempfile.mkdtemp(prefix="rover-demo-")) / "metrics.json"
    from perception.steering.bundled import bundled_model_path

    bundled = bundled_model_path()  # a checkout without it still demos with the expert
    model = str(bundled) if bundled else "expert"
    stack = sim_drive_args(
        args.sim, model, metrics, headless=headless, lockstep=headless, duration=duration
    )
    print(
        f"rover demo: {args.sim} scenario, "
        f"{'bundled steering CNN' if bundled else 'expert'} autopilot, "
        f"{'headless' if headless else 'window'}"
        + (f", {duration:g} s simulated" if duration else ", until the goal")
        + ("" if headless else " (Esc or close the window to stop)")
    )
    return run_stack(stack)  # its summary names the metrics and the trajectory picture
