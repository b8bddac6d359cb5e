"""The envelope codec: the only code that knows the bus wire format.

One bus message is one ZeroMQ multipart message (DESIGN.md, "The envelope"):

1. topic, UTF-8;
2. header, a msgpack map ``{v, src, host?, iid?, seq, ts, corr?, latched?}``
   (``latched``: true on a last value the broker's cache sends to a new subscriber);
3. body, a msgpack map in which every numpy array is replaced by an
   extension record ``[dtype, shape, frame index]`` (ext type 1);
4. one frame per array: its raw C-contiguous bytes, sent without copying.

Decoding is strict and bounded by ``Limits``; anything wrong raises
``EnvelopeError`` and nothing else. Arrays in a decoded body are read-only
views of the received frames (no copy). ``docs/wire.md`` is the normative,
byte-exact description of all of this, with test vectors.
"""

from __future__ import annotations

import math
import re
import struct
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import msgpack
import numpy as np

from bus.shm import ShmDropped, ShmReader
from bus.speedups import native as _native
from bus.topics import TopicError, validate_topic

ENVELOPE_VERSION = 1
ARRAY_EXT = 1
"""msgpack extension type code of an array reference."""
SHM_EXT = 2
"""msgpack extension type code of a shared-memory array reference (local form only)."""
LOCAL_MARKER = b"@shm/"
"""Topic frame prefix of the *local form* of a message: same header, large arrays as shared-memory
references. No valid topic starts with '@', so only subscribers that ask for it (``@shm/TOPIC``) and
subscribers of everything ('') receive it (docs/wire.md, section 12)."""
BATCH_MARKER = b"@b/"
"""Topic frame prefix of the *batched form* (envelope version 2, ``bus/batched.py``): one or more messages of
one sender and topic in one frame, large arrays as shared-memory references; sent only while someone asks for
it (``@b/TOPIC``); a subscriber of everything ('') skips it (docs/wire.md, section 13)."""
BATCH_VERSION = 2
"""Envelope version of the batched form."""

# byte order, kind (bool, int, uint, float, complex), item size: no objects,
# strings or structured dtypes ever cross the bus.
_DTYPE_RE = re.compile(r"[<>|=][biufc]\d{1,2}")
_DTYPES: dict[str, np.dtype] = {}
"""Dtype strings already read, which the pattern bounds to a few thousand: an array record's dtype then costs one
lookup instead of the pattern and numpy's parser (on the receive path of every frame)."""
MAX_ARRAY_DIMS = 8
"""The most dimensions an array on the bus may have."""
_MAX_NDIM = MAX_ARRAY_DIMS
MAX_IID_BYTES = 64
"""Longest instance id (UTF-8 bytes)."""
MAX_HOST_BYTES = 255
"""Longest origin host name (UTF-8 bytes), as a DNS name."""


class EnvelopeError(ValueError):
    """A message that cannot be encoded or decoded; carries the topic when known."""

    def __init__(self, reason: str, topic: str | None = None) -> None:
        self.reason = reason
        self.topic = topic
        super().__init__(f"{reason} (topic={topic!r})" if topic else reason)


@dataclass(frozen=True)
class Limits:
    """Bounds applied when decoding; defaults fit 1080p frames with room to spare."""

    max_message_bytes: int = 64 * 1024 * 1024
    """Bytes, all frames together; also the sockets' ZMQ_MAXMSGSIZE."""
    max_header_bytes: int = 4096
    """Bytes of the msgpack header frame."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Bytes of the msgpack body frame (arrays excluded)."""
    max_arrays: int = 64
    """Array frames per message."""
    # No separate limit on msgpack container lengths: msgpack bounds every
    # length by the size of the buffer being unpacked, itself bounded above.


DEFAULT_LIMITS = Limits()

_TOPICS: dict[bytes, str] = {}
_TOPICS_MAX = 4096


def _decode_topic(raw: bytes) -> str:
    """Topics repeat: remember the ones already validated (bounded)."""
    topic = _TOPICS.get(raw)
    if topic is not None:
        return topic
    try:
        topic = validate_topic(raw.decode("utf-8"))
    except (UnicodeDecodeError, TopicError) as exc:
        raise EnvelopeError(f"bad topic frame: {exc}") from exc
    _remember_topic(raw, topic)
    return topic


def _remember_topic(raw: bytes, topic: str) -> None:
    if len(_TOPICS) >= _TOPICS_MAX:
        _TOPICS.clear()
    _TOPICS[raw] = topic



class Header(NamedTuple):
    # A NamedTuple: built for every message sent and received, and
    # several times cheaper to create than a frozen dataclass.
    src: str
    """Sending actor instance, e.g. ``detector@vision``."""
    seq: int
    """Per sender and topic, from 0, +1 each message."""
    ts: int
    """Wall clock at send, nanoseconds since the epoch."""
    corr: str | None = None
    """Correlation id of a request/reply pair or a trace."""
    v: int = ENVELOPE_VERSION
    """Envelope version."""
    iid: str = ""
    """Instance id of the sending publisher, new at every process start ('' when the writer sent none)."""
    host: str = ""
    """Origin host of the sender, set by the publisher ('' when the writer sent none)."""
    latched: bool = False
    """A latched topic's last value sent again by the broker's cache to a new subscriber (the
    original src, seq and ts): not a fresh send, so no gap and no restart (``bus/latched.py``)."""

    @property
    def sender(self) -> tuple[str, str, str]:
        """(host, src, iid): one sender, whose seq runs per topic from 0."""
        return (self.host, self.src, self.iid)


