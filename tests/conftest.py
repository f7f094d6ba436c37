"""Fixtures every test package may use."""

import argparse
import os
import shutil

import pytest

# Headless everywhere: pygame in this process and in every node it starts draws off-screen.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

from rover.bench.xkeys import xvfb as start_xvfb  # noqa: E402


@pytest.fixture
def require_tools():
    """`require_tools("Xvfb", "xdotool")`: skip where a system tool is missing, but fail in CI
    (CI=true), where `make test` installs them (`make sysdeps`) and a skip would hide a gap."""

    def _require(*names: str) -> None:
        missing = [n for n in names if shutil.which(n) is None]
        if not missing:
            return
        message = f"missing system tool(s) {', '.join(missing)}: run `make sysdeps` (Debian, root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)

    return _require


@pytest.fixture
def xvfb(require_tools):
    """A private X server (a real Xvfb); its display name, ":N"."""
    require_tools("Xvfb", "xdotool")
    with start_xvfb() as display:
        yield display


@pytest.fixture(scope="session")
def cli_args():
    """`cli_args(module, argv)`: the namespace a command module's own parser gives for argv."""

    def _parse(module, argv: list[str]) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        return parser.parse_args(argv)

    return _parse
