import uuid

import pytest

from rover.topics import BusConfig


@pytest.fixture
def bus_cfg() -> BusConfig:
    """A private namespace, so tests running side by side never cross; removed afterwards."""
    cfg = BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    yield cfg
    cfg.remove_ipc_root()


@pytest.fixture(scope="session")
def rig_env(tmp_path_factory) -> dict:
    """Environment for `rover rig` and the stacks run on it: one cache for the whole session,
    so the rig's videos are rendered once (small and short), and headless SDL."""
    from tests.rover.rig_helpers import session_env

    return session_env(tmp_path_factory.getbasetemp())


@pytest.fixture
def rig(rig_env, tmp_path):
    """A rig of its own in this test's temp dir (video cameras, the emulator on a pty)."""
    from tests.rover.rig_helpers import start_rig, stop_rig

    files = start_rig(tmp_path / "rig", rig_env)
    yield files
    stop_rig(files.root, rig_env)