@dataclass(slots=True)
class Message:
    """One received message.

    A Message that the native batch decoder (bus/_speedups.c) builds around a body of atoms only (no list
    or map inside) is not tracked by the cycle collector, as CPython itself untracks such dicts and tuples:
    a reader of 500,000 messages a second would otherwise spend more time in full collections than in
    decoding (bench/README.md). The one consequence: a body made to refer back to its own Message
    (``msg.body["m"] = msg``) is never freed.
    """

    topic: str
    header: Header
    body: dict[str, Any]
    nbytes: int
    """Bytes on the wire, all frames."""
    frames: list[Any] | None = None
    """The received frames themselves (topic, header, body, arrays), kept only
    when the receiver asked for them (a recorder: bit-faithful copies)."""
    shm_taken: list[Any] | None = None
    """Slots behind shared-memory views in the body (a subscriber with ``shm_views``), for its
    ``still_valid`` check after reading them."""


def _array_ref(obj: Any, arrays: list[np.ndarray]) -> Any:
    """msgpack ``default`` for an array: keep the array for its own frame, put a reference in the body."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufc" or obj.ndim > _MAX_NDIM:
            raise TypeError(f"array of dtype {obj.dtype} and {obj.ndim} dims cannot cross the bus")
        arr = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)
        arrays.append(arr)
        return _array_record(arr, len(arrays) - 1)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode a {type(obj).__name__}")


def _header_fixed(src: str, host: str = "", iid: str = "", version: int = ENVELOPE_VERSION) -> bytes:
    """The constant part of an ``Encoder``'s header map, up to the seq value: v, src, host and iid when
    set, the seq key."""
    fixed = b"\xa1v" + msgpack.packb(version) + b"\xa3src" + msgpack.packb(src)
    if host:
        fixed += b"\xa4host" + msgpack.packb(host)
    if iid:
        fixed += b"\xa3iid" + msgpack.packb(iid)
    return fixed + b"\xa3seq\xcf"


def _map_head(n: int) -> bytes:
    return bytes([0x80 | n])


_SEQ_TS = struct.Struct(">Q4sQ")
"""seq (uint64), the ts key with its uint64 marker, ts (uint64): the variable end of an Encoder header."""
_TS_KEY = b"\xa2ts\xcf"

# Headers from an Encoder without corr are its prefix (v, src, host, iid, the
# seq key) followed by _SEQ_TS: once a sender has been seen in a valid header,
# later headers of exactly that layout are read with one dict lookup and one
# struct unpack. They are the same bytes the general path accepts with the
# same values, so this changes no outcome, only the cost (~1 us of ~4 us).
_CANONICAL: dict[bytes, tuple[str, str, str]] = {}
_CANONICAL_MAX = 4096

# Shared-memory records the same way (docs/wire.md, section 12): a publisher
# writes slot and generation last, as msgpack uint32 and uint64, so a record
# is a constant prefix per stream (array of 5, dtype, shape, segment) and a
# 14-byte tail. A prefix seen in a valid record is remembered; later records
# of exactly that layout cost a dict lookup and a struct unpack instead of an
# unpack with limits and the checks (a paced reader runs this cold: measured
# ~39 -> ~21 us p50 after the caches were flushed). Same bytes, same values.
_SHM_PREFIXES: dict[bytes, tuple[np.dtype, tuple[int, ...], str]] = {}
_SHM_PREFIXES_MAX = 4096
_SHM_TAIL = struct.Struct(">BIBQ")
"""uint32 marker, slot, uint64 marker, generation: the fixed end of a publisher's shared-memory record."""
_SHM_TAIL_BYTES = _SHM_TAIL.size
_SHM_HEADS: dict[tuple[str, tuple[int, ...], str], bytes] = {}


def shm_record(arr: np.ndarray, segment: str, slot: int, gen: int) -> bytes:
    """The payload of an ext-2 record: ``[dtype, shape, segment, slot, generation]`` with slot and
    generation in fixed width (uint32, uint64), any other encoding of them being as valid."""
    if not (0 <= slot < 1 << 32 and 0 <= gen < 1 << 64):
        return msgpack.packb([arr.dtype.str, list(arr.shape), segment, slot, gen])
    key = (arr.dtype.str, arr.shape, segment)
    head = _SHM_HEADS.get(key)
    if head is None:
        if len(_SHM_HEADS) >= _SHM_PREFIXES_MAX:
            _SHM_HEADS.clear()
        head = b"\x95" + msgpack.packb(key[0]) + msgpack.packb(list(key[1])) + msgpack.packb(segment)
        _SHM_HEADS[key] = head
    return head + _SHM_TAIL.pack(0xCE, slot, 0xCF, gen)


