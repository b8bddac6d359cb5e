"""A corpus of malformed bus messages, by kind, for a subscriber of ``chaos.``.

Every message's topic frame starts with ``chaos.`` (ZeroMQ filters by that
prefix before anything is decoded, so a message outside the subscription would
never reach the decoder), and every one must fail ``bus.envelope.decode``:
a subscriber counts each as one malformed message. Header frames never start
with a letter: a lone frame is told from a topic by that (``Subscriber.recv_nowait``).
"""

from __future__ import annotations

from typing import Any, Callable

import msgpack
import numpy as np

from bus.envelope import ARRAY_EXT, DEFAULT_LIMITS, MAX_HOST_BYTES, MAX_IID_BYTES, Header, encode

TOPIC = b"chaos.bad"
GOOD_HEAD = {"v": 1, "src": "chaos", "seq": 0, "ts": 1}


def _head(**fields: Any) -> bytes:
    head = dict(GOOD_HEAD)
    for key, value in fields.items():
        if value is _DROP:
            head.pop(key)
        else:
            head[key] = value
    return msgpack.packb(head, use_bin_type=True)


_DROP = object()


def _ref(dtype: Any, shape: Any, index: Any) -> msgpack.ExtType:
    return msgpack.ExtType(ARRAY_EXT, msgpack.packb([dtype, shape, index]))


def _arrays(body: dict[str, Any], *frames: bytes) -> list[bytes]:
    return [TOPIC, _head(), msgpack.packb(body, use_bin_type=True), *frames]


def _good(i: int = 0) -> list[bytes]:
    return [bytes(memoryview(f)) for f in encode("chaos.bad", Header("chaos", i, 1), {"a": np.arange(4, dtype="<i4")})]


WRONG_TYPES: dict[str, list[Any]] = {
    "v": [2, 0, "1", True, 1.0, None, _DROP],
    "src": [1, "", None, b"chaos", ["a"], _DROP],
    "seq": [-1, 1.5, True, "0", None, [0], _DROP],
    "ts": [-1, "now", True, 1.0, None, _DROP],
    "corr": [5, ["c"], b"c", {"c": 1}],
    "iid": [5, b"i", "i" * (MAX_IID_BYTES + 1)],
    "host": [5, [], "h" * (MAX_HOST_BYTES + 1)],
    "latched": [1, "yes", None],
}
"""Header fields and values of the wrong type or range (``_DROP``: the field missing)."""


