"""Starts the nodes a mode needs, restarts those that die, stops them all cleanly.

The table `NODES` says which node runs when (openpilot's process_config, in miniature). Each node
is a real process (`python -m MODULE`), its stderr kept in a log file so that when it dies the
manager can say which node failed and why.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rover import priority, topics
from rover.errors import EXIT_DATA, EXIT_DEVICE, EXIT_FAILED, EXIT_USAGE
from rover.health import HealthLog
from rover.namespace import NamespaceInUse, NamespaceLock
from rover.node import MANAGER_PID_ENV
from rover.runspec import Run
from rover.topics import BusConfig

log = logging.getLogger("rover.manager")
__all__ = ["Manager", "NamespaceInUse", "NamespaceLock", "NODES", "NodeSpec", "Run"]

# Exit codes of a node that restarting cannot fix (rover.errors: ConfigError, DataError);
# a DeviceError (3) is fatal only at the first start: a device that was never there is a
# setup problem, one that vanished mid-run (USB unplug) may come back.
HEALTH_SETTLE_S = 0.3  # a fault is printed once the run has not ended this long after it
FATAL_EXIT_CODES = {EXIT_USAGE, EXIT_DATA}
DEVICE_EXIT_CODE = EXIT_DEVICE
# a node that exits 0, or by SIGINT/SIGTERM, was told to stop or has nothing more to do (a file
# camera that ended): restarting it would only repeat that, so the run ends
STOP_SIGNALS = {-signal.SIGINT, -signal.SIGTERM}


@dataclass(frozen=True)
class NodeSpec:
    """One row of the table: a node, its module, when it runs, with which arguments."""

    name: str
    module: str
    runs_when: Callable[[Run], bool]
    args: Callable[[Run], list[str]] = lambda r: []  # its own, after the common ones
    primary: bool = False  # when it exits cleanly, the whole run is over
    # a path that must exist before the node starts (the simulator's serial device)
    wait_for: Callable[[Run], str | None] = lambda r: None
    # its scheduling class (`rover.priority`): the robot's glass-to-motor path runs in real
    # time where the user may; a background node yields every core to it
    priority: Callable[[Run], str] = lambda r: priority.NORMAL


def _teleop_args(r: Run) -> list[str]:
    """Its mode (drive starts on the autopilot), window or not, a script instead of a person."""
    out = ["--mode", r.mode] + (["--headless"] if r.headless else [])
    return out + (["--script", r.teleop_script] if r.teleop_script else [])


def _control_args(r: Run) -> list[str]:
    """Lock-step: inputs come frame by frame, so the 50 Hz repeat re-sends the answer instead of
    judging its age on the wall clock (a loaded machine gives the run a quiet one gives); with
    the traversability node the guard sees frame N's map."""
    if not r.lockstep:
        return []
    if not r.traversability:
        return ["--lockstep"]
    # a map later than the simulator waits makes its frame a counted late one, never an
    # answer with an older map
    wait = ["--map-wait-ms", str(r.sim.lockstep_timeout_s * 1000)] if r.sim is not None else []
    return ["--lockstep", "--lockstep-maps", *wait]


def _remote_args(r: Run) -> list[str]:
    out = ["--listen", r.listen] if r.listen else []
    out += ["--console", r.console] if r.console else []
    out += ["--keys", r.keys] if r.keys else []
    return out + (["--recording", "--disk", r.record] if r.record else [])


def _path(r: Run) -> str:
    """On the robot, the glass-to-motor path; the simulator's runs keep ordinary processes
    (a lock-step run's figures do not depend on the clock)."""
    return priority.PATH if r.sim is None else priority.NORMAL


def _background(r: Run) -> str:
    return priority.BACKGROUND