class Encoder:
    """Encodes the messages of one sender; ``encode()`` is the same wire format for any sender.

    The header is a msgpack map {v, src[, host][, iid], seq, ts[, corr]} in
    that order. Its constant part (v, src, host, iid) is packed once per
    sender, and seq and ts go in as fixed-width msgpack uint64, which every
    msgpack reader accepts: a header costs one struct pack instead of a map
    pack per message. The body packer is reused across messages. ``host``
    and ``iid`` are left out when empty (a writer of the first envelope).
    """

    __slots__ = ("src", "host", "iid", "_prefix", "_prefix_corr", "_packer", "_arrays", "_topics", "_local_packer",
                 "_local", "_batch_prefix", "_rec_local", "_rec_packer")

    _SEQ_TS = _SEQ_TS
    _TS_KEY = _TS_KEY

    def __init__(self, src: str, *, host: str = "", iid: str = "") -> None:
        if not isinstance(src, str) or not src:
            raise EnvelopeError(f"header src must be a non-empty str, got {src!r}")
        _check_optional_str("host", host, MAX_HOST_BYTES)
        _check_optional_str("iid", iid, MAX_IID_BYTES)
        fixed = _header_fixed(src, host, iid)
        n = 4 + bool(host) + bool(iid)
        self.src = src
        self.host = host
        self.iid = iid
        self._prefix = _map_head(n) + fixed
        self._prefix_corr = _map_head(n + 1) + fixed
        self._arrays: list[np.ndarray] = []
        arrays = self._arrays
        self._packer = msgpack.Packer(default=lambda obj: _array_ref(obj, arrays), use_bin_type=True)
        self._topics: dict[str, bytes] = {}
        self._local: list[Any] = [None, 0, False]
        """The shared-memory writer and threshold of the ``encode_local`` or ``record`` call under way, and
        whether it put an array into shared memory."""
        local = self._local
        self._local_packer = msgpack.Packer(default=lambda obj: _local_ref(obj, arrays, local), use_bin_type=True)
        self._rec_local: list[Any] = [_no_shm, 0, False]
        """``_local`` of ``record``: set once (``record_shm``), the flag cleared per record."""
        rec_local = self._rec_local
        self._rec_packer = msgpack.Packer(default=lambda obj: _local_ref(obj, arrays, rec_local), use_bin_type=True)
        self._batch_prefix = _map_head(3 + bool(host) + bool(iid)) + _header_fixed(src, host, iid, BATCH_VERSION)

    def topic_bytes(self, topic: str) -> bytes:
        """The topic frame; validates a topic the first time it is seen."""
        raw = self._topics.get(topic)
        if raw is None:
            if not isinstance(topic, str):
                raise EnvelopeError(f"topic must be a str, got {type(topic).__name__}")
            try:
                validate_topic(topic)
            except TopicError as exc:
                raise EnvelopeError(str(exc), topic) from exc
            raw = topic.encode("utf-8")
            if len(self._topics) >= _TOPICS_MAX:
                self._topics.clear()
            self._topics[topic] = raw
        return raw

    def encode(self, topic: str, seq: int, ts: int, body: dict[str, Any], corr: str | None = None) -> list[Any]:
        """Frames of one message, ready to send; array frames are views of the caller's arrays."""
        topic_raw = self.topic_bytes(topic)
        if type(body) is not dict and not isinstance(body, dict):
            raise EnvelopeError(f"body must be a map, got {type(body).__name__}", topic)
        arrays = self._arrays
        arrays.clear()
        try:
            if corr is None:
                head = self._prefix + self._SEQ_TS.pack(seq, self._TS_KEY, ts)
            else:
                if not isinstance(corr, str):
                    raise TypeError(f"corr must be a str, got {type(corr).__name__}")
                head = (self._prefix_corr + self._SEQ_TS.pack(seq, self._TS_KEY, ts) + b"\xa4corr"
                        + msgpack.packb(corr))
            body_raw = self._packer.pack(body)
        except (TypeError, ValueError, OverflowError, struct.error) as exc:
            self._packer.reset()
            arrays.clear()
            raise EnvelopeError(f"cannot encode: {exc}", topic) from exc
        if not arrays:
            return [topic_raw, head, body_raw]
        # A 1-d uint8 view is a plain byte buffer whatever the dtype and shape.
        frames: list[Any] = [topic_raw, head, body_raw]
        frames.extend(a.reshape(-1).view(np.uint8) for a in arrays)
        arrays.clear()
        return frames


    def encode_local(self, topic: str, seq: int, ts: int, body: dict[str, Any], corr: str | None,
                     put: Any, threshold: int) -> list[Any]:
        """The local form of a message (docs/wire.md, section 12): topic frame ``@shm/TOPIC``, the same
        header, arrays of ``threshold`` bytes or more handed to ``put(array)`` (C-contiguous, as given or
        copied so), which returns (segment, slot, generation) or None (that array then goes inline, as an
        array frame)."""
        local = self._local
        local[0], local[1] = put, threshold
        packer = self._packer
        self._packer = self._local_packer
        try:
            frames = self.encode(topic, seq, ts, body, corr)
        finally:
            self._packer = packer
            local[0] = None
        frames[0] = LOCAL_MARKER + frames[0]
        return frames


    def record_shm(self, put: Any, threshold: int) -> None:
        """Where ``record`` puts arrays of ``threshold`` bytes or more: ``put(array)`` (C-contiguous) returns
        (segment, slot, generation) or None (the array then goes inline)."""
        self._rec_local[0], self._rec_local[1] = put, threshold

    def record(self, topic: str, ts: int, body: dict[str, Any],
               corr: str | None = None) -> tuple[bytes, bytes, list[Any], bool]:
        """One record of the batched form (docs/wire.md, section 13): ``[ts, body]`` or ``[ts, body, corr]``,
        arrays as in ``encode_local`` (``record_shm``). Returns (topic frame, record bytes, inline array frames,
        whether any array went to shared memory). Validates the topic as ``encode`` does."""
        topic_raw = self._topics.get(topic)
        if topic_raw is None:
            topic_raw = self.topic_bytes(topic)
        if type(body) is not dict and not isinstance(body, dict):
            raise EnvelopeError(f"body must be a map, got {type(body).__name__}", topic)
        if corr is None and _native_record is not None:
            rec = _native_record(ts, body)
            if rec is not None:  # None: the body holds something only msgpack's packer (its default) packs
                return topic_raw, rec, _NO_FRAMES, False
        rec_local = self._rec_local
        rec_local[2] = False
        arrays = self._arrays
        try:
            if corr is None:
                rec = _REC2 + _TS.pack(ts) + self._rec_packer.pack(body)
            else:
                if not isinstance(corr, str):
                    raise TypeError(f"corr must be a str, got {type(corr).__name__}")
                rec = _REC3 + _TS.pack(ts) + self._rec_packer.pack(body) + msgpack.packb(corr)
        except (TypeError, ValueError, OverflowError, struct.error) as exc:
            self._rec_packer.reset()
            arrays.clear()
            raise EnvelopeError(f"cannot encode: {exc}", topic) from exc
        if not arrays:
            return topic_raw, rec, _NO_FRAMES, rec_local[2]
        frames = [a.reshape(-1).view(np.uint8) for a in arrays]
        arrays.clear()
        return topic_raw, rec, frames, rec_local[2]

    def batch_head(self, seq: int) -> bytes:
        """The head map of a batch of this sender's messages whose first has ``seq``."""
        return self._batch_prefix + _TS.pack(seq)