def corpus() -> dict[str, list[bytes]]:
    """name -> frames of one malformed message."""
    cases: dict[str, Callable[[], list[bytes]]] = {
        "1 frame": lambda: [TOPIC],
        "2 frames": lambda: [TOPIC, _head()],
        "array frame missing": lambda: _good()[:3],
        "extra unreferenced frame": lambda: _good() + [b"1234"],
        "array frame truncated": lambda: _good()[:3] + [_good()[3][:-1]],
        "array frame too long": lambda: _good()[:3] + [_good()[3] + b"\0\0\0\0"],
        "topic not utf-8": lambda: [TOPIC + b"\xff\xfe", *_good()[1:]],
        "topic upper case": lambda: [b"chaos.BAD", *_good()[1:]],
        "topic with a space": lambda: [b"chaos.a b", *_good()[1:]],
        "topic empty segment": lambda: [b"chaos..x", *_good()[1:]],
        "topic trailing dot": lambda: [b"chaos.", *_good()[1:]],
        "header not msgpack": lambda: [TOPIC, b"\xc1\xc1", *_good()[2:]],
        "header truncated": lambda: [TOPIC, _head()[:-2], *_good()[2:]],
        "header a list": lambda: [TOPIC, msgpack.packb([1, "chaos", 0, 1]), *_good()[2:]],
        "header an int": lambda: [TOPIC, msgpack.packb(-5), *_good()[2:]],
        "header over the limit": lambda: [TOPIC, _head(pad="x" * DEFAULT_LIMITS.max_header_bytes), *_good()[2:]],
        "body not msgpack": lambda: [TOPIC, _head(), b"\xc1"],
        "body truncated": lambda: [TOPIC, _head(), msgpack.packb({"a": "b" * 20})[:-3]],
        "body a list": lambda: [TOPIC, _head(), msgpack.packb([1, 2])],
        "body a string": lambda: [TOPIC, _head(), msgpack.packb("body")],
        "body nil": lambda: [TOPIC, _head(), msgpack.packb(None)],
        "body with int keys": lambda: [TOPIC, _head(), msgpack.packb({1: 2})],
        "body over the limit": lambda: [TOPIC, _head(), msgpack.packb({"s": "x" * DEFAULT_LIMITS.max_body_bytes})],
        "body trailing bytes": lambda: [TOPIC, _head(), msgpack.packb({"a": 1}) + b"\x00"],
        "unknown extension": lambda: _arrays({"a": msgpack.ExtType(9, b"xx")}),
        "array record not a list": lambda: _arrays({"a": msgpack.ExtType(ARRAY_EXT, msgpack.packb(7))}),
        "array record short": lambda: _arrays({"a": msgpack.ExtType(ARRAY_EXT, msgpack.packb(["<i4", [1]]))},
                                              b"\0" * 4),
        "array record garbage": lambda: _arrays({"a": msgpack.ExtType(ARRAY_EXT, b"\xc1")}),
        "object dtype": lambda: _arrays({"a": _ref("|O8", [1], 0)}, b"\0" * 8),
        "unicode dtype": lambda: _arrays({"a": _ref("<U1", [1], 0)}, b"\0" * 4),
        "structured dtype": lambda: _arrays({"a": _ref("f4,f4", [1], 0)}, b"\0" * 8),
        "dtype not a str": lambda: _arrays({"a": _ref(4, [1], 0)}, b"\0" * 4),
        "dtype datetime": lambda: _arrays({"a": _ref("<M8", [1], 0)}, b"\0" * 8),
        "negative shape": lambda: _arrays({"a": _ref("<i4", [-1], 0)}, b""),
        "shape not a list": lambda: _arrays({"a": _ref("<i4", 4, 0)}, b"\0" * 16),
        "shape of floats": lambda: _arrays({"a": _ref("<i4", [1.0], 0)}, b"\0" * 4),
        "shape of 9 dims": lambda: _arrays({"a": _ref("<u1", [1] * 9, 0)}, b"\0"),
        "shape overflowing": lambda: _arrays({"a": _ref("<u1", [2**62, 2**62], 0)}, b"\0"),
        "shape does not match the frame": lambda: _arrays({"a": _ref("<i4", [3], 0)}, b"\0" * 8),
        "index out of range": lambda: _arrays({"a": _ref("<i4", [1], 3)}, b"\0" * 4),
        "negative index": lambda: _arrays({"a": _ref("<i4", [1], -1)}, b"\0" * 4),
        "index not an int": lambda: _arrays({"a": _ref("<i4", [1], "0")}, b"\0" * 4),
        "frame referenced twice": lambda: _arrays({"a": _ref("<i4", [1], 0), "b": _ref("<i4", [1], 0)}, b"\0" * 4),
        "too many array frames": lambda: _arrays({f"a{i}": _ref("<u1", [1], i) for i in
                                                  range(DEFAULT_LIMITS.max_arrays + 1)},
                                                 *[b"\0"] * (DEFAULT_LIMITS.max_arrays + 1)),
    }
    out = {name: make() for name, make in cases.items()}
    for key, values in WRONG_TYPES.items():
        for value in values:
            shown = "missing" if value is _DROP else repr(value)[:20]
            out[f"header {key} = {shown}"] = [TOPIC, _head(**{key: value}), *_good()[2:]]
    return out
