"""The `rover` command: one entry point for driving, simulating, benchmarking and tools."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
from pathlib import Path

from rover.errors import EXIT_USAGE, RoverError, exit_code_table, run_command

# `rover bench NAME` -> module with add_arguments(parser) and run(args) -> dict
BENCHES = {
    "bus": "rover.bench.bus",
    "serial": "rover.bench.serial",
    "camera": "rover.bench.camera",
    "faults": "rover.bench.faults",
    "sim": "rover.bench.sim",
    "infer": "rover.bench.infer",
    "train": "rover.bench.train",
    "traversability": "rover.bench.traversability",
    "replay": "rover.bench.replay",
    "cluster": "rover.bench.cluster",
    "latency": "rover.bench.latency",
    "console": "rover.bench.console",
}
# `rover COMMAND KIND ...` -> module with add_arguments(parser) and run(args) -> int
KINDS = {
    "train": {
        "steering": "perception.train_steering",
        "traversability": "perception.traversability.train",
    },
    "eval": {
        "steering": "perception.steering.evaluate",
        "traversability": "perception.trav_eval",
        "recordings": "perception.steering.offline_eval",
    },
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps a description's paragraphs and line breaks (module docstrings) and shows each
    option's default where it has one (argparse's ArgumentDefaultsHelpFormatter would also
    print "(default: None)" and "(default: False)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or action.nargs == 0
        ):
            return text
        return f"{text} (default: %(default)s)"


def with_help_format(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """HelpFormatter on a parser and every subcommand parser below it."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                with_help_format(sub)
    return parser


