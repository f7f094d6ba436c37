"""The traversability node on a real bus, and its message on the wire."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from perception.traversability.pipeline import TraversabilityConfig
from perception.traversability.polar import PolarSummary
from rover import bus, topics
from rover import messages as m
from rover.messages import TraversabilityMap
from rover.nodes.traversability import TraversabilityNode
from rover.topics import PERCEPTION_TRAVERSABILITY


def test_message_round_trips_on_the_wire():
    msg = TraversabilityMap(
        seq=3,
        stamp_ns=42,
        frame_seq=7,
        cost=np.arange(60 * 80, dtype=np.uint8).reshape(60, 80),
        arcs=np.stack([np.linspace(-1, 1, 15), np.arange(15)]).astype(np.float32),
        plane_height_m=0.25,
        plane_fitted=True,
        online_updates=5,
        latency_ms=9.5,
        model="abc",
    )
    back = m.decode(m.encode(PERCEPTION_TRAVERSABILITY.wire_name, msg), TraversabilityMap)
    np.testing.assert_array_equal(back.cost, msg.cost)
    polar = PolarSummary.from_arcs(back.arcs)
    assert polar.free_m[14] == 14.0 and polar.steering[0] == -1.0
    assert (back.frame_seq, back.plane_fitted, back.model) == (7, True, "abc")


def test_node_answers_the_newest_frame_with_a_map_and_arcs(scene, stereo_geometry, tree):
    bus_cfg = topics.BusConfig(namespace=f"t{uuid.uuid4().hex[:10]}")
    left, right, _ = scene([tree(3.15, 0.0, radius=0.2)]).render()
    camera = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
    node = TraversabilityNode(TraversabilityConfig(model=""), bus_cfg, stereo_geometry)
    out = bus.Subscriber(PERCEPTION_TRAVERSABILITY, bus_cfg)
    try:
        deadline = time.monotonic() + 10.0
        got = None
        while got is None and time.monotonic() < deadline:
            # keep sending until both connections are up (ZeroMQ's slow joiner)
            sent = camera.publish(m.StereoImage(left=left, right=right, stamp_ns=123))
            if node.spin_once(timeout_ms=50) is not None:
                got = out.receive(timeout_ms=200)
        assert got is not None, "no traversability map within 10 s"
        assert got.stamp_ns == 123 and got.frame_seq <= sent.frame_seq
        assert got.cost.shape == (60, 80)
        polar = PolarSummary.from_arcs(got.arcs)
        assert polar.free_at(0.0) == pytest.approx(2.65, abs=0.35)
        assert got.latency_ms > 0 and got.model == ""
    finally:
        node.close()
        camera.close()
        out.close()
        bus_cfg.remove_ipc_root()