_native_record = _native.record if _native is not None else None
"""``record``'s native packer: the same bytes for bodies of plain dicts, lists, str, bytes, int, float, bool and None."""
if _native is not None:
    _native.setup(Message, Header)
_REC2 = b"\x92\xcf"
"""A record [ts, body]: array of 2, then ts as a msgpack uint64."""
_REC3 = b"\x93\xcf"
_TS = struct.Struct(">Q")
_NO_FRAMES: list[Any] = []


def _no_shm(_flat: Any) -> None:
    return None


def _local_ref(obj: Any, arrays: list[np.ndarray], local: list[Any]) -> Any:
    """msgpack ``default`` of the local form: a large array goes to shared memory, others as ``_array_ref``."""
    if isinstance(obj, np.ndarray) and obj.nbytes >= local[1] and obj.dtype.kind in "biufc" \
            and obj.ndim <= _MAX_NDIM:
        arr = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)
        where = local[0](arr)
        if where is not None:
            local[2] = True
            segment, slot, gen = where
            return msgpack.ExtType(SHM_EXT, shm_record(arr, segment, slot, gen))
    return _array_ref(obj, arrays)


def encode(topic: str, header: Header, body: dict[str, Any]) -> list[Any]:
    """Frames of one message, ready for ``send_multipart(frames, copy=False)``.

    Array frames are views of the caller's arrays: do not modify them until sent.
    """
    if not isinstance(header.seq, int) or header.seq < 0:
        raise EnvelopeError(f"header seq must be an int >= 0, got {header.seq!r}", topic)
    return Encoder(header.src, host=header.host, iid=header.iid).encode(topic, header.seq, header.ts, body,
                                                                       header.corr)


def now_ns() -> int:
    return time.time_ns()


def _buffer(frame: Any) -> Any:
    """The bytes of a received frame: zmq.Frame (copy=False) or bytes."""
    return frame.buffer if hasattr(frame, "buffer") else frame


