"""`rover drive`, `rover teleop`, `rover demo`: turn the user's request into a managed stack.

`run_stack(request)` checks a ``rover.runspec.RunRequest`` (built once by the CLI, the demo, the
benches or `rover eval`), reads the robot config once, takes the namespace and hands the checked
``Run`` to the manager, whose table derives every node's arguments from it.
``python -m rover.stack REQUEST_JSON`` runs a request in a process of its own (`rover eval`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from drivers.gamepad import has_display
from rover.config import RobotConfig, load_config
from rover.errors import ConfigError, DataError
from rover.manager import Manager
from rover.runspec import Run, RunRequest, sim_request
from rover.topics import BusConfig, motor_port_for_sim
from sim.policies import POLICIES
from sim.simulation import check_safety_driver_s


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
            f"`rover train steering`, or in the simulator {'|'.join(POLICIES)}"
        )
    if os.path.getsize(model) == 0:
        raise DataError(
            f"model file {model} is empty (0 bytes): a training run was cut short? "
            "train again (`rover train steering`)"
        )


def check_request(request: RunRequest) -> str | None:
    """Every check of the request that touches nothing; returns the model to drive with."""
    sim = request.sim
    if sim is not None:
        if sim.mcu == "avr" and sim.serial_loss:
            raise ConfigError("--serial-loss is the emulator's: drop it or --mcu avr")
        check_safety_driver_s(sim.safety_driver_s, "--safety-driver")
    model = request.model
    if request.mode == "drive" and model is None and sim is not None:
        model = "expert"  # the simulator's own driver, unless told otherwise
    if sim is None and model in POLICIES:
        raise ConfigError(f"--model {model} is a simulator policy: add --sim SCENARIO")
    if request.mode == "drive" and model not in POLICIES:
        check_model_file(model)
    if sim is not None:
        if not 0.0 <= sim.randomise_materials <= 1.0:
            raise ConfigError(f"--randomise-materials {sim.randomise_materials:g}: give 0 to 1")
        _check_scenarios(sim.scenario)
    _check_takeover(request, model)
    script = request.teleop_script
    if script is not None and not os.path.isfile(script):
        raise ConfigError(f"--teleop-script {script} is not a file: give a JSON input script")
    return model


def _check_takeover(request: RunRequest, model: str | None) -> None:
    """``--takeover``: a simulated operator takes the wheel from a trained model only."""
    text = request.sim.takeover if request.sim is not None else None
    if text is None:
        return
    from sim.takeover import parse_takeover

    parse_takeover(text)
    if request.mode != "drive" or model in POLICIES:
        raise ConfigError(
            f"--takeover is the expert taking the wheel from a model: give --model M (a "
            f"checkpoint), not {model or 'teleop'}"
        )


def stack_overrides(request: RunRequest) -> tuple[str, ...]:
    """The robot-config values of every node: the user's, then the stack's own."""
    overrides = [*request.overrides, *_perturb_overrides(request.perturb)]
    if request.sim is not None:
        overrides.append(f"motor.port={motor_port_for_sim(request.namespace, create=False)}")
    if request.mode == "drive":
        overrides.append("control.autopilot_without_teleop=true")
    if request.sim is None:
        overrides.append("control.camera_stale=true")
        if not request.unattended:
            overrides.append("control.require_operator=true")
    return tuple(overrides)


def describe(request: RunRequest, model: str | None, robot: RobotConfig, bus: BusConfig) -> Run:
    """The checked run, once the namespace is ours: the steps that leave something behind
    (the firmware build, the session folder, the console's token) happen here, once."""
    sim = request.sim
    if sim is not None and sim.mcu == "avr":
        from drivers.avr_sim import build_firmware

        build_firmware()  # once, here: a missing toolchain is one line, not a failing node
    record_dir = None
    if request.record is not None:
        from rover.recording.format import new_session_dir

        record_dir = str(new_session_dir(request.record))  # once: a restarted recorder appends
        print(f"recording to {record_dir}")
    _check_remote(request)
    if sim is not None:
        sim = dataclasses.replace(
            sim,
            mode=request.mode,
            policy=model if model in POLICIES else None,
            headless=request.headless or not has_display(),
            # simavr shares the CPU: on a loaded machine it lags real time
            lockstep_timeout_s=5.0 if sim.mcu == "avr" and sim.lockstep else sim.lockstep_timeout_s,
            wait_ready=("recorder",) if record_dir else (),  # not one frame before it hears
        )
    script = request.teleop_script
    return Run(
        mode=request.mode,
        bus=bus,
        config=request.config,
        overrides=stack_overrides(request),
        sim=sim,
        model=model,
        record=record_dir,
        traversability=request.traversability,
        headless=request.headless,
        lockstep=sim is not None and sim.lockstep,
        unattended=request.unattended,
        teleop_script=os.path.abspath(script) if script is not None else None,
        listen=request.listen,
        console=request.console,
        foxglove=request.foxglove,
        keys=request.keys,
    )


def _perturb_overrides(text: str | None) -> list[str]:
    """``--perturb RATE,SIZE`` as [perturb] overrides (checked here, in one line)."""
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


def _check_remote(request: RunRequest) -> None:
    """The operators off the robot: addresses, keys and the console's token."""
    from rover.remote import parse_address, require_foxglove_loopback

    for flag, value in (
        ("--listen", request.listen),
        ("--console", request.console),
        ("--foxglove", request.foxglove),
    ):
        if value is not None:
            try:
                parse_address(value)
            except ConfigError as exc:
                raise ConfigError(f"{flag}: {exc}") from None
    if request.listen:
        from rover.keys import KeyStore, check_curve

        check_curve()
        KeyStore(request.keys).pair("robot")  # no key: one line, before starting
    if request.console:
        import secrets

        from rover.nodes.remote import TOKEN_ENV

        # one token for the whole run: a restarted remote node keeps open pages working
        os.environ.setdefault(TOKEN_ENV, secrets.token_urlsafe(18))
    if request.foxglove:
        require_foxglove_loopback(parse_address(request.foxglove)[0])


def run_stack(request: RunRequest) -> int:
    """Run the stack until the simulator finishes, Ctrl-C, or a node fails for good; then
    say what it did and where its files are (rover.summary)."""
    from rover.summary import RunSummary

    model = check_request(request)  # a bad request says so, even where the namespace is taken
    robot = load_config(request.config, list(stack_overrides(request)))  # once, in one line
    bus = BusConfig.from_dict({**robot.bus.__dict__, "namespace": request.namespace})
    with RunSummary.prepare(request.sim, request.summary) as summary:
        if request.sim is not None and summary.metrics_path is not None:
            sim = dataclasses.replace(request.sim, metrics_out=str(summary.metrics_path))
            request = dataclasses.replace(request, sim=sim)
        # the namespace first: before anything touches it (its sockets, a session folder)
        manager = Manager.holding(
            bus, f"rover {request.mode}", lambda: describe(request, model, robot, bus)
        )
        reason = manager.run()
        summary.report(manager.options.record)
    return _outcome(manager, reason)


def _outcome(manager: Manager, reason: str) -> int:
    """Say how the run ended; its exit code."""
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


def run_demo(scenario: str, headless: bool, duration_s: float | None) -> int:
    """The simulator driven by the bundled steering CNN (else the expert), in a window or headless with a summary."""
    headless = headless or not has_display()
    metrics = Path(tempfile.mkdtemp(prefix="rover-demo-")) / "metrics.json"
    from perception.steering.bundled import bundled_model_path

    bundled = bundled_model_path()  # a checkout without it still demos with the expert
    model = str(bundled) if bundled else "expert"
    request = sim_request(
        scenario, model, metrics, headless=headless, lockstep=headless, duration_s=duration_s
    )
    print(
        f"rover demo: {scenario} scenario, "
        f"{'bundled steering CNN' if bundled else 'expert'} autopilot, "
        f"{'headless' if headless else 'window'}"
        + (f", {duration_s:g} s simulated" if duration_s else ", until the goal")
        + ("" if headless else " (Esc or close the window to stop)")
    )
    return run_stack(request)  # its summary names the metrics and the trajectory picture


def main(argv: list[str] | None = None) -> int:
    """``python -m rover.stack REQUEST_JSON``: one request's stack, as `rover drive` runs it."""
    from rover.errors import run_command

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rover.stack REQUEST_JSON", file=sys.stderr)
        return 2
    return run_command("rover", lambda: run_stack(RunRequest.from_json(args[0])))


if __name__ == "__main__":
    sys.exit(main())
