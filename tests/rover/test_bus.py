import time

import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rover import bus, topics
from rover import messages as m


def _connected(pub: bus.Publisher, sub: bus.Subscriber, msg: m.Message) -> m.Message:
    """Publish until the subscriber hears one (ZeroMQ's slow joiner), return what it got."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pub.publish(msg)
        got = sub.receive(timeout_ms=20)
        if got is not None:
            return got
    raise AssertionError("subscriber never connected")


def _frame(value: int) -> m.StereoImage:
    img = np.full((24, 32, 3), value, np.uint8)
    return m.StereoImage(left=img, right=img)


def test_newest_subscriber_skips_backlog_and_counts_it(bus_cfg):
    pub = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
    sub = bus.Subscriber(topics.CAMERA_STEREO, bus_cfg, newest=True, hwm=100)
    _connected(pub, sub, _frame(0))
    sub.receive()  # drain warm-up
    for i in range(1, 11):
        last = pub.publish(_frame(i))
    got = sub.receive(timeout_ms=1000)
    while sub.poll(50):  # the rest of the burst may still be in flight
        got = sub.receive()
    assert got.seq == last.seq and got.frame_seq == last.seq
    assert got.left[0, 0, 0] == 10
    assert sub.stats.skipped >= 8  # perception never works through a queue of stale frames


def test_every_message_subscriber_keeps_all_in_order(bus_cfg):
    pub = bus.Publisher(topics.CONTROL_COMMAND, bus_cfg)
    sub = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False)
    first = _connected(pub, sub, m.ControlCommand(steering=0.0))
    sent = [pub.publish(m.ControlCommand(steering=i / 100)) for i in range(50)]
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 50 + (sent[0].seq - first.seq - 1) and time.monotonic() < deadline:
        got += sub.drain() or ([sub.receive(100)] if sub.poll(100) else [])
    got = [g for g in got if g is not None and g.seq >= sent[0].seq]
    assert [g.seq for g in got] == [s.seq for s in sent]
    assert sub.stats.skipped == 0


def test_namespaces_do_not_cross(bus_cfg):
    other = topics.BusConfig(namespace=bus_cfg.namespace + "x")
    pub_a = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
    pub_b = bus.Publisher(topics.TELEOP_COMMAND, other)
    sub_a = bus.Subscriber(topics.TELEOP_COMMAND, bus_cfg)
    assert _connected(pub_a, sub_a, m.TeleopCommand(steering=0.25)).steering == 0.25
    for _ in range(20):
        pub_b.publish(m.TeleopCommand(steering=-1.0))
    pub_a.publish(m.TeleopCommand(steering=0.5))
    got = sub_a.receive(timeout_ms=1000)
    assert got.steering == 0.5 and sub_a.stats.malformed == 0


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_malformed_multipart_is_dropped_and_counted(bus_cfg, parts):
    sub = _malformed_sub.get(bus_cfg.namespace)
    if sub is None:
        raw = bus.context().socket(zmq.PUB)
        raw.bind(bus_cfg.endpoint(topics.MOTOR_STATE))
        sub = bus.Subscriber(topics.MOTOR_STATE, bus_cfg, newest=False)
        _malformed_sub[bus_cfg.namespace] = sub = (raw, sub)
    raw, sub = sub
    good = m.encode(topics.MOTOR_STATE.wire_name, m.MotorState(seq=1, armed=True))
    deadline = time.monotonic() + 5
    while sub.receive(20) is None:  # connect
        raw.send_multipart(good)
        assert time.monotonic() < deadline
    sub.drain()
    before = sub.stats.malformed
    raw.send_multipart(parts)
    raw.send_multipart(good)
    got = None
    while got is None:
        got = sub.receive(1000)
    assert got.armed
    assert sub.stats.malformed == before + 1


_malformed_sub: dict = {}


def test_liveness_and_rate_from_registry(bus_cfg):
    pub = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
    sub = bus.Subscriber(topics.TELEOP_COMMAND, bus_cfg)
    assert not sub.alive()
    _connected(pub, sub, m.TeleopCommand())
    assert sub.alive()
    assert not sub.alive(max_age_s=-1)
    assert not sub.rate_ok()  # one message is no rate


def test_bus_refuses_to_listen_beyond_this_machine_unauthenticated():
    import pytest

    from rover.errors import ConfigError

    with pytest.raises(ConfigError, match="unauthenticated"):
        topics.BusConfig.from_dict({"transport": "tcp", "host": "0.0.0.0"})
    assert topics.BusConfig.from_dict({"transport": "tcp", "host": "127.0.0.2"}).host
