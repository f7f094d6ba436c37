"""One stack per namespace: a lock the manager holds for its lifetime."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from rover.errors import RoverError
from rover.topics import BusConfig

log = logging.getLogger("rover.namespace")


class NamespaceInUse(RoverError):
    """Another stack runs in this namespace."""


class NamespaceLock:
    """One stack per namespace: an flock on ``<ipc base>/rover-<namespace>.lock``.

    The file sits beside the namespace's socket folder, not inside it, because clean-up deletes
    that folder. The kernel drops an flock when the last descriptor of it closes, so a stack
    that was SIGKILLed leaves no lock behind, only the file, whose text (the holder's pid and
    command) then tells the next stack it takes over from a dead one. The nodes inherit the
    descriptor: the namespace stays taken until the last process of a stack is gone.
    """

    def __init__(self, bus: BusConfig):
        self.bus = bus
        self.path = Path(bus.ipc_path() + ".lock")
        self.fd: int | None = None
        self.took_over_from = ""  # the dead holder's text, when there was one

    def acquire(self, what: str = "rover") -> NamespaceLock:
        """Take the lock or raise NamespaceInUse in one line; touches nothing else first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another stack"
            os.close(fd)
            raise NamespaceInUse(
                f"namespace {self.bus.namespace!r} is in use by a running stack ({holder}): "
                "stop it (Ctrl-C), or pass --namespace NAME to run beside it"
            ) from None
        self.took_over_from = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if self.took_over_from:  # its holder died without clean-up: its sockets are stale
            self.bus.remove_ipc_root()
            log.warning(
                "namespace %r: took over from a stack that died (%s)",
                self.bus.namespace,
                self.took_over_from,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {what}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Clear the holder's text (a clean exit) and unlock; idempotent."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
