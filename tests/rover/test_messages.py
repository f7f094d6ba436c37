import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rover import messages as m


def test_stereo_roundtrip_keeps_pixels_and_header():
    left = np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)
    right = left[::-1].copy()
    msg = m.StereoImage(
        seq=7,
        stamp_ns=123,
        frame_seq=7,
        left=left,
        right=right,
        left_stamp_ns=120,
        right_stamp_ns=121,
    )
    out = m.decode(m.encode(b"camera/stereo", msg), m.StereoImage)
    assert (out.seq, out.stamp_ns, out.frame_seq) == (7, 123, 7)
    assert (out.left_stamp_ns, out.right_stamp_ns) == (120, 121)
    np.testing.assert_array_equal(out.left, left)
    np.testing.assert_array_equal(out.right, right)


def test_image_buffers_travel_by_reference_not_copied_or_pickled():
    left = np.zeros((240, 320, 3), np.uint8)
    parts = m.encode(b"camera/stereo", m.StereoImage(left=left, right=left))
    assert parts[2] is left  # the very array, handed to zmq for a zero-copy send
    assert len(parts[1]) < 200  # the header part stays small


@given(
    steering=st.floats(-1, 1),
    throttle=st.floats(-1, 1),
    source=st.text(max_size=20),
    seq=st.integers(0, 2**40),
    flag=st.booleans(),
)
def test_small_messages_roundtrip(steering, throttle, source, seq, flag):
    msg = m.SteeringEstimate(
        seq=seq,
        stamp_ns=seq * 3,
        frame_seq=seq,
        steering=steering,
        throttle=throttle,
        source=source,
    )
    assert m.decode(m.encode(b"t", msg), m.SteeringEstimate) == msg
    cmd = m.TeleopCommand(steering=steering, autopilot=flag, estop=not flag)
    assert m.decode(m.encode(b"t", cmd), m.TeleopCommand) == cmd


@given(st.lists(st.binary(max_size=64), max_size=6))
def test_garbage_multipart_raises_decode_error_only(parts):
    for cls in (m.StereoImage, m.ControlCommand, m.MotorState):
        with pytest.raises(m.DecodeError):
            m.decode(parts, cls)


def test_wrong_type_is_rejected():
    parts = m.encode(b"x", m.TeleopCommand(steering=0.5))
    with pytest.raises(m.DecodeError):
        m.decode(parts, m.SteeringEstimate)