def _steers(r: Run) -> bool:
    return r.model is not None and not r.sim_policy


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("camera", "rover.nodes.camera", lambda r: r.sim is None, priority=_path),
    NodeSpec(
        "sim",
        "rover.nodes.sim",
        lambda r: r.sim is not None,
        args=lambda r: ["--spec", r.sim.to_json()],
        primary=True,
    ),
    # the operator's keyboard window, gamepad or script; with --sim the simulator's window
    # reads the keyboard instead
    NodeSpec(
        "teleop", "rover.nodes.teleop", lambda r: r.sim is None, args=_teleop_args, priority=_path
    ),
    NodeSpec(
        "steering",
        "rover.nodes.steering",
        _steers,
        args=lambda r: ["--model", r.model],
        priority=_path,
    ),
    # the guard's maps: 15 ms of stereo matching a frame on every core, beside the 2-3 ms
    # steering path it would otherwise delay by whole time slices
    NodeSpec(
        "traversability",
        "rover.nodes.traversability",
        lambda r: r.traversability,
        priority=_background,
    ),
    NodeSpec(
        "recorder",
        "rover.nodes.recorder",
        lambda r: r.record is not None,
        args=lambda r: ["--out", r.record],
        priority=_background,  # buffers seconds of messages; a late write loses nothing
    ),
    NodeSpec("remote", "rover.nodes.remote", lambda r: bool(r.listen or r.console), _remote_args),
    NodeSpec(
        "foxglove",
        "rover.nodes.foxglove",
        lambda r: r.foxglove is not None,
        args=lambda r: ["--address", r.foxglove],
        priority=_background,  # a viewer
    ),
    NodeSpec(
        "control",
        "rover.nodes.control",
        lambda r: True,
        args=_control_args,
        priority=_path,
        wait_for=lambda r: _sim_motor_port(r) if r.sim is not None else None,
    ),
)


def _sim_motor_port(run: Run) -> str:
    return topics.motor_port_for_sim(run.namespace)


