"""User-facing errors: each names the problem and the fix in one line; and the exit codes.

The CLI prints ``rover: error: <message>`` and exits with the error's code for any RoverError,
with no traceback; everything else is a bug and keeps its traceback. The same kind of problem
exits with the same code wherever it is caught: up front in the CLI, or in a node (the manager
passes a node's code on), see ``EXIT_CODES``.
"""

import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and its answer is "no": a node crashed, a regression, ...
EXIT_USAGE = 2  # a bad option, argument or config value (argparse uses 2 as well)
EXIT_DEVICE = 3  # a device (serial port, camera, display) is missing, busy or unreadable
EXIT_DATA = 4  # a recording, calibration or model file is missing, corrupt or foreign
EXIT_LINK = 5  # a remote link cannot be made: nothing listening, or a refused key
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

# The one table of exit codes: `rover --help` prints it, docs/exit-codes.md explains it.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done: the run ended as asked (the goal, --duration, Esc, Ctrl-C on a stack)",
    EXIT_FAILED: "the command ran but failed: a node crashed, a regression, a damaged recording",
    EXIT_USAGE: "bad usage: an unknown option or kind, a bad value, a bad config file",
    EXIT_DEVICE: "a device is missing or busy: serial port, camera, display",
    EXIT_DATA: "a file is missing, empty, corrupt or foreign: recording, model, calibration",
    EXIT_LINK: "a remote link cannot be made: nothing listening, or a key the robot refuses",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (train, eval, bench, recordings: nothing written)",
}


def exit_code_table() -> str:
    """The exit codes as the lines of a help epilog."""
    return "exit codes:\n" + "\n".join(f"  {code:<4} {what}" for code, what in EXIT_CODES.items())


class RoverError(Exception):
    """A problem the user can fix; the message says what and how."""

    exit_code = EXIT_USAGE


class ConfigError(RoverError):
    """A bad value or file in the robot configuration."""


class DeviceError(RoverError):
    """A device (serial port, camera) is missing, busy or unreadable."""

    exit_code = EXIT_DEVICE


class DataError(RoverError):
    """A recording, calibration or model file is missing, corrupt or foreign."""

    exit_code = EXIT_DATA


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a command line's body: a RoverError becomes one line on stderr (``prog: error:
    ...``) and its exit code, never a traceback."""
    try:
        return command()
    except RoverError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code


class LinkError(RoverError):
    """A remote link that cannot be made: nothing listening, or a key the robot refuses."""

    exit_code = EXIT_LINK
