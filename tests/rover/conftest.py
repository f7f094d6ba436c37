import uuid

import pytest

from rover.topics import BusConfig


@pytest.fixture
def bus_cfg() -> BusConfig:
    """A private namespace, so tests running side by side never cross; removed afterwards."""
    cfg = BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    yield cfg
    cfg.remove_ipc_root()