class ManagedNode:
    """A node process and its restart bookkeeping."""

    def __init__(self, spec: NodeSpec, argv: list[str], log_dir: Path, priority_class: str):
        self.spec = spec
        self.argv = argv
        self.priority = priority_class  # rover.priority's name of its class
        self.log_path = log_dir / f"{spec.name}.log"
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.last_failure = ""

    @property
    def first_start(self) -> bool:
        return self.restarts == 0

    def start(self, keep_fds: tuple[int, ...] = ()) -> None:
        self.started_at = time.monotonic()
        self.restart_at = None
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stderr=err,
                stdin=subprocess.DEVNULL,
                pass_fds=keep_fds,
                env=self._env(),
            )

    def _env(self) -> dict[str, str]:
        """The manager's environment and what `rover.node` reads: whose node it is, its
        priority."""
        env = {**os.environ, MANAGER_PID_ENV: str(os.getpid())}
        env[priority.PRIORITY_ENV] = self.priority
        return env

    def last_line(self) -> str:
        """The last line the node wrote to its log."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1].strip() if lines else ""

    def finish_reason(self, code: int) -> str:
        """Why a node that exited 0 (or on SIGINT/SIGTERM) stopped: its own last line when it
        said (``camera: end of file ...``), else that it finished."""
        last = self.last_line()
        name = self.spec.name
        if last.startswith(f"{name}: ") and not last.startswith(f"{name}: error: "):
            return last
        if code < 0:
            return f"{name} stopped by {signal.Signals(-code).name}"
        return f"{name} finished"

    def failure_reason(self, code: int) -> str:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        last = self.last_line()
        prefix = f"{self.spec.name}: error: "
        if last.startswith(prefix):  # a node's own one-line RoverError
            return f"{self.spec.name}: {last[len(prefix) :]} (node {how})"
        return f"node {self.spec.name} {how}" + (f": {last}" if last else "")


class Manager:
    """Runs the nodes for `options`; `run()` blocks until done, interrupted, or a fatal error."""

    def __init__(
        self,
        options: Run,
        nodes: tuple[NodeSpec, ...] = NODES,
        stop_timeout_s: float = 1.5,
        max_backoff_s: float = 5.0,
        device_timeout_s: float = 30.0,
        lock: NamespaceLock | None = None,
    ):
        self.options = options
        self.bus = options.bus
        # first, before any socket, folder or log: one stack per namespace
        self.lock = lock or NamespaceLock(self.bus).acquire(f"rover {options.mode}")
        self.health = HealthLog()
        self.printed: list[str] = []  # the health lines shown to the user, in order
        self._health_subs: list = []
        self._held_health: list = []  # (monotonic s, event) until HEALTH_SETTLE_S passed
        self._sim_linked = False  # the simulator's motor controller link appeared
        self.device_timeout_s = device_timeout_s
        self._started_at = time.monotonic()
        self.stop_timeout_s = stop_timeout_s
        self.max_backoff_s = max_backoff_s
        self.log_dir = Path(tempfile.mkdtemp(prefix=log_folder_prefix(options.namespace)))
        self.nodes = [
            ManagedNode(s, self._argv(s), self.log_dir, s.priority(options))
            for s in nodes
            if s.runs_when(options)
        ]
        self.failures: list[str] = []
        self.kept_logs: Path | None = None
        self.clean = True  # False when the run ended on a failure
        self.exit_code = EXIT_FAILED  # of a failed run: the failing node's (rover.errors)
        self._stopping = False

    @classmethod
    def holding(cls, bus: BusConfig, what: str, describe: Callable[[], Run], **kwargs) -> Manager:
        """Take the namespace first, before anything touches it (its sockets, the simulator's
        port, a session folder), then describe the run and build its manager; the lock goes
        again when either fails."""
        lock = NamespaceLock(bus).acquire(what)
        try:
            return cls(describe(), lock=lock, **kwargs)
        except BaseException:
            lock.release()
            raise

    def _argv(self, spec: NodeSpec) -> list[str]:
        o = self.options
        argv = [sys.executable, "-m", spec.module, "--namespace", o.namespace]
        if o.config:
            argv += ["--config", o.config]
        for item in o.overrides:
            argv += ["--set", item]
        return argv + spec.args(o)

    def start(self) -> None:
        """Start every node, except those still waiting for their device (see poll)."""
        from rover import bus

        self._health_subs = [
            bus.Subscriber(t, self.bus, newest=False, hwm=100) for t in topics.HEALTH_TOPICS
        ]
        now = time.monotonic()
        for node in self.nodes:
            if node.spec.wait_for(self.options):
                node.restart_at = now  # poll() starts it once the path exists
                continue
            self._start_node(node)
        self._started_at = now

    def _start_node(self, node: ManagedNode) -> None:
        keep = (self.lock.fd,) if self.lock.fd is not None else ()
        node.start(keep)
        what = "restarted" if node.restarts else "started"
        log.info("%s %s (pid %d)", what, node.spec.name, node.proc.pid)

    def print_health(self, final: bool = False) -> None:
        """Print each fault and recovery the nodes report, once, a settle time after it came
        (``final``: all that are left); none once the run is ending by itself (a finished
        simulator takes its motor controller with it: "motor controller lost" is no fault)."""
        now = time.monotonic()
        for sub in self._health_subs:
            self._held_health += [(now, event) for event in sub.drain()]
        if self._stopping or self._sim_ending():
            self._held_health.clear()  # what the shutdown itself causes is no news
        due = [e for t, e in self._held_health if final or now - t >= HEALTH_SETTLE_S]
        self._held_health = self._held_health[len(due) :]
        for event in due:
            if self.health.take(event):
                self.printed.append(event.text)
                print(f"rover: {event.text}", file=sys.stderr, flush=True)

    def _sim_ending(self) -> bool:
        """The simulator has exited, or is exiting: its motor controller's link is gone."""
        if self.options.sim is None:
            return False
        sims = [n for n in self.nodes if n.spec.primary and n.proc is not None]
        linked = bool(sims) and os.path.exists(_sim_motor_port(self.options))
        self._sim_linked = self._sim_linked or linked  # gone after it was there: closing
        return any(n.proc.poll() is not None for n in sims) or (self._sim_linked and not linked)

    def poll(self) -> str | None:
        """Check every node once; restart the dead. Returns why the run ended, else None."""
        now = time.monotonic()
        for node in self.nodes:
            if node.restart_at is not None:
                needed = node.spec.wait_for(self.options)
                if needed and not os.path.exists(needed):
                    if node.proc is None and now - self._started_at > self.device_timeout_s:
                        self.clean = False
                        self.exit_code = EXIT_DEVICE
                        return f"node {node.spec.name} never started: {needed} did not appear"
                    continue
                if now >= node.restart_at and not self._stopping:
                    self._start_node(node)
                continue
            code = node.proc.poll()
            if code is None:
                continue
            if code == 0 or code in STOP_SIGNALS or self._stopping:
                return node.finish_reason(code)  # told to stop, or done: never restarted
            reason = node.failure_reason(code)
            self.failures.append(reason)
            if code in FATAL_EXIT_CODES or (code == DEVICE_EXIT_CODE and node.first_start):
                self.clean = False
                self.exit_code = code  # the same code as when the CLI catches it up front
                return reason
            log.warning("%s; restarting", reason)
            if now - node.started_at > 10 * self.max_backoff_s:
                node.restarts = 0  # it ran fine for a long time: start the backoff afresh
            node.restart_at = now + min(self.max_backoff_s, 0.2 * 2**node.restarts)
            node.restarts += 1
        return None

    def run(self, timeout_s: float | None = None) -> str:
        """Start, supervise until a node finishes, a fatal error, SIGINT/SIGTERM or timeout.

        Ctrl-C in a terminal sends SIGINT to the whole process group: the nodes stop by
        themselves and this loop, told too, restarts none of them."""
        handlers = {
            signum: signal.signal(signum, lambda *_: self._request_stop())
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: terminal closed
        }
        reason = "stopped"
        try:
            self.start()
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while not self._stopping:
                ended = self.poll()
                self.print_health()
                if ended:
                    reason = ended
                    break
                if deadline and time.monotonic() > deadline:
                    reason = "timeout"
                    break
                time.sleep(0.05)  # supervision tick, not synchronisation
            if self._stopping and reason == "stopped":
                reason = "interrupted"
        finally:
            self.stop()
            self.print_health(final=True)
            self.clean_up()  # before the handlers go: a second Ctrl-C must not skip it
            for signum, previous in handlers.items():
                signal.signal(signum, previous)
        return reason

    def clean_up(self) -> None:
        """After the run: remove its bus sockets, and its node logs unless a node failed
        (then they stay, and `kept_logs` says where); then free the namespace."""
        for sub in self._health_subs:
            sub.close()
        self._health_subs = []
        self.bus.remove_ipc_root()
        if self.failures:
            self.kept_logs = self.log_dir
            (self.log_dir / KEPT_MARKER).write_text("\n".join(self.failures) + "\n")
            log.info("node logs kept in %s", self.log_dir)
        else:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        prune_kept_logs(self.log_dir.parent)
        self.lock.release()

    def _request_stop(self) -> None:
        self._stopping = True

    def stop(self) -> None:
        """SIGINT every node, then SIGKILL those still running after the timeout."""
        running = [n for n in self.nodes if n.proc and n.proc.poll() is None]
        for node in running:
            node.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + self.stop_timeout_s
        for node in running:
            proc = node.proc
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "node %s (pid %d) ignored SIGINT for %.1f s: SIGKILL",
                    node.spec.name,
                    proc.pid,
                    self.stop_timeout_s,
                )
                proc.kill()
                proc.wait()

    def pids(self) -> dict[str, int]:
        return {n.spec.name: n.proc.pid for n in self.nodes if n.proc}

    def running(self, name: str) -> bool:
        """True when node `name` has a live process."""
        return any(
            n.spec.name == name and n.proc is not None and n.proc.poll() is None for n in self.nodes
        )


