"""The one registry of every topic on the bus: name, message type, rate, endpoint, recorded.

Code names topics by these objects (``topics.CAMERA_STEREO``), never by strings. Each topic has
exactly one publisher, which binds; subscribers connect. Endpoints are derived from the topic
name and the stack's namespace, so several stacks run side by side without crossing.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass

from rover import messages as m
from rover.errors import ConfigError

STALE_PERIODS = 5.0  # the bus, the control node and its health reports judge liveness by it


@dataclass(frozen=True)
class Topic:
    """A topic: its name, message type, nominal rate, whether the recorder keeps it."""

    name: str
    msg_type: type[m.Message]
    rate_hz: float
    recorded: bool
    frames: bool = False  # carries camera frames: subscribers usually want the newest only
    sim_only: bool = False  # ground truth: only sim/ and evaluation may subscribe

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    def stale_after_s(self, rate_hz: float | None = None) -> float:
        """The one staleness rule: a topic is stale once STALE_PERIODS of its periods passed
        without a message; at its registered rate, or the rate a config sets (camera fps)."""
        return STALE_PERIODS / (rate_hz or self.rate_hz)

    @property
    def wire_name(self) -> bytes:
        return self.name.encode()


CAMERA_STEREO = Topic("camera/stereo", m.StereoImage, 30.0, recorded=True, frames=True)
TELEOP_COMMAND = Topic("teleop/command", m.TeleopCommand, 50.0, recorded=True)
PERCEPTION_STEERING = Topic("perception/steering", m.SteeringEstimate, 30.0, recorded=True)
CONTROL_COMMAND = Topic("control/command", m.ControlCommand, 50.0, recorded=True)
MOTOR_STATE = Topic("motor/state", m.MotorState, 50.0, recorded=True)
# the traversability map is for the control loop and the window; not recorded (the recorder
# stores camera, commands and state, from which the map can be recomputed)
PERCEPTION_TRAVERSABILITY = Topic(
    "perception/traversability", m.TraversabilityMap, 30.0, recorded=False
)
SIM_TRUTH = Topic("sim/truth", m.SimTruth, 30.0, recorded=True, sim_only=True)
# faults and recoveries, one topic per publishing node (a topic has one publisher); repeated
# at 1 Hz, so the rate is that of the repeats
HEALTH_CAMERA = Topic("health/camera", m.HealthEvent, 1.0, recorded=True)
HEALTH_CONTROL = Topic("health/control", m.HealthEvent, 1.0, recorded=True)
HEALTH_TELEOP = Topic("health/teleop", m.HealthEvent, 1.0, recorded=True)
HEALTH_TOPICS: tuple[Topic, ...] = (HEALTH_CAMERA, HEALTH_CONTROL, HEALTH_TELEOP)
# a remote operator's commands (console, laptop), published by the remote node on the robot;
# the control node arbitrates them with teleop/command (rover/operators.py)
TELEOP_REMOTE = Topic("teleop/remote", m.TeleopCommand, 30.0, recorded=True)
# what the remote node sends operators over its authenticated link (never on the local bus)
REMOTE_PREVIEW = Topic("remote/preview", m.StereoPreview, 15.0, recorded=False, frames=True)
REMOTE_HEALTH = Topic("remote/health", m.StackHealth, 2.0, recorded=False)
# the recorder's state for the operator's HUD (REC / PAUSED), sent twice a second and at once
# when the record key pauses or resumes it; silent when nothing records
RECORDER_STATUS = Topic("recorder/status", m.RecorderStatus, 2.0, recorded=False)

ALL_TOPICS: tuple[Topic, ...] = (
    CAMERA_STEREO,
    TELEOP_COMMAND,
    PERCEPTION_STEERING,
    CONTROL_COMMAND,
    MOTOR_STATE,
    SIM_TRUTH,
    PERCEPTION_TRAVERSABILITY,
    *HEALTH_TOPICS,
    TELEOP_REMOTE,
    RECORDER_STATUS,  # last: tcp ports follow this order, the others keep theirs
)
# on the remote node's link only (`--listen`): what an operator needs, nothing else
REMOTE_TOPICS: tuple[Topic, ...] = (
    REMOTE_PREVIEW,
    REMOTE_HEALTH,
    MOTOR_STATE,
    CONTROL_COMMAND,
    PERCEPTION_STEERING,
    PERCEPTION_TRAVERSABILITY,
)
BY_NAME: dict[str, Topic] = {t.name: t for t in ALL_TOPICS + REMOTE_TOPICS}

DEFAULT_NAMESPACE = "default"
_IPC_PATH_MAX = 100  # sockaddr_un holds 108 bytes; keep a margin


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class BusConfig:
    """Where a stack's topics live: ipc under a per-namespace folder, or tcp on one host."""

    namespace: str = DEFAULT_NAMESPACE
    transport: str = "ipc"  # "ipc" or "tcp"
    host: str = "127.0.0.1"
    base_port: int = 5550
    ipc_dir: str = ""  # default: $XDG_RUNTIME_DIR or the temp dir
    curve: bool = False  # tcp only: CURVE encryption and authentication (rover keys)
    keys_dir: str = ""  # default: rover.keys.default_keys_dir()

    @classmethod
    def from_dict(cls, raw: dict) -> BusConfig:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"[bus] unknown key(s) {sorted(unknown)}: valid keys are "
                f"{sorted(cls.__dataclass_fields__)}"
            )
        cfg = cls(**raw)
        if cfg.transport not in ("ipc", "tcp"):
            raise ConfigError(f"[bus] transport = {cfg.transport!r}: use 'ipc' or 'tcp'")
        if cfg.transport == "tcp" and not _loopback(cfg.host) and not cfg.curve:
            raise ConfigError(
                f"[bus] host = {cfg.host!r} would let other machines send motor commands "
                "unauthenticated: set [bus] curve = true (keys from `rover keys init`), or "
                "keep 127.0.0.1 and operate through `--listen` (see docs/remote.md)"
            )
        if cfg.curve and cfg.transport != "tcp":
            raise ConfigError("[bus] curve = true is for transport = 'tcp': ipc never leaves")
        if cfg.curve:
            from rover.keys import check_curve

            check_curve()
        if not cfg.namespace.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"[bus] namespace = {cfg.namespace!r}: use letters, digits, - and _")
        return cfg

    def endpoint(self, topic: Topic) -> str:
        """The ZeroMQ endpoint of `topic` in this namespace."""
        if self.transport == "tcp":
            return f"tcp://{self.host}:{self.base_port + ALL_TOPICS.index(topic)}"
        path = os.path.join(self.ipc_root(), topic.name.replace("/", "."))
        if len(path) > _IPC_PATH_MAX:
            raise ConfigError(
                f"ipc path {path!r} is too long for a unix socket: "
                "set [bus] ipc_dir to a shorter folder"
            )
        return f"ipc://{path}"

    def ipc_root(self) -> str:
        """The folder of this namespace's sockets (created if missing)."""
        root = self.ipc_path()
        os.makedirs(root, exist_ok=True)
        return root

    def remove_ipc_root(self) -> None:
        """Delete this namespace's socket folder once its stack has stopped (ipc only)."""
        if self.transport == "ipc":
            shutil.rmtree(self.ipc_path(), ignore_errors=True)

    def ipc_path(self) -> str:
        """The folder of this namespace's sockets, without creating it."""
        base = self.ipc_dir or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        return os.path.join(base, f"rover-{self.namespace}")


def motor_port_for_sim(namespace: str, create: bool = True) -> str:
    """The stable device path of the simulator's firmware emulator (a symlink to its pty);
    ``create``: make its folder too."""
    bus = BusConfig(namespace=namespace)
    return os.path.join(bus.ipc_root() if create else bus.ipc_path(), "mcu")
