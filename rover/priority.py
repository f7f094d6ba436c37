"""Process priorities: the glass-to-motor path ahead of everything else on the computer.

Each row of the manager's table has a class (`NodeSpec.priority`), which the manager hands to
the node's process in ``ROVER_PRIORITY`` and the node takes before its main starts, for every
thread it has by then (Linux priorities are per thread: the ones its imports started, such as
OpenBLAS's) and so for those main starts (ZeroMQ's I/O thread, OpenCV's and torch's pools):

- ``path``: the camera, steering, control and operator-input nodes of a robot stack. Where the
  user may (root with CAP_SYS_NICE, or an ``rtprio`` limit: `REALTIME_HOWTO`), they run under
  ``SCHED_FIFO`` at `REALTIME_PRIORITY`, as openpilot runs its camera, model and control
  processes and ROS 2's real-time guide runs executors: a woken path node takes a core at once,
  whatever else the computer runs (other sessions' CPU share included). Elsewhere they stay
  ordinary processes, and the background class below still yields to them. The threads a
  node starts inherit it (``SCHED_RESET_ON_FORK`` would reset those too, ZeroMQ's I/O thread
  among them); path nodes start no processes. ``ROVER_REALTIME=0`` turns it off.
- ``background``: the traversability, recorder and viewer nodes: `BACKGROUND_NICE` (Linux
  weight 110 of a nice-0 process's 1024). They get every cycle the path leaves, and a stereo
  match or an MCAP write never holds a woken path node off a core for a time slice. Lowering
  one's own priority needs no privilege.
- ``normal`` (no variable): as started.

The path nodes wait on sockets and do 0.1-3 ms of work a frame, so a real-time class cannot
starve the computer; the kernel's real-time throttling (5 % of every second kept for the rest)
stays as the backstop.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator

PRIORITY_ENV = "ROVER_PRIORITY"
REALTIME_ENV = "ROVER_REALTIME"  # "0": path nodes stay ordinary processes
PATH, NORMAL, BACKGROUND = "path", "normal", "background"
REALTIME_PRIORITY = 10  # of 1-99: above the kernel's defaults for user threads, below its own
BACKGROUND_NICE = 10
REALTIME = f"real-time (SCHED_FIFO {REALTIME_PRIORITY})"
REALTIME_HOWTO = (
    "to let your user run them in real time, add the line '@dialout - rtprio 20' to "
    "/etc/security/limits.d/rover.conf and log in again"
)


def realtime_allowed() -> tuple[bool, str]:
    """Whether this process may take the path's real-time class, and why not."""
    if os.environ.get(REALTIME_ENV) == "0":
        return False, f"turned off ({REALTIME_ENV}=0)"
    if not hasattr(os, "SCHED_FIFO"):
        return False, "this OS has no SCHED_FIFO"
    if _has_cap_sys_nice():
        return True, ""
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    if soft != resource.RLIM_INFINITY and soft < REALTIME_PRIORITY:
        return False, f"not permitted for this user: {REALTIME_HOWTO}"
    return True, ""


def _has_cap_sys_nice() -> bool:
    """CAP_SYS_NICE in this process's effective set (root, unless a container dropped it)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 23 & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def take(kind: str | None = None) -> str:
    """Take this process's class (default: what the manager set in ``ROVER_PRIORITY``) and say
    what it got, in words for the node's log."""
    kind = kind if kind is not None else os.environ.get(PRIORITY_ENV, NORMAL)
    if kind == BACKGROUND:
        try:
            nice = os.getpriority(os.PRIO_PROCESS, 0) + BACKGROUND_NICE
            for tid in _threads():
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except (OSError, AttributeError):  # no priorities here (Windows): as it was
            return "normal (could not lower the priority)"
        return f"background (nice {nice})"
    if kind != PATH:
        return NORMAL
    allowed, why = realtime_allowed()
    if not allowed:
        return f"normal ({why})"
    try:
        _realtime_every_thread()
    except OSError as exc:  # root in a container without CAP_SYS_NICE
        return f"normal (real-time refused: {exc.strerror}; {REALTIME_HOWTO})"
    return REALTIME


@contextlib.contextmanager
def path_class_while() -> Iterator[str]:
    """This process in the path's real-time class for a while, then back to ordinary: a
    bench's listener, whose own late wake-ups would move time between the stages it splits."""
    allowed, why = realtime_allowed()
    if not allowed:
        yield f"normal ({why})"
        return
    try:
        _realtime_every_thread()
        said = REALTIME
    except OSError as exc:
        said = f"normal (real-time refused: {exc.strerror})"
    try:
        yield said
    finally:
        for tid in _threads():  # the threads started meanwhile too
            with contextlib.suppress(OSError):
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


def _realtime_every_thread() -> None:
    for tid in _threads():
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))


def _threads() -> list[int]:
    """This process's thread ids (Linux), else 0: this thread."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return [0]