KEEP_LOG_FOLDERS = 10  # of failed runs; older ones go once they are a while old
KEEP_LOG_MIN_AGE_S = 600.0  # never touch a folder a run (or a test) may still be reading
KEPT_MARKER = "FAILED"  # in a folder kept for the user: the failures its run printed


def log_folder_prefix(namespace: str) -> str:
    """``rover-NS-logs-PID-``: the manager's pid in the name tells a later run whether the
    folder's run is still going (see prune_kept_logs)."""
    return f"rover-{namespace}-logs-{os.getpid()}-"


def prune_kept_logs(root: Path, keep: int = KEEP_LOG_FOLDERS) -> list[Path]:
    """Tidy the temp folder of node logs; returns what went.

    A run that was killed (SIGKILL, or its machine's session ended) never cleaned up after
    itself and nobody was told where its logs are: its folder goes as soon as its manager is
    gone. Folders kept for a failure (KEPT_MARKER) stay, the newest ``keep`` of them, and older
    ones once they are KEEP_LOG_MIN_AGE_S old; so do folders of older versions, unnamed by pid.
    """
    folders = sorted(root.glob("rover-*-logs-*"), key=_mtime, reverse=True)
    now, removed, kept = time.time(), [], 0
    for folder in folders:
        owner = _log_folder_owner(folder)
        if owner is not None and _pid_running(owner):
            continue  # a running stack's (or a test's, in this process)
        killed = owner is not None and not (folder / KEPT_MARKER).exists()
        if not killed:
            kept += 1
            if kept <= keep or now - _mtime(folder) <= KEEP_LOG_MIN_AGE_S:
                continue
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _log_folder_owner(folder: Path) -> int | None:
    """The pid in ``rover-NS-logs-PID-xxxx``; None for a folder without one."""
    pid = folder.name.rpartition("-logs-")[2].partition("-")[0]
    return int(pid) if pid.isdigit() else None


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:  # a zombie (exited, not yet reaped) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc: kill(0) said it exists


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