def module_summary(module: str) -> str:
    """The first line of a module's docstring, read without importing it (torch stays
    unloaded for `--help`), less a leading "`rover x`: " and a trailing ": ``rover x``."."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return "(not in this checkout)"
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text()))
    line = (doc or module).strip().splitlines()[0]
    line = re.sub(r"^`[^`]*`:\s*", "", line)
    line = re.sub(r":\s*``[^`]*``\.?$", "", line).rstrip(".")
    return line[0].lower() + line[1:] if line[1:2].islower() else line


def scenario_names() -> list[str]:
    """The bundled scenarios (sim/scenarios/*.toml), found without importing the simulator."""
    spec = importlib.util.find_spec("sim")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "scenarios"
    return sorted(p.stem for p in folder.glob("*.toml"))


def _add_stack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="robot TOML file (default: built-in defaults)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set motor.port=/dev/ttyACM0",
    )
    p.add_argument(
        "--namespace",
        default="default",
        help="bus namespace: stacks with different namespaces never cross",
    )
    p.add_argument(
        "--sim",
        metavar="SCENARIO",
        help=f"run against the simulator: {', '.join(scenario_names())}, or a .toml path; "
        "a list (forest,open,corridor) cycles families when --duration outlasts a world",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="simulator world seed (default: the scenario's)"
    )
    p.add_argument("--headless", action="store_true", help="no window, even with a display")
    p.add_argument(
        "--lockstep",
        action="store_true",
        help="simulator steps only when the stack answered the frame (deterministic)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this much simulated time (default: at the goal, or Ctrl-C)",
    )
    p.add_argument(
        "--metrics-out",
        metavar="PATH",
        help="write the run's metrics JSON here, and its trajectory picture beside it (.png)",
    )
    p.add_argument(
        "--snapshot", metavar="PATH", help="save a PNG of the window at the end (headless too)"
    )
    p.add_argument(
        "--safety-driver",
        type=float,
        default=0.0,
        metavar="S",
        help="after a collision the expert drives for S seconds from the put-back pose, then "
        "hands back: a safety driver's takeover (0: put back only)",
    )
    p.add_argument(
        "--traversability",
        action="store_true",
        help="run the traversability node: the control node then slows and stops "
        "for obstacles on the arc it drives ([guard] in the config)",
    )
    p.add_argument(
        "--mcu",
        choices=("emulator", "avr"),
        default="emulator",
        help="the simulator's motor controller: the Python emulator (default) or the compiled "
        "firmware in an AVR simulator (simavr; built by `make firmware` when stale)",
    )
    faults = p.add_argument_group("fault injection (simulator only)")
    faults.add_argument(
        "--camera-latency-ms",
        type=float,
        default=None,
        help="delay every camera frame by this much (default in real time: the robot's "
        "capture-to-publish time that `rover bench latency` last measured here; 0: none)",
        metavar="MS",
    )
    p.set_defaults(camera_latency_measured=False)  # True: the default filled in, not a fault
    faults.add_argument(
        "--frame-drop",
        type=float,
        default=0.0,
        metavar="P",
        help="drop each camera frame with probability P",
    )
    faults.add_argument(
        "--serial-loss",
        type=float,
        default=0.0,
        metavar="P",
        help="garble serial data reaching the motor controller with probability P",
    )
    robot = p.add_argument_group("on the robot (without --sim)")
    robot.add_argument(
        "--unattended",
        action="store_true",
        help="arm the motors although no operator input that can stop the robot (gamepad, "
        "keyboard window) is connected; without it the control node will not arm",
    )
    robot.add_argument(
        "--teleop-script",
        metavar="JSON",
        help="replay timed operator inputs from this file instead of a keyboard or gamepad "
        "(tests, headless rigs): a list of {t_s, steering, throttle, deadman, action}",
    )
    remote = p.add_argument_group("remote operation (docs/remote.md)")
    remote.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="let authorized operators (rover keys) connect over CURVE: `rover teleop "
        "--connect ROBOT:PORT` on a laptop (PORT and PORT+1)",
    )
    remote.add_argument(
        "--console",
        nargs="?",
        const="127.0.0.1:8765",
        metavar="[HOST:]PORT",
        help="serve the web console (default 127.0.0.1:8765; HTTPS off loopback) and print "
        "its URL with the access token",
    )
    remote.add_argument(
        "--foxglove",
        nargs="?",
        const="127.0.0.1:8766",
        metavar="[HOST:]PORT",
        help="Foxglove live WebSocket server (default 127.0.0.1:8766)",
    )
    remote.add_argument("--keys", metavar="DIR", help="key folder (default: see rover keys)")
    p.add_argument(
        "--record",
        nargs="?",
        const="recordings",
        metavar="DIR",
        help="record a session to MCAP under DIR (default: recordings/), from the start; "
        "Tab in the window (gamepad Start) pauses and resumes it",
    )
    demo = p.add_argument_group("demonstrations")
    demo.add_argument(
        "--perturb",
        metavar="RATE,SIZE",
        help="add smooth steering perturbations for the driver to correct (DART): RATE spans "
        "a second, SIZE peak steering, e.g. 0.3,0.5; recorded labels stay the driver's own "
        "([perturb] in the config for the rest)",
    )
    demo.add_argument(
        "--randomise-materials",
        type=float,
        nargs="?",
        const=0.6,
        default=0.0,
        metavar="P",
        help="simulator: repaint this share of the worlds with other training materials "
        "(0.6 when given alone)",
    )
    demo.add_argument(
        "--takeover",
        nargs="?",
        const="expert",
        metavar="expert[,CLEARANCE_M[,SECONDS]]",
        help="simulator, with --model M: the expert watches the model drive and takes the "
        "wheel (teleop, deadman held) for SECONDS (default 1) when its planned clearance drops "
        "below CLEARANCE_M (default 0.35) or after a collision, then hands back; with "
        "--record the spans are take-overs, training data (HG-DAgger; docs/steering.md)",
    )


def _add_connect_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--connect", metavar="ROBOT:PORT", help=what)
    p.add_argument(
        "--robot-key",
        metavar="KEY",
        help="the robot's public key (40 characters or its robot.key; default: the key "
        "folder's robot.key)",
    )
    if not any(a.dest == "keys" for a in p._actions):
        p.add_argument("--keys", metavar="DIR", help="key folder (default: see rover keys)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rover", description=__doc__, epilog=exit_code_table())
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "drive", "drive autonomously (on the robot, or --sim SCENARIO)")
    _add_stack_args(p)
    p.add_argument(
        "--model",
        default=None,
        help="steering model file, or in the simulator expert/straight/random "
        "(default: expert with --sim; required on the robot)",
    )
    p.set_defaults(func=_cmd_stack, mode="drive", connect=None)

    p = _command(
        sub, "teleop", "drive by hand (gamepad, or the keyboard in a window; Ctrl-C stops)"
    )
    _add_stack_args(p)
    _add_connect_args(p, "drive a robot from this laptop: its live view, your keys/gamepad")
    p.set_defaults(func=_cmd_stack, mode="teleop", model=None)

    p = _command(sub, "demo", "the simulator driven by the bundled steering CNN")
    p.add_argument("--headless", action="store_true", help="no window, even with a display")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="simulated seconds (default: until the goal or the window closes)",
    )
    p.add_argument(
        "--sim",
        default="forest",
        metavar="SCENARIO",
        help=f"the scenario: {', '.join(scenario_names())}, or a .toml path",
    )
    p.set_defaults(func=_cmd_demo)

    p = _command(sub, "topics", "live topics with rate, bandwidth and drops")
    p.add_argument("--namespace", default="default", help="the stack's bus namespace")
    _add_connect_args(p, "list a robot's topics from this laptop (its --listen link)")
    p.add_argument("--seconds", type=float, default=3.0, help="how long to listen")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(func=_cmd_topics)

    p = sub.add_parser(
        "train",
        add_help=False,
        help="train a model: rover train steering|traversability REC... --out M",
    )
    p.set_defaults(func=_cmd_kind, kinds=KINDS["train"], prog="rover train")

    p = sub.add_parser(
        "eval",
        add_help=False,
        help="closed-loop evaluation: rover eval --model M --suite DIR "
        "(or rover eval traversability ...; rover eval recordings --model M SESSION...)",
    )
    p.set_defaults(func=_cmd_kind, kinds=KINDS["eval"], prog="rover eval", default="steering")

    p = sub.add_parser(
        "export", add_help=False, help="export a steering model to ONNX/TorchScript (for TensorRT)"
    )
    p.set_defaults(func=_cmd_delegate, module="perception.export", entry="run", prog="rover export")

    p = sub.add_parser(
        "recordings",
        add_help=False,
        help="list, inspect, verify, recover, trim and export recordings",
    )
    p.set_defaults(
        func=_cmd_delegate, module="rover.recording.cli", entry="run", prog="rover recordings"
    )

    p = sub.add_parser(
        "replay", add_help=False, help="feed a recording through the real nodes, diff their answers"
    )
    p.set_defaults(func=_cmd_delegate, module="rover.replay.cli", entry="run", prog="rover replay")

    p = sub.add_parser(
        "calibrate", add_help=False, help="stereo calibration from checkerboard image pairs"
    )
    p.set_defaults(
        func=_cmd_delegate,
        module="drivers.calibration",
        entry="run_calibrate",
        prog="rover calibrate",
    )

    for name, module, help_text in (
        ("rig", "rover.rig", "the robot's hardware stood in for: video cameras, emulated MCU"),
        ("doctor", "rover.doctor", "check a robot (cameras, serial, firmware, disk, models)"),
    ):
        p = sub.add_parser(name, add_help=False, help=help_text)
        p.set_defaults(func=_cmd_delegate, module=module, entry="run", prog=f"rover {name}")

    p = sub.add_parser(
        "keys", add_help=False, help="CURVE keys: init, authorize/revoke operators, list"
    )
    p.set_defaults(func=_cmd_delegate, module="rover.keys", entry="run", prog="rover keys")

    p = sub.add_parser(
        "mcu",
        add_help=False,
        help="serve a motor controller on a pty: rover mcu serve --avr|--emulator [--link PATH]",
    )
    p.set_defaults(func=_cmd_delegate, module="rover.mcu", entry="run", prog="rover mcu")

    p = _command(sub, "bench", "measure this computer against the budget")
    bench_sub = p.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, module in BENCHES.items():
        bp = bench_sub.add_parser(name, add_help=False, help=module_summary(module))
        bp.set_defaults(
            func=_cmd_delegate, module=module, entry="run", prog=f"rover bench {name}", bench=True
        )
    return with_help_format(parser)


def _command(sub, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose --help starts with the same line the command list shows."""
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")


def kinds_help(prog: str, kinds: dict[str, str], default: str | None) -> str:
    """`rover train --help`: the kinds, each with its module's own summary."""
    choice = f"{{{','.join(kinds)}}}"
    lines = [f"usage: {prog} {f'[{choice}]' if default else choice} [OPTIONS]", "", "kinds:"]
    for kind, module in kinds.items():
        mark = " (the default)" if kind == default else ""
        lines.append(f"  {kind:<16}{module_summary(module)}{mark}")
    lines.append(f"\n`{prog} KIND --help` shows a kind's options.")
    return "\n".join(lines)


def _cmd_kind(args: argparse.Namespace) -> int:
    """`rover train KIND ...` / `rover eval [KIND] ...`: pick the module by its first word."""
    rest, default = list(args.rest), getattr(args, "default", None)
    first = rest[0] if rest else None
    if first in args.kinds:
        kind, rest, args.prog = first, rest[1:], f"{args.prog} {first}"
    elif first is not None and not first.startswith("-"):
        print(kinds_help(args.prog, args.kinds, default), file=sys.stderr)
        print(
            f"{args.prog}: error: unknown kind {first!r}: give one of {', '.join(args.kinds)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    elif default is None:
        wants_help = first in ("-h", "--help")
        print(
            kinds_help(args.prog, args.kinds, default),
            file=sys.stdout if wants_help else sys.stderr,
        )
        if wants_help:
            return 0
        print(f"{args.prog}: error: give a kind: {', '.join(args.kinds)}", file=sys.stderr)
        return EXIT_USAGE
    else:
        kind = default  # `rover eval --model M ...`: the usage the README shows
        others = [k for k in args.kinds if k != kind]
        args.epilog = f"other kinds: {', '.join(f'{args.prog} {k} --help' for k in others)}"
    args.module, args.entry, args.rest = args.kinds[kind], "run", rest
    return _cmd_delegate(args)


def _cmd_delegate(args: argparse.Namespace) -> int:
    """Commands whose module (and heavy imports) load only when that command runs."""
    try:
        mod = importlib.import_module(args.module)
    except ModuleNotFoundError as exc:
        if exc.name != args.module:
            raise  # a missing dependency inside it: a bug or a broken install, keep the trace
        raise RoverError(
            f"`{args.prog}` is not in this checkout ({args.module}): update it"
        ) from None
    parser = argparse.ArgumentParser(
        prog=args.prog, description=mod.__doc__, epilog=getattr(args, "epilog", None)
    )
    mod.add_arguments(parser)
    sub_args = with_help_format(parser).parse_args(args.rest)
    result = getattr(mod, args.entry)(sub_args)
    if getattr(args, "bench", False):
        print(json.dumps(result))
        return 0
    return int(result or 0)


def _cmd_stack(args: argparse.Namespace) -> int:
    if args.connect:
        from rover.nodes.remote_teleop import run_remote_teleop

        return run_remote_teleop(args)
    from rover.runspec import request_from_args
    from rover.stack import run_stack

    if args.camera_latency_ms is None:  # a real-time simulator sees the robot's camera delay
        from rover.bench.latency import measured_camera_latency_ms

        real_time = args.sim and not args.lockstep  # lock-step time does not model it
        args.camera_latency_ms = measured_camera_latency_ms() if real_time else 0.0
        args.camera_latency_measured = True  # the robot's own delay, not a fault asked for

    return run_stack(request_from_args(args))


def _cmd_demo(args: argparse.Namespace) -> int:
    from rover.stack import run_demo

    return run_demo(args.sim, args.headless, args.duration)


def _cmd_topics(args: argparse.Namespace) -> int:
    from rover.introspect import run_topics

    return run_topics(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # delegated commands (bench, calibrate) parse their own options, loaded on demand
    args, rest = parser.parse_known_args(argv)
    if args.func in (_cmd_delegate, _cmd_kind):
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    try:
        return run_command("rover", lambda: args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
