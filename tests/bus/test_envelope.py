"""The envelope codec: round trips, and strict bounded decoding of bad input."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bus.envelope import ARRAY_EXT, EnvelopeError, Header, Limits, decode, decode_parts, encode

HEADER = Header(src="test", seq=7, ts=1_700_000_000_000_000_000, corr="abc")

DTYPES = st.sampled_from(["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                          "float16", "float32", "float64", "complex64", "complex128", ">f4", ">i8"])


def arrays():
    return DTYPES.flatmap(lambda dt: hnp.arrays(dtype=np.dtype(dt), shape=hnp.array_shapes(min_dims=0, max_dims=4,
                                                                                           min_side=0, max_side=6)))


def wire(frames):
    """What a receiver gets: plain bytes per frame."""
    return [bytes(f) if not isinstance(f, np.ndarray) else f.tobytes() for f in frames]


@settings(max_examples=200, deadline=None)
@given(a=arrays(), b=arrays(), scalar=st.floats(allow_nan=False), text=st.text(max_size=20))
def test_round_trip_arrays_of_many_dtypes_and_shapes(a, b, scalar, text):
    body = {"a": a, "nested": {"list": [b, 1, text]}, "x": scalar, "np": np.float32(1.5)}
    msg = decode(wire(encode("camera.frame", HEADER, body)))
    assert msg.topic == "camera.frame"
    assert msg.header == HEADER
    for sent, got in ((a, msg.body["a"]), (b, msg.body["nested"]["list"][0])):
        assert got.dtype == sent.dtype and got.shape == sent.shape
        np.testing.assert_array_equal(got, sent)
    assert msg.body["x"] == scalar and msg.body["nested"]["list"][2] == text and msg.body["np"] == 1.5


def test_non_contiguous_arrays_travel_as_their_values():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    view = image[:, ::2, ::-1]
    msg = decode(wire(encode("camera.frame", HEADER, {"image": view})))
    np.testing.assert_array_equal(msg.body["image"], view)


def test_array_frames_are_not_copied_on_send():
    image = np.zeros((480, 640, 3), np.uint8)
    frames = encode("camera.frame", HEADER, {"image": image})
    assert np.shares_memory(frames[3], image)


def test_decoded_arrays_are_read_only_views_of_the_frame():
    frames = wire(encode("sensor.imu", HEADER, {"acc": np.ones((5, 3), np.float32)}))
    acc = decode(frames).body["acc"]
    assert not acc.flags.writeable


@pytest.mark.parametrize("topic", ["Camera.frame", "camera..frame", "", "camera frame", ".x", "x" * 300])
def test_encode_refuses_bad_topics(topic):
    with pytest.raises(EnvelopeError):
        encode(topic, HEADER, {})


@pytest.mark.parametrize("body", [{"o": np.array([object()])}, {"s": np.array(["text"])}, {"f": object()}, [1, 2]])
def test_encode_refuses_what_cannot_cross_the_bus(body):
    with pytest.raises(EnvelopeError):
        encode("test.x", HEADER, body)


def _good():
    return wire(encode("test.x", HEADER, {"a": np.arange(10, dtype=np.int32), "b": 1}))


def _with_body(body_bytes, arrays=()):
    head = msgpack.packb({"v": 1, "src": "t", "seq": 0, "ts": 0})
    return [b"test.x", head, body_bytes, *arrays]


def _ref(dtype, shape, index):
    return msgpack.ExtType(ARRAY_EXT, msgpack.packb([dtype, shape, index]))


MALFORMED = {
    "too few frames": lambda: _good()[:2],
    "array frame missing": lambda: _good()[:3],
    "array frame truncated": lambda: _good()[:3] + [_good()[3][:-4]],
    "extra unreferenced frame": lambda: _good() + [b"1234"],
    "topic not utf-8": lambda: [b"\xff\xfe"] + _good()[1:],
    "topic invalid": lambda: [b"NOT A TOPIC"] + _good()[1:],
    "header garbage": lambda: [b"test.x", b"\xc1\xc1", _good()[2]] + _good()[3:],
    "header not a map": lambda: [b"test.x", msgpack.packb([1, 2])] + _good()[2:],
    "envelope version 2": lambda: [b"test.x", msgpack.packb({"v": 2, "src": "t", "seq": 0, "ts": 0})] + _good()[2:],
    "negative seq": lambda: [b"test.x", msgpack.packb({"v": 1, "src": "t", "seq": -1, "ts": 0})] + _good()[2:],
    "missing src": lambda: [b"test.x", msgpack.packb({"v": 1, "seq": 0, "ts": 0})] + _good()[2:],
    "body truncated": lambda: _good()[:2] + [_good()[2][:-3]] + _good()[3:],
    "body not a map": lambda: _with_body(msgpack.packb([1, 2, 3])),
    "body int keys": lambda: _with_body(msgpack.packb({1: 2})),
    "wrong extension type": lambda: _with_body(msgpack.packb({"a": msgpack.ExtType(9, b"xx")})),
    "object dtype": lambda: _with_body(msgpack.packb({"a": _ref("|O8", [1], 0)}), [b"\0" * 8]),
    "string dtype": lambda: _with_body(msgpack.packb({"a": _ref("<U1", [1], 0)}), [b"\0" * 4]),
    "structured dtype": lambda: _with_body(msgpack.packb({"a": _ref("f4,f4", [1], 0)}), [b"\0" * 8]),
    "dtype numpy does not know": lambda: _with_body(msgpack.packb({"a": _ref("<i3", [1], 0)}), [b"\0" * 3]),
    "shape does not match frame": lambda: _with_body(msgpack.packb({"a": _ref("<i4", [3], 0)}), [b"\0" * 8]),
    "negative shape": lambda: _with_body(msgpack.packb({"a": _ref("<i4", [-1], 0)}), [b""]),
    "frame index out of range": lambda: _with_body(msgpack.packb({"a": _ref("<i4", [1], 3)}), [b"\0" * 4]),
    "frame referenced twice": lambda: _with_body(msgpack.packb({"a": _ref("<i4", [1], 0), "b": _ref("<i4", [1], 0)}),
                                                 [b"\0" * 4]),
    "bad array record": lambda: _with_body(msgpack.packb({"a": msgpack.ExtType(ARRAY_EXT, b"\x93\x01")}), []),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_messages_raise_one_error_type(case):
    with pytest.raises(EnvelopeError):
        decode(MALFORMED[case]())


def test_a_dtype_refused_once_is_refused_again_and_a_good_one_read_again():
    """Dtypes are remembered once read (the receive path's cache): only those numpy made."""
    for _ in range(2):
        with pytest.raises(EnvelopeError, match="<i3"):
            decode(MALFORMED["dtype numpy does not know"]())
        got = decode(_good())
        np.testing.assert_array_equal(got.body["a"], np.arange(10, dtype=np.int32))


def test_oversize_messages_are_refused_by_the_limits():
    big = wire(encode("test.x", HEADER, {"a": np.zeros(10_000, np.uint8)}))
    with pytest.raises(EnvelopeError, match="exceeds"):
        decode(big, Limits(max_message_bytes=5_000))
    long_body = wire(encode("test.x", HEADER, {"s": "x" * 10_000}))
    with pytest.raises(EnvelopeError, match="exceeds"):
        decode(long_body, Limits(max_body_bytes=1_000))
    many = wire(encode("test.x", HEADER, {f"a{i}": np.zeros(1) for i in range(10)}))
    with pytest.raises(EnvelopeError, match="array frames exceed"):
        decode(many, Limits(max_arrays=4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=6))
def test_random_bytes_only_ever_raise_envelope_error(frames):
    try:
        decode(frames)
    except EnvelopeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_corrupting_any_byte_of_a_good_message_is_caught_or_harmless(data):
    frames = [bytearray(f) for f in _good()]
    i = data.draw(st.integers(0, len(frames) - 1))
    if frames[i]:
        j = data.draw(st.integers(0, len(frames[i]) - 1))
        frames[i][j] = data.draw(st.integers(0, 255))
    try:
        decode([bytes(f) for f in frames])
    except EnvelopeError:
        pass


@settings(max_examples=300, deadline=None)
@given(src=st.text(min_size=1, max_size=40), seq=st.integers(0, 2**64 - 1), ts=st.integers(0, 2**64 - 1),
       corr=st.none() | st.text(max_size=10), iid=st.text(max_size=16), host=st.text(max_size=16))
def test_headers_decode_alike_whatever_int_widths_and_key_order_the_writer_chose(src, seq, ts, corr, iid, host):
    """The encoder writes seq and ts as fixed-width uint64; any writer's equivalent map decodes alike."""
    header = Header(src=src, seq=seq, ts=ts, corr=corr, iid=iid, host=host)
    ours = encode("test.x", header, {})
    head = {"v": 1, "src": src, **({"host": host} if host else {}), **({"iid": iid} if iid else {}),
            "seq": seq, "ts": ts}
    if corr is not None:
        head["corr"] = corr
    theirs = [ours[0], msgpack.packb(dict(reversed(head.items()))), ours[2]]
    assert msgpack.unpackb(ours[1]) == head and list(msgpack.unpackb(ours[1])) == list(head)
    assert decode(ours).header == decode(theirs).header == header


def test_instance_id_and_host_are_additive_and_checked():
    old = [b"test.x", msgpack.packb({"v": 1, "src": "t", "seq": 0, "ts": 0}), msgpack.packb({})]
    assert decode(old).header.sender == ("", "t", "")
    for bad in ({"iid": 7}, {"host": ["h"]}, {"iid": "x" * 65}, {"host": "h" * 256}):
        with pytest.raises(EnvelopeError):
            decode([b"test.x", msgpack.packb({"v": 1, "src": "t", "seq": 0, "ts": 0, **bad}), msgpack.packb({})])


def test_a_bool_is_not_a_seq_nor_a_version():
    for head in ({"v": 1, "src": "t", "seq": True, "ts": 0}, {"v": True, "src": "t", "seq": 0, "ts": 0}):
        with pytest.raises(EnvelopeError):
            decode_parts(b"test.x", msgpack.packb(head), msgpack.packb({}), [])


def _outcome(frames: list[bytes]) -> object:
    try:
        return decode(frames).header
    except EnvelopeError as exc:
        return ("error", exc.reason)


@settings(max_examples=300, deadline=None)
@given(src=st.text(min_size=1, max_size=40), seq=st.integers(0, 2**64 - 1), ts=st.integers(0, 2**64 - 1),
       iid=st.text(max_size=16), host=st.text(max_size=16), data=st.data())
def test_the_known_sender_shortcut_decodes_every_header_as_the_full_decoder_does(src, seq, ts, iid, host, data):
    """Headers of a sender already seen take a shortcut; good or damaged, they must come out exactly as
    the full msgpack decoding says (the shortcut is a cache, never a second opinion)."""
    from bus import envelope

    frames = [bytes(f) for f in encode("test.x", Header(src=src, seq=seq, ts=ts, iid=iid, host=host), {})]
    head = bytearray(frames[1])
    if data.draw(st.booleans()):
        head[data.draw(st.integers(0, len(head) - 1))] = data.draw(st.integers(0, 255))
    damaged = [frames[0], bytes(head), frames[2]]
    decode(frames)  # the sender is now known
    assert bytes(head[:-20]) in envelope._CANONICAL or bytes(head) != frames[1]
    with_shortcut = _outcome(damaged)
    envelope._CANONICAL.clear()
    assert _outcome(damaged) == with_shortcut