def decode(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode one received multipart message, strictly; raises EnvelopeError."""
    if len(frames) < 3:
        raise EnvelopeError(f"expected at least 3 frames (topic, header, body), got {len(frames)}")
    bufs = [_buffer(f) for f in frames]
    return decode_parts(bytes(bufs[0]), bufs[1], bufs[2], bufs[3:], limits)


_UNPACK_ERRORS = (ValueError, TypeError, OverflowError, msgpack.UnpackException)


def _no_extension(code: int, data: bytes) -> Any:
    raise EnvelopeError(f"unknown extension type {code}" if code != ARRAY_EXT
                        else "array reference but the message has no array frames")


def decode_parts(topic_raw: bytes, head_raw: Any, body_raw: Any, array_bufs: Sequence[Any],
                 limits: Limits = DEFAULT_LIMITS, shm: ShmReader | None = None) -> Message:
    """Decode a message from its parts (the receive path calls this directly); raises EnvelopeError.

    With ``shm`` (a reader that maps shared memory), the local form (topic
    frame ``@shm/TOPIC``) is accepted and its shared-memory references are
    copied out; an overwritten slot raises ``bus.shm.ShmDropped``.

    msgpack bounds every length by the size of the buffer it unpacks, and
    the buffers are bounded by ``limits`` before unpacking, so nothing here
    can allocate more than a few times the message size.
    """
    topic = _TOPICS.get(topic_raw)
    if topic is None:
        if shm is not None and topic_raw.startswith(LOCAL_MARKER):
            topic_raw = topic_raw[len(LOCAL_MARKER):]
            topic = _TOPICS.get(topic_raw)
        if topic is None:
            topic = _decode_topic(topic_raw)
    n_head, n_body = len(head_raw), len(body_raw)
    nbytes = _message_bytes(len(topic_raw) + n_head + n_body, array_bufs, limits, topic)
    if n_head > limits.max_header_bytes:
        raise EnvelopeError(f"header of {n_head} bytes exceeds {limits.max_header_bytes}", topic)
    if n_body > limits.max_body_bytes:
        raise EnvelopeError(f"body of {n_body} bytes exceeds {limits.max_body_bytes}", topic)
    header = _decode_header(head_raw, topic)
    try:
        body = _decode_body(body_raw, array_bufs, topic, shm)
    except ShmDropped as exc:
        exc.topic = topic
        exc.message = Message(topic, header, {}, nbytes)  # so that the receiver counts its seq
        raise
    return Message(topic, header, body, nbytes)


def _message_bytes(nbytes: int, array_bufs: Sequence[Any], limits: Limits, topic: str) -> int:
    """``nbytes`` of the message's other frames plus its array frames, within ``limits`` (both forms)."""
    if array_bufs:
        if len(array_bufs) > limits.max_arrays:
            raise EnvelopeError(f"{len(array_bufs)} array frames exceed {limits.max_arrays}", topic)
        nbytes += sum(len(b) for b in array_bufs)
    if nbytes > limits.max_message_bytes:
        raise EnvelopeError(f"message of {nbytes} bytes exceeds {limits.max_message_bytes}", topic)
    return nbytes


def decode_header(head_raw: Any, topic: str = "", limits: Limits = DEFAULT_LIMITS) -> Header:
    """The header frame alone, strictly; raises EnvelopeError. For a reader that filters by sender
    before paying for the body (the supervisor's heartbeat reader under a flood)."""
    if len(head_raw) > limits.max_header_bytes:
        raise EnvelopeError(f"header of {len(head_raw)} bytes exceeds {limits.max_header_bytes}", topic)
    return _decode_header(head_raw, topic)


def header_host(head_raw: bytes, topic: str = "", limits: Limits = DEFAULT_LIMITS) -> str:
    """The origin host of a header frame: for a header an ``Encoder`` wrote (its constant prefix seen before)
    a dictionary lookup, else the strict ``decode_header``; raises EnvelopeError. For a reader that routes by
    origin (the bridge) on every message."""
    n = len(head_raw)
    if 20 < n <= limits.max_header_bytes:
        known = _CANONICAL.get(head_raw[:n - 20])
        if known is not None and head_raw[n - 12:n - 8] == _TS_KEY:
            return known[1]
    return decode_header(head_raw, topic, limits).host


def _decode_header(head_raw: Any, topic: str) -> Header:
    n = len(head_raw)
    if n > 20:
        known = _CANONICAL.get(bytes(head_raw[:n - 20]))
        if known is not None:
            seq, ts_key, ts = _SEQ_TS.unpack_from(head_raw, n - 20)
            if ts_key == _TS_KEY:
                return Header(known[0], seq, ts, None, ENVELOPE_VERSION, known[2], known[1])
    try:
        head = msgpack.unpackb(head_raw, ext_hook=_no_extension)
    except EnvelopeError as exc:
        raise EnvelopeError(f"bad header: {exc.reason}", topic) from exc
    except _UNPACK_ERRORS as exc:
        raise EnvelopeError(f"bad header: {exc}", topic) from exc
    if type(head) is not dict:
        raise EnvelopeError("header is not a map", topic)
    v = head.get("v")
    src = head.get("src")
    seq = head.get("seq")
    ts = head.get("ts")
    corr = head.get("corr")
    iid = head.get("iid", "")
    host = head.get("host", "")
    latched = head.get("latched", False)
    # type() is: bool is a subclass of int and must not pass as a seq or ts.
    if v != ENVELOPE_VERSION or type(v) is not int:
        raise EnvelopeError(f"unsupported envelope version {v!r} (this reader speaks {ENVELOPE_VERSION})", topic)
    if type(src) is not str or not src:
        raise EnvelopeError(f"header src must be a non-empty str, got {src!r}", topic)
    if type(seq) is not int or seq < 0:
        raise EnvelopeError(f"header seq must be an int >= 0, got {seq!r}", topic)
    if type(ts) is not int or ts < 0:
        raise EnvelopeError(f"header ts must be an int >= 0 (ns since the epoch), got {ts!r}", topic)
    if corr is not None and type(corr) is not str:
        raise EnvelopeError(f"header corr must be a str, got {corr!r}", topic)
    try:
        _check_optional_str("iid", iid, MAX_IID_BYTES)
        _check_optional_str("host", host, MAX_HOST_BYTES)
    except EnvelopeError as exc:
        raise EnvelopeError(exc.reason, topic) from exc
    if type(latched) is not bool:
        raise EnvelopeError(f"header latched must be a bool, got {latched!r}", topic)
    _remember_canonical(src, host, iid)
    return Header(src, seq, ts, corr, v, iid, host, latched)


def _check_optional_str(name: str, value: Any, max_bytes: int) -> None:
    """``host`` and ``iid``: a str of at most ``max_bytes`` UTF-8 bytes; '' is the same as absent."""
    if type(value) is not str:
        raise EnvelopeError(f"header {name} must be a str, got {value!r}")
    if len(value) > max_bytes // 4 and len(value.encode("utf-8")) > max_bytes:
        raise EnvelopeError(f"header {name} of {len(value.encode('utf-8'))} bytes exceeds {max_bytes}")


def _remember_canonical(src: str, host: str, iid: str) -> None:
    prefix = _map_head(4 + bool(host) + bool(iid)) + _header_fixed(src, host, iid)
    if prefix not in _CANONICAL:
        if len(_CANONICAL) >= _CANONICAL_MAX:
            _CANONICAL.clear()
        _CANONICAL[prefix] = (src, host, iid)


def _decode_body(buf: Any, array_bufs: Sequence[Any], topic: str, shm: ShmReader | None = None) -> dict[str, Any]:
    if array_bufs or shm is not None:
        used = [False] * len(array_bufs)

        def ext_hook(code: int, data: bytes) -> np.ndarray:
            if code == ARRAY_EXT:
                return _array_from_ref(data, array_bufs, used, topic)
            if code == SHM_EXT and shm is not None:
                return _array_from_shm(data, shm, topic)
            raise EnvelopeError(f"unknown extension type {code}", topic)
    else:
        used = []
        ext_hook = _no_extension
    body = _unpack_body(buf, ext_hook, topic)
    if used:  # the common message has no arrays: no call on the receive path
        _check_all_used(used, topic)
    return body


def _array_from_ref(data: bytes, array_bufs: Sequence[Any], used: list[bool], topic: str) -> np.ndarray:
    try:
        ref = msgpack.unpackb(data, raw=False, max_str_len=8, max_bin_len=0, max_array_len=_MAX_NDIM,
                              max_map_len=0, max_ext_len=0)
    except _UNPACK_ERRORS as exc:
        raise EnvelopeError(f"bad array record: {exc}", topic) from exc
    if not (isinstance(ref, list) and len(ref) == 3):
        raise EnvelopeError("array record must be [dtype, shape, index]", topic)
    dtype_str, shape, index = ref
    dtype = _DTYPES.get(dtype_str) if type(dtype_str) is str else None
    if dtype is None and (not isinstance(dtype_str, str) or not _DTYPE_RE.fullmatch(dtype_str)):
        raise EnvelopeError(f"array dtype {dtype_str!r} is not a plain numeric dtype", topic)
    if not (isinstance(shape, list) and len(shape) <= _MAX_NDIM
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise EnvelopeError(f"array shape {shape!r} is not a list of at most {_MAX_NDIM} sizes", topic)
    if not isinstance(index, int) or not 0 <= index < len(array_bufs):
        raise EnvelopeError(f"array frame index {index!r} out of range ({len(array_bufs)} frames)", topic)
    if used[index]:
        raise EnvelopeError(f"array frame {index} referenced twice", topic)
    if dtype is None:
        try:
            dtype = _DTYPES[dtype_str] = np.dtype(dtype_str)
        except TypeError as exc:
            raise EnvelopeError(f"array dtype {dtype_str!r}: {exc}", topic) from exc
    buf = array_bufs[index]
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(buf):
        raise EnvelopeError(f"array frame {index} has {len(buf)} bytes, {dtype_str}{tuple(shape)} needs {expected}",
                            topic)
    used[index] = True
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _array_from_shm(data: bytes, shm: ShmReader, topic: str) -> np.ndarray:
    n = len(data) - _SHM_TAIL_BYTES
    if n > 0:
        known = _SHM_PREFIXES.get(data[:n])
        if known is not None:
            mark32, slot, mark64, gen = _SHM_TAIL.unpack_from(data, n)
            if mark32 == 0xCE and mark64 == 0xCF:
                try:
                    return shm.take(known[2], slot, gen, known[0], known[1])
                except (ValueError, TypeError, OSError) as exc:
                    raise EnvelopeError(f"bad shared-memory reference: {exc}", topic) from exc
    try:
        ref = msgpack.unpackb(data, raw=False, max_str_len=64, max_bin_len=0, max_array_len=_MAX_NDIM,
                              max_map_len=0, max_ext_len=0)
    except _UNPACK_ERRORS as exc:
        raise EnvelopeError(f"bad shared-memory record: {exc}", topic) from exc
    if not (isinstance(ref, list) and len(ref) == 5):
        raise EnvelopeError("shared-memory record must be [dtype, shape, segment, slot, generation]", topic)
    dtype_str, shape, segment, slot, gen = ref
    dtype = _DTYPES.get(dtype_str) if type(dtype_str) is str else None
    if dtype is None and (not isinstance(dtype_str, str) or not _DTYPE_RE.fullmatch(dtype_str)):
        raise EnvelopeError(f"array dtype {dtype_str!r} is not a plain numeric dtype", topic)
    if not (isinstance(shape, list) and len(shape) <= _MAX_NDIM
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise EnvelopeError(f"array shape {shape!r} is not a list of at most {_MAX_NDIM} sizes", topic)
    if type(slot) is not int or type(gen) is not int or not isinstance(segment, str):
        raise EnvelopeError(f"shared-memory reference {segment!r}/{slot!r}/{gen!r} is not str/int/int", topic)
    try:
        if dtype is None:
            dtype = _DTYPES[dtype_str] = np.dtype(dtype_str)
        array = shm.take(segment, slot, gen, dtype, shape)
    except (ValueError, TypeError, OSError) as exc:
        raise EnvelopeError(f"bad shared-memory reference: {exc}", topic) from exc
    _remember_shm_prefix(data, dtype_str, dtype, shape, segment, slot, gen)
    return array


def _remember_shm_prefix(data: bytes, dtype_str: str, dtype: np.dtype, shape: list[int], segment: str,
                         slot: int, gen: int) -> None:
    """Remember the prefix of a valid record laid out as ``shm_record`` writes it: the record written again
    from its values gives the same bytes, so the prefix alone says dtype, shape and segment."""
    if not (0 <= slot < 1 << 32 and 0 <= gen < 1 << 64):
        return
    n = len(data) - _SHM_TAIL_BYTES
    prefix = data[:n]
    if n <= 0 or prefix in _SHM_PREFIXES or data[n:] != _SHM_TAIL.pack(0xCE, slot, 0xCF, gen):
        return
    if prefix != b"\x95" + msgpack.packb(dtype_str) + msgpack.packb(shape) + msgpack.packb(segment):
        return
    if len(_SHM_PREFIXES) >= _SHM_PREFIXES_MAX:
        _SHM_PREFIXES.clear()
    _SHM_PREFIXES[prefix] = (dtype, tuple(shape), segment)


# -- the two forms of one message (a bridge between them) ---------------------
#
# A process that passes other senders' messages on (the bridge) changes only
# the form: the header (src, host, iid, seq, ts) and every other body field
# stay as they were, so receivers count gaps per original sender.

SEGMENT_MARK = b"sensorium-"
"""Every shared-memory reference names a segment ``sensorium-...``: a body without these bytes has none
(a cheap test before the real decode; a string that happens to hold them only costs that decode)."""


def refers_to_shm(body_raw: Any) -> bool:
    """Whether a body holds a shared-memory reference (ext 2), i.e. is not in the plain form: a message from
    another host that did would make a local reader read this host's memory. A body with the segment mark
    that cannot be decoded counts as one (it is dropped either way)."""
    body = bytes(body_raw)  # ``in`` finds nothing in a memoryview
    if SEGMENT_MARK not in body:
        return False
    found: list[bool] = []

    def ext_hook(code: int, data: bytes) -> None:
        found.append(code == SHM_EXT)

    try:
        msgpack.unpackb(body, ext_hook=ext_hook)
    except _UNPACK_ERRORS:
        return True
    return any(found)


def plain_from_local(frames: Sequence[Any], shm: ShmReader, limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    """The plain form of a local-form message (topic frame ``@shm/TOPIC``): the topic frame without the
    marker, each shared-memory array copied out (``shm`` must copy, not hand out views: the generation
    is checked after the copy) into an array frame. Raises EnvelopeError on a bad message and
    ``bus.shm.ShmDropped`` when a slot was overwritten (the message is lost: its seq becomes a gap)."""
    if len(frames) < 3:
        raise EnvelopeError(f"expected at least 3 frames (topic, header, body), got {len(frames)}")
    topic_raw = bytes(_buffer(frames[0]))
    if topic_raw.startswith(LOCAL_MARKER):
        topic_raw = topic_raw[len(LOCAL_MARKER):]
    topic = _decode_topic(topic_raw)
    body_raw, old = _bounded_parts(frames, topic, limits)
    if not old and SEGMENT_MARK not in bytes(body_raw):
        return [topic_raw, frames[1], frames[2]]
    used = [False] * len(old)
    arrays: list[Any] = []
    total = [len(topic_raw) + len(frames[1]) + len(body_raw)]

    def ext_hook(code: int, data: bytes) -> Any:
        if code == ARRAY_EXT:
            arr = _array_from_ref(data, old, used, topic)
        elif code == SHM_EXT:
            arr = _array_from_shm(data, shm, topic)
        else:
            raise EnvelopeError(f"unknown extension type {code}", topic)
        # An array from shared memory never passed the broker's size limit: the plain form must fit the
        # receiver's (a frame over it would make the peer drop the whole connection).
        total[0] += arr.nbytes
        if total[0] > limits.max_message_bytes:
            raise EnvelopeError(f"message of more than {limits.max_message_bytes} bytes with its arrays", topic)
        arrays.append(arr.reshape(-1).view(np.uint8))
        return _array_record(arr, len(arrays) - 1)

    body = _unpack_body(body_raw, ext_hook, topic)
    _check_all_used(used, topic)
    return [topic_raw, frames[1], msgpack.packb(body), *arrays]


def local_from_plain(frames: Sequence[Any], put: Any, threshold: int,
                     limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    """The local form of a plain message: topic frame ``@shm/TOPIC``; each array frame of ``threshold``
    bytes or more handed to ``put(uint8 view)``, which returns (segment, slot, generation) or None (the
    array then stays an array frame), and referenced from the body. Header unchanged; raises
    EnvelopeError on a bad message."""
    if len(frames) < 3:
        raise EnvelopeError(f"expected at least 3 frames (topic, header, body), got {len(frames)}")
    topic_raw = bytes(_buffer(frames[0]))
    if len(frames) == 3:
        return [LOCAL_MARKER + topic_raw, frames[1], frames[2]]
    topic = _decode_topic(topic_raw)
    body_raw, old = _bounded_parts(frames, topic, limits)
    used = [False] * len(old)
    inline: list[Any] = []

    def ext_hook(code: int, data: bytes) -> Any:
        if code != ARRAY_EXT:
            raise EnvelopeError(f"unknown extension type {code}", topic)
        arr = _array_from_ref(data, old, used, topic)
        flat = arr.reshape(-1).view(np.uint8)
        where = put(flat) if arr.nbytes >= threshold else None
        if where is not None:
            segment, slot, gen = where
            return msgpack.ExtType(SHM_EXT, shm_record(arr, segment, slot, gen))
        inline.append(flat)
        return _array_record(arr, len(inline) - 1)

    body = _unpack_body(body_raw, ext_hook, topic)
    _check_all_used(used, topic)
    return [LOCAL_MARKER + topic_raw, frames[1], msgpack.packb(body), *inline]


def _unpack_body(body_raw: Any, ext_hook: Any, topic: str) -> dict[str, Any]:
    """A body map, its extension records resolved by ``ext_hook``; raises EnvelopeError naming ``topic``."""
    try:
        body = msgpack.unpackb(body_raw, ext_hook=ext_hook)
    except EnvelopeError as exc:
        raise EnvelopeError(exc.reason, topic) from exc
    except _UNPACK_ERRORS as exc:
        raise EnvelopeError(f"bad body: {exc}", topic) from exc
    if type(body) is not dict:
        raise EnvelopeError(f"body is not a map but a {type(body).__name__}", topic)
    return body


def _check_all_used(used: list[bool], topic: str) -> None:
    if not all(used):
        raise EnvelopeError(f"{used.count(False)} array frame(s) not referenced by the body", topic)


def _bounded_parts(frames: Sequence[Any], topic: str, limits: Limits) -> tuple[Any, list[Any]]:
    """Body and array buffers of a message whose form is being changed, within ``limits``."""
    body_raw = _buffer(frames[2])
    if len(body_raw) > limits.max_body_bytes:
        raise EnvelopeError(f"body of {len(body_raw)} bytes exceeds {limits.max_body_bytes}", topic)
    if len(frames) - 3 > limits.max_arrays:
        raise EnvelopeError(f"{len(frames) - 3} array frames exceed {limits.max_arrays}", topic)
    return body_raw, [_buffer(f) for f in frames[3:]]


def _array_record(arr: np.ndarray, index: int) -> msgpack.ExtType:
    """The body's reference to array frame ``index`` (section 6 of docs/wire.md)."""
    return msgpack.ExtType(ARRAY_EXT, msgpack.packb([arr.dtype.str, list(arr.shape), index]))


# -- raw frames: recording and replay -----------------------------------------
#
# A recorder keeps the exact wire frames of a message so that a replay is
# bit-faithful. Stored, the frames (topic, header, body, arrays) are one
# msgpack array of bins ``[topic, header, body, array0, array1, ...]``, so a
# stored message is self-contained (readable even if its file lost the
# channel that named it). It is built by joining the frames behind msgpack
# bin32 prefixes: array frames are copied once and never re-encoded.

_BIN32 = b"\xc6"


def _array_prefix(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    return b"\xdc" + n.to_bytes(2, "big")


def frame_parts(frames: Sequence[Any]) -> tuple[list[Any], int]:
    """The stored form of one message's wire frames (``pack_frames``) as its
    pieces, uncopied: the msgpack framing (a few bytes each) between the
    frames' own buffers; and its total size in bytes. A writer hands the
    pieces to the file as they are (bus/recording/mcapwriter.py)."""
    bufs = [_buffer(f) for f in frames]
    prefix = _array_prefix(len(bufs))
    parts: list[Any] = [prefix]
    size = len(prefix)
    for b in bufs:
        n = len(b)
        parts.append(_BIN32 + n.to_bytes(4, "big"))
        parts.append(b)
        size += 5 + n
    return parts, size


def pack_frames(frames: Sequence[Any]) -> bytes:
    """The stored form of one message's wire frames: a msgpack array of bins."""
    return b"".join(frame_parts(frames)[0])


def unpack_frames(data: bytes | memoryview, topic: str | None = None) -> list[Any]:
    """The wire frames (topic, header, body, arrays) of a stored message; frames
    are views of ``data``. Raises EnvelopeError on bad framing, or when the
    stored topic is not ``topic`` (when given)."""
    view = memoryview(data)
    try:
        if not view:
            raise ValueError("empty")
        first = view[0]
        if 0x90 <= first <= 0x9F:
            n, pos = first & 0x0F, 1
        elif first == 0xDC:
            n, pos = int.from_bytes(view[1:3], "big"), 3
        else:
            raise ValueError(f"first byte 0x{first:02x} is not a msgpack array")
        frames: list[Any] = []
        for i in range(n):
            tag = view[pos]
            if tag == 0xC4:
                size, pos = view[pos + 1], pos + 2
            elif tag == 0xC5:
                size, pos = int.from_bytes(view[pos + 1:pos + 3], "big"), pos + 3
            elif tag == 0xC6:
                size, pos = int.from_bytes(view[pos + 1:pos + 5], "big"), pos + 5
            else:
                raise ValueError(f"item {i} is not a msgpack bin (tag 0x{tag:02x})")
            if pos + size > len(view):
                raise ValueError(f"item {i} of {size} bytes runs past the end ({len(view)} bytes)")
            frames.append(view[pos:pos + size])
            pos += size
        if pos != len(view):
            raise ValueError(f"{len(view) - pos} trailing bytes")
        if len(frames) < 3:
            raise ValueError(f"{len(frames)} frames stored, expected topic, header and body at least")
    except (ValueError, IndexError) as exc:
        raise EnvelopeError(f"bad stored frames: {exc}", topic) from exc
    stored = _decode_topic(bytes(frames[0]))
    if topic is not None and stored != topic:
        raise EnvelopeError(f"stored topic {stored!r} is not the channel's", topic)
    frames[0] = bytes(frames[0])
    return frames


def peek_version(frames: Sequence[Any]) -> Any:
    """The envelope version in a message's header frame, or None when it cannot be read
    (to tell "an older or newer envelope" apart from "damaged")."""
    try:
        head = msgpack.unpackb(_buffer(frames[1]), raw=False, max_str_len=1024, max_bin_len=0, max_array_len=0,
                               max_map_len=16, max_ext_len=0)
    except (*_UNPACK_ERRORS, IndexError):
        return None
    return head.get("v") if isinstance(head, dict) else None


def encode_header(header: Header) -> bytes:
    """The header frame of ``header``."""
    head: dict[str, Any] = {"v": ENVELOPE_VERSION, "src": header.src}  # a v1 header, whatever form it came in
    if header.host:
        head["host"] = header.host
    if header.iid:
        head["iid"] = header.iid
    head["seq"] = header.seq
    head["ts"] = header.ts
    if header.corr is not None:
        head["corr"] = header.corr
    if header.latched:
        head["latched"] = True
    return msgpack.packb(head)


def mark_latched(frames: Sequence[Any], topic: str | None = None) -> list[bytes]:
    """A copy of one received message (its wire frames) whose header says ``latched: true``:
    the broker's last-value cache sends this to a new subscriber. Every other header field,
    unknown ones included, and the body and array frames are kept as they are; raises
    EnvelopeError when the header is not a map."""
    try:
        head = msgpack.unpackb(_buffer(frames[1]), ext_hook=_no_extension)
    except EnvelopeError as exc:
        raise EnvelopeError(f"bad header: {exc.reason}", topic) from exc
    except (*_UNPACK_ERRORS, IndexError) as exc:
        raise EnvelopeError(f"bad header: {exc}", topic) from exc
    if type(head) is not dict:
        raise EnvelopeError("header is not a map", topic)
    head["latched"] = True
    return [bytes(_buffer(frames[0])), msgpack.packb(head), *(bytes(_buffer(f)) for f in frames[2:])]


def restamp(frames: Sequence[Any], header: Header) -> list[Any]:
    """The same message (topic, body and arrays untouched) under a new header."""
    return [frames[0], encode_header(header), *frames[2:]]
