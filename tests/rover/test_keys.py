"""`rover keys`: real key files, real permissions, one-line errors; the bus over tcp + CURVE."""

import socket
import stat
import subprocess
import sys

import pytest

from rover import bus, topics
from rover import messages as m
from rover.errors import ConfigError
from rover.keys import OPERATOR, ROBOT, KeyStore
from rover.topics import BusConfig


def rover_keys(keys_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "rover.cli", "keys", "--keys", str(keys_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_makes_private_secrets_and_never_overwrites(tmp_path):
    result = rover_keys(tmp_path / "k", "init")
    assert result.returncode == 0, result.stderr
    store = KeyStore(tmp_path / "k")
    for name in (ROBOT, OPERATOR):
        secret = store.root / f"{name}.key_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert store.public(name).decode() in result.stdout
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    before = store.public(ROBOT)
    again = rover_keys(tmp_path / "k", "init")
    assert "already" in again.stdout and store.public(ROBOT) == before


def test_authorize_list_revoke(tmp_path):
    robot, laptop = KeyStore(tmp_path / "robot"), KeyStore(tmp_path / "laptop")
    robot.init()
    laptop.init()
    key = laptop.public(OPERATOR).decode()
    result = rover_keys(robot.root, "authorize", "--name", "alice", "--", key)
    assert result.returncode == 0, result.stderr
    assert robot.authorized()["alice"].decode() == key
    # the operator's .key file works as well as its 40 characters
    robot.authorize(str(laptop.root / "operator.key"), name="alice2")
    assert "alice" not in robot.authorized()  # one key, one name
    listed = rover_keys(robot.root, "list").stdout
    assert "alice2" in listed and key in listed
    revoked = rover_keys(robot.root, "revoke", "--", key)  # a key may begin with "-"
    assert revoked.returncode == 0 and "alice2" in revoked.stdout
    assert "alice2" not in robot.authorized()


@pytest.mark.parametrize(
    "args, needle",
    [
        (("authorize", "not-a-key"), "is not a CURVE public key"),
        (("revoke", "nobody"), "no authorized operator 'nobody'"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, needle):
    KeyStore(tmp_path).init()
    result = rover_keys(tmp_path, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rover: error: ") and needle in lines[0]


def test_missing_keys_and_open_permissions_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="rover keys init"):
        KeyStore(tmp_path / "none").pair(ROBOT)
    store = KeyStore(tmp_path / "k")
    store.init()
    (store.root / "robot.key_secret").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        store.pair(ROBOT)


def test_tcp_off_loopback_needs_curve():
    with pytest.raises(ConfigError, match="curve = true"):
        BusConfig.from_dict({"transport": "tcp", "host": "0.0.0.0"})
    assert BusConfig.from_dict({"transport": "tcp", "host": "0.0.0.0", "curve": True}).curve


def test_bus_over_tcp_with_curve(tmp_path, bus_cfg):
    KeyStore(tmp_path).init()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = port - topics.ALL_TOPICS.index(topics.MOTOR_STATE)
    cfg = BusConfig(transport="tcp", base_port=base, curve=True, keys_dir=str(tmp_path))
    pub = bus.Publisher(topics.MOTOR_STATE, cfg)
    sub = bus.Subscriber(topics.MOTOR_STATE, cfg)
    try:
        got = None
        for _ in range(200):  # the slow joiner: publish until the subscriber hears
            pub.publish(m.MotorState(throttle=0.5))
            got = sub.receive(timeout_ms=20)
            if got:
                break
        assert got is not None and got.throttle == 0.5
    finally:
        pub.close()
        sub.close()
