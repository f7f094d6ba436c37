"""User-facing errors: each names the problem and the fix in one line.

The CLI prints ``rover: error: <message>`` and exits non-zero for any RoverError, with no
traceback; everything else is a bug and keeps its traceback.
"""


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
