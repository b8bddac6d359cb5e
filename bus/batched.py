"""The batched form (envelope version 2): many small messages of one sender and topic in one frame.

A message of the first envelope is three ZeroMQ frames, and every frame
costs each hop (publisher, broker, subscriber) a call and a wake-up: a
CPython reader cannot take more than ~250,000 such messages a second. The
batched form (docs/wire.md, section 13) carries one or more messages in two
frames:

1. topic frame ``@b/TOPIC``;
2. batch: a msgpack array ``[head, record, record, ...]`` where ``head`` is
   ``{v: 2, src, host?, iid?, seq, latched?}`` (``seq``: the first record's;
   record k has ``seq + k``) and a record is ``[ts, body]`` or
   ``[ts, body, corr]``;
3. array frames, only in a batch of one record (arrays of that message, as
   in the local form: large ones are shared-memory references).

Only subscribers that ask for it receive it (``Subscriber(batched=True)``
subscribes to ``@b/PREFIX``): like the local form it is opt-in, so outside
readers written against version 1 keep receiving version 1. It is a local
form (its references point into this host's memory): a bridge, a recorder
and ``tap --full`` never ask for it.

``Gatherer`` is the publisher's batching policy, kept pure so it can be
tested on its own: a message is sent at once when the publisher has sent
nothing for ``gather_ns``; otherwise it waits (at most ``gather_ns``, and a
quarter more when the publisher stops right then: ``wait_due``) for
the ones that follow. At 1,000 messages a second every message goes alone,
with no added latency; in a burst, a batch leaves every ``gather_ns`` or
when it reaches ``max_records`` or ``max_bytes``.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import msgpack

from bus.envelope import (ARRAY_EXT, BATCH_MARKER, BATCH_VERSION, DEFAULT_LIMITS, MAX_HOST_BYTES, MAX_IID_BYTES,
                          SHM_EXT, EnvelopeError, Header, Limits, Message, _array_from_ref, _array_from_shm,
                          _array_prefix, _buffer, _bounded_parts, _check_all_used, _check_optional_str,
                          _decode_header, _decode_topic, _message_bytes, _UNPACK_ERRORS, local_from_plain)
from bus.shm import ShmDropped, ShmReader
from bus.speedups import native as _native

GATHER_NS = 200_000
"""Longest a message waits for others to share its batch, ns (0.2 ms); and the shortest time between two
sends of a publisher before it starts gathering."""
MAX_RECORDS = 1024
"""Messages per batch."""
MAX_BYTES = 256 * 1024
"""Bytes of records per batch; a batch over it leaves at once."""
MAX_RECORDS_READ = 65_535
"""The most records a reader accepts in one batch."""
_HEAD_VALUE_TYPES = (str, int, bool, float, type(None))
MAX_SEQ = (1 << 64) - 1
"""seq is a msgpack uint64 (docs/wire.md, section 4)."""

_new_header = tuple.__new__  # Header is a NamedTuple: building it from a tuple skips its __new__'s argument parsing


def batch_frames(topic_raw: bytes, head: bytes, records: Sequence[bytes], arrays: Sequence[Any] = ()) -> list[Any]:
    """The frames of one batch: ``@b/TOPIC``, the batch, array frames (only with one record)."""
    return [BATCH_MARKER + topic_raw, b"".join((_array_prefix(len(records) + 1), head, *records)), *arrays]


def decode_batch(topic_raw: bytes, batch_raw: Any, array_bufs: Sequence[Any], limits: Limits = DEFAULT_LIMITS,
                 shm: ShmReader | None = None) -> list[Message]:
    """The messages of one batch (``topic_raw`` without its ``@b/`` marker), strictly; raises EnvelopeError,
    or ``bus.shm.ShmDropped`` when a shared-memory array was overwritten (its ``message`` is set so that the
    receiver counts the seq). Every bound is checked before unpacking, as ``decode_parts`` does."""
    topic = _decode_topic(topic_raw)
    n_batch = len(batch_raw)
    nbytes = _message_bytes(len(topic_raw) + n_batch + len(BATCH_MARKER), array_bufs, limits, topic)
    if n_batch > limits.max_body_bytes:
        raise EnvelopeError(f"batch of {n_batch} bytes exceeds {limits.max_body_bytes}", topic)
    if _native is not None and not array_bufs:
        out = _native_batch(batch_raw, topic, nbytes)
        if out is not None:
            return out
    used = [False] * len(array_bufs)
    refs = [0]
    dropped: list[ShmDropped] = []

    def ext_hook(code: int, data: bytes) -> Any:
        refs[0] += 1
        if code == ARRAY_EXT:
            return _array_from_ref(data, array_bufs, used, topic)
        if code == SHM_EXT and shm is not None:
            try:
                return _array_from_shm(data, shm, topic)
            except ShmDropped as exc:  # finish the unpack: the header must be read to count the seq
                dropped.append(exc)
                return None
        raise EnvelopeError(f"unknown extension type {code}", topic)

    try:
        batch = msgpack.unpackb(batch_raw, ext_hook=ext_hook)
    except EnvelopeError as exc:
        raise EnvelopeError(exc.reason, topic) from exc
    except _UNPACK_ERRORS as exc:
        raise EnvelopeError(f"bad batch: {exc}", topic) from exc
    if type(batch) is not list or len(batch) < 2:
        raise EnvelopeError("batch must be an array [head, record, ...] of at least one record", topic)
    n = len(batch) - 1
    if n > MAX_RECORDS_READ:
        raise EnvelopeError(f"batch of {n} records exceeds {MAX_RECORDS_READ}", topic)
    if refs[0] and n > 1:
        raise EnvelopeError(f"arrays in a batch of {n} records (only a batch of one carries arrays)", topic)
    _check_all_used(used, topic)
    src, seq0, iid, host, latched = _batch_head(batch[0], topic)
    if seq0 + n - 1 > MAX_SEQ:
        raise EnvelopeError(f"batch seqs {seq0}..{seq0 + n - 1} run past uint64", topic)
    size = nbytes // n
    out = _records(batch, n, topic, src, seq0, iid, host, latched, size)
    if dropped:
        exc = dropped[0]
        exc.topic = topic
        exc.message = Message(topic, out[0].header, {}, nbytes)
        raise exc
    return out


def _native_batch(batch_raw: Any, topic: str, nbytes: int) -> list[Message] | None:
    """``decode_batch`` of a batch without array frames by the native decoder (bus/_speedups.c): the same
    Messages, or None for anything it does not take (extension types, anything malformed), which the Python
    code then decodes or refuses with its reason."""
    got = _native.batch_head(batch_raw)  # type: ignore[union-attr]
    if got is None:
        return None
    head, n, offset = got
    if n > MAX_RECORDS_READ:
        return None
    try:
        src, seq0, iid, host, latched = _batch_head(head, topic)
    except EnvelopeError:
        return None
    if seq0 + n - 1 > MAX_SEQ:
        return None
    return _native.batch_messages(batch_raw, offset, n, topic, src, seq0, iid, host,  # type: ignore[union-attr]
                                  latched, nbytes // n, BATCH_VERSION)


def _records(batch: list[Any], n: int, topic: str, src: str, seq0: int, iid: str, host: str, latched: bool,
             size: int) -> list[Message]:
    """The Messages of records ``batch[1:]``, strictly (raises EnvelopeError naming the record)."""
    out: list[Message] = []
    append = out.append
    seq = seq0
    for i in range(1, n + 1):
        rec = batch[i]
        if type(rec) is not list:
            raise EnvelopeError(f"record {i - 1} is not [ts, body] or [ts, body, corr]", topic)
        if len(rec) == 2:
            ts, body = rec
            corr = None
        elif len(rec) == 3:
            ts, body, corr = rec
        else:
            raise EnvelopeError(f"record {i - 1} is not [ts, body] or [ts, body, corr]", topic)
        if type(ts) is not int or ts < 0:
            raise EnvelopeError(f"record {i - 1}: ts must be an int >= 0 (ns since the epoch), got {ts!r}", topic)
        if type(body) is not dict:
            raise EnvelopeError(f"record {i - 1}: body is not a map but a {type(body).__name__}", topic)
        if corr is not None and type(corr) is not str:
            raise EnvelopeError(f"record {i - 1}: corr must be a str, got {corr!r}", topic)
        append(Message(topic, _new_header(Header, (src, seq, ts, corr, BATCH_VERSION, iid, host, latched)),
                       body, size))
        seq += 1
    return out


def _batch_head(head: Any, topic: str) -> tuple[str, int, str, str, bool]:
    if type(head) is not dict:
        raise EnvelopeError("batch head is not a map", topic)
    v = head.get("v")
    src = head.get("src")
    seq = head.get("seq")
    iid = head.get("iid", "")
    host = head.get("host", "")
    latched = head.get("latched", False)
    for value in head.values():  # arrays belong in bodies: an extension here is no head field
        if type(value) not in _HEAD_VALUE_TYPES:
            raise EnvelopeError(f"batch head field of type {type(value).__name__}", topic)
    if type(v) is not int or v != BATCH_VERSION:
        raise EnvelopeError(f"batch envelope version {v!r} is not {BATCH_VERSION}", topic)
    if type(src) is not str or not src:
        raise EnvelopeError(f"batch src must be a non-empty str, got {src!r}", topic)
    if type(seq) is not int or seq < 0:
        raise EnvelopeError(f"batch seq must be an int >= 0, got {seq!r}", topic)
    try:
        _check_optional_str("iid", iid, MAX_IID_BYTES)
        _check_optional_str("host", host, MAX_HOST_BYTES)
    except EnvelopeError as exc:
        raise EnvelopeError(exc.reason, topic) from exc
    if type(latched) is not bool:
        raise EnvelopeError(f"batch latched must be a bool, got {latched!r}", topic)
    return src, seq, iid, host, latched


def batch_from_plain(frames: Sequence[Any], put: Any = None, threshold: int = 0,
                     limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    """The batched form of one message in the plain form (or the local form of the first envelope): a batch
    of one record under the same sender, seq, ts, corr and latched mark (other header fields, which no reader
    of ours knows, are not carried). Array frames of ``threshold`` bytes or more go to ``put`` as in
    ``local_from_plain`` (``put`` None: all stay inline). Raises EnvelopeError on a bad message."""
    if len(frames) < 3:
        raise EnvelopeError(f"expected at least 3 frames (topic, header, body), got {len(frames)}")
    topic_raw = bytes(_buffer(frames[0]))
    if topic_raw.startswith(b"@"):
        topic_raw = topic_raw[topic_raw.find(b"/") + 1:]
    topic = _decode_topic(topic_raw)
    if len(frames) > 3:
        local = local_from_plain([topic_raw, *frames[1:]], put if put is not None else _inline, threshold, limits)
        frames = [topic_raw, frames[1], local[2], *local[3:]]
    body_raw, arrays = _bounded_parts(frames, topic, limits)
    head_raw = _buffer(frames[1])
    if len(head_raw) > limits.max_header_bytes:
        raise EnvelopeError(f"header of {len(head_raw)} bytes exceeds {limits.max_header_bytes}", topic)
    header = _decode_header(head_raw, topic)
    head: dict[str, Any] = {"v": BATCH_VERSION, "src": header.src}
    if header.host:
        head["host"] = header.host
    if header.iid:
        head["iid"] = header.iid
    head["seq"] = header.seq
    if header.latched:
        head["latched"] = True
    # The body goes in as its own bytes (msgpack values concatenate): array head, ts, body, corr.
    if header.corr is None:
        record = b"\x92" + msgpack.packb(header.ts) + bytes(body_raw)
    else:
        record = b"\x93" + msgpack.packb(header.ts) + bytes(body_raw) + msgpack.packb(header.corr)
    return batch_frames(topic_raw, msgpack.packb(head), [record], arrays)


def _inline(_flat: Any) -> None:
    return None


Batch = tuple[bytes, int, list[bytes]]
"""(topic frame without its marker, first seq, records)."""


class Gatherer:
    """Which gathered batches a publisher sends now (pure: the caller passes the time and owns the socket).

    ``add`` takes one encoded record and returns the batches to send now,
    oldest first, or None; ``due`` returns the batches whose time has come
    (the publisher's flusher thread calls it at ``deadline_ns``);
    ``take_all`` empties it (before a message with arrays, at close).
    A batch is (topic frame without marker, first seq, records).
    """

    __slots__ = ("gather_ns", "max_records", "max_bytes", "pending", "deadline_ns", "last_send_ns", "last_add_ns")

    def __init__(self, gather_ns: int = GATHER_NS, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES) -> None:
        self.gather_ns = gather_ns
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.pending: dict[bytes, list[Any]] = {}
        """Per topic frame: [first seq, records, bytes of records]."""
        self.deadline_ns: int | None = None
        """When the gathered batches must leave (monotonic ns); None when nothing is gathered."""
        self.last_send_ns = -(1 << 62)
        self.last_add_ns = -(1 << 62)
        """When the publisher last gave it a message (``wait_due``: whether it is still publishing)."""

    def add(self, topic_raw: bytes, seq: int, record: bytes, now_ns: int) -> list[Batch] | None:
        self.last_add_ns = now_ns
        pending = self.pending
        n = len(record)
        p = pending.get(topic_raw)
        if p is not None:
            if p[2] + n <= self.max_bytes and p[0] + len(p[1]) == seq:  # the common case: one more for the batch
                p[1].append(record)
                p[2] += n
                if now_ns < self.deadline_ns and len(p[1]) < self.max_records \
                        and p[2] < self.max_bytes:  # type: ignore[operator]
                    return None
                return self.take_all(now_ns)
            if p[0] + len(p[1]) == seq and n < self.max_bytes:
                # It would make the batch too big (for a reader, or for one pipe record): what was gathered goes,
                # this one starts the next batch.
                out = self.take_all(now_ns)
                self.pending[topic_raw] = [seq, [record], n]
                self.deadline_ns = now_ns + self.gather_ns
                return out
            # Its seq does not follow, or it is too big for any batch: what was gathered goes first, this one
            # after it, alone.
            out = self.take_all(now_ns) or []
            out.append((topic_raw, seq, [record]))
            return out
        if n >= self.max_bytes:
            out = self.take_all(now_ns) or []
            out.append((topic_raw, seq, [record]))
            self.last_send_ns = now_ns
            return out
        if not pending:
            if now_ns - self.last_send_ns >= self.gather_ns:
                self.last_send_ns = now_ns
                return [(topic_raw, seq, [record])]
            pending[topic_raw] = [seq, [record], len(record)]
            self.deadline_ns = self.last_send_ns + self.gather_ns
            return None
        pending[topic_raw] = [seq, [record], n]
        if now_ns >= self.deadline_ns:  # type: ignore[operator]
            return self.take_all(now_ns)
        return None

    def add_body(self, topic_raw: bytes, seq: int, ts: int, body: dict[str, Any], max_bytes: int | None = None) -> Any:
        """``add`` of the message's record packed by the gatherer itself, now (``time.monotonic_ns``), this
        topic's batch held to ``max_bytes`` (at most the gatherer's: a batch that must fit one pipe record):
        the native one does; this one packs nothing, so it returns False (the caller encodes the record and
        calls ``add``)."""
        return False

    def wait_due(self) -> bool:
        """Wait until what is gathered is due and the publisher, having given it nothing for a quarter of
        ``gather_ns``, will not send it itself (True: the caller sends it), or until nothing has been gathered
        nor given for ``gather_ns`` (False: the publisher went quiet). The publisher's flusher thread calls it
        holding no lock: a publisher that keeps publishing sends what is due with its next message and is
        never interrupted (the native gatherer waits without the GIL too). A gathered message so waits at most
        1.25 ``gather_ns``."""
        grace = self.gather_ns // 4
        while True:
            now = time.monotonic_ns()
            deadline = self.deadline_ns
            since_add = now - self.last_add_ns
            if deadline is None:
                if since_add >= self.gather_ns:
                    return False
                time.sleep((self.gather_ns - since_add) / 1e9)
            elif now < deadline:
                time.sleep((deadline - now) / 1e9)
            elif since_add < grace:
                time.sleep((grace - since_add) / 1e9)
            else:
                return True

    def due(self, now_ns: int) -> list[Batch] | None:
        if self.deadline_ns is not None and now_ns >= self.deadline_ns:
            return self.take_all(now_ns)
        return None

    def take_all(self, now_ns: int) -> list[Batch] | None:
        if not self.pending:
            return None
        out = [(t, p[0], p[1]) for t, p in self.pending.items()]
        self.pending = {}
        self.deadline_ns = None
        self.last_send_ns = now_ns
        return out


def new_gatherer(gather_ns: int = GATHER_NS, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES) -> Gatherer:
    """A ``Gatherer``: the native one (bus/_speedups.c, the same policy, and ``add_body`` packing plain bodies)
    where it was built, else this module's."""
    if _native is not None:
        return _native.Gatherer(gather_ns, max_records, max_bytes)  # type: ignore[no-any-return]
    return Gatherer(gather_ns, max_records, max_bytes)
