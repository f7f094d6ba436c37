"""User-facing errors: each names the problem and the fix in one line.

The CLI prints ``rover: error: <message>`` and exits non-zero for any RoverError, with no
traceback; everything else is a bug and keeps its traceback.
"""

import sys
from collections.abc import Callable


class RoverError(Exception):
    """A problem the user can fix; the message says what and how."""

    exit_code = 2


class ConfigError(RoverError):
    """A bad value or file in the robot configuration."""


class DeviceError(RoverError):
    """A device (serial port, camera) is missing, busy or unreadable."""

    exit_code = 3


class DataError(RoverError):
    """A recording, calibration or model file is missing, corrupt or foreign."""

    exit_code = 4


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

    exit_code = 5
