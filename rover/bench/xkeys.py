"""A real X server (Xvfb) and real key events (xdotool) into the teleop window.

For `rover bench latency --keys` and the rig's end-to-end tests: the keyboard path is timed
and tested as a person uses it, key events through the X server into the pygame window.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

from rover.errors import ConfigError

WINDOW_TITLE = "rover teleop"


def require(*tools: str) -> None:
    """ConfigError naming the system tools that are missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not found: install them (Debian: apt-get install xvfb "
            "xdotool, or `make sysdeps`)"
        )


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    """A private Xvfb; yields its DISPLAY (":N"), stops it afterwards."""
    require("Xvfb", "xdotool")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            number = ready.readline().strip()  # Xvfb writes it once it accepts clients
        if not number:
            raise RuntimeError(f"Xvfb did not start (exit code {proc.poll()})")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Keyboard:
    """xdotool key events on one display, into the teleop window (focused first).

    Key events go through one long-running ``xdotool -`` (it reads commands from stdin), each
    followed by a query whose answer says the event has been sent: no process start per key.
    """

    def __init__(self, display: str):
        self.env = {**os.environ, "DISPLAY": display}
        self.window = ""
        self._script: subprocess.Popen | None = None

    def _key(self, command: str) -> None:
        if self._script is None or self._script.poll() is not None:
            self._script = subprocess.Popen(
                ["xdotool", "-"],
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        self._script.stdin.write(f"{command}\ngetmouselocation\n")
        self._script.stdin.flush()
        if not self._script.stdout.readline():
            raise RuntimeError(f"xdotool stopped while sending {command!r}")

    def close(self) -> None:
        """End the xdotool process (idempotent)."""
        if self._script is not None:
            self._script.stdin.close()
            self._script.wait(5)
            self._script = None

    def _run(self, *argv: str, timeout_s: float = 10.0) -> str:
        done = subprocess.run(
            ["xdotool", *argv], env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        if done.returncode != 0:
            raise RuntimeError(f"xdotool {' '.join(argv)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def focus(self, title: str = WINDOW_TITLE, timeout_s: float = 60.0) -> str:
        """Wait for the window named `title`, give it the keyboard focus; returns its id."""
        deadline = time.monotonic() + timeout_s
        # `search --name` misses SDL's windows here; list them by class and match the name
        while not self._find(title):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no window named {title!r} appeared")
            time.sleep(0.1)  # polling for another process's window
        self._run("windowfocus", "--sync", self.window)
        return self.window

    def _find(self, title: str) -> str:
        found = subprocess.run(
            ["xdotool", "search", "--class", "."], env=self.env, capture_output=True, text=True
        )
        for window in found.stdout.split():
            named = subprocess.run(
                ["xdotool", "getwindowname", window], env=self.env, capture_output=True, text=True
            )
            name = named.stdout.strip()
            if name == title or name.startswith(f"{title}: "):  # ": REC" while recording
                self.window = window
                return window
        return ""

    def title(self) -> str:
        """The focused window's title now (the teleop window's says REC or PAUSED)."""
        return self._run("getwindowname", self.window)

    def down(self, key: str) -> None:
        """Press `key` and hold it (an X keysym name: Up, Left, space, r, ...)."""
        self._key(f"keydown --delay 0 {key}")

    def up(self, key: str) -> None:
        """Release `key`."""
        self._key(f"keyup --delay 0 {key}")

    def tap(self, key: str) -> None:
        """Press and release `key`."""
        self._key(f"key --delay 0 {key}")
