"""Publisher and subscriber helpers over the broker.

Behaviour at the high-water mark (HWM, in messages, set on every socket):

* A publisher whose queue to the broker is full drops the message (ZeroMQ PUB
  semantics: a sender never blocks on a slow bus).
* The broker's XPUB drops messages for one subscriber whose queue is full;
  other subscribers are not slowed down (like ROS 2 best-effort QoS).

Neither drop is silent: every message carries ``seq`` per sender and topic,
so each subscriber counts the messages it missed as ``gaps`` per sender and
topic and reports them in its heartbeat. A sender is (host, src, iid)
(``bus/senders.py``): a publisher that restarts has a new instance id and
starts a new sequence, neither gap nor reset; a seq that goes backwards
within one sender (a writer without an instance id) counts as a reset.

Latched topics (``bus/latched.py``): the broker's cache sends a new
subscriber the last value of each, its header marked ``latched``. The broker
fans that replay out to every subscriber of the topic; a ``Subscriber``
passes it on only when it is news to it (no value of that sender and key yet,
or an older one), and never counts it in the seq accounting.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import structlog
import zmq
import zmq.backend

from bus.batched import GATHER_NS, batch_from_plain, batch_frames, decode_batch, new_gatherer
from bus.burstlog import BurstLog
from bus.direct import DISCOVER_EVERY_NS, DirectLinks, bind as bind_direct
from bus.envelope import (BATCH_MARKER, DEFAULT_LIMITS, LOCAL_MARKER, MAX_ARRAY_DIMS, EnvelopeError, Encoder, Header,
                          Limits, Message, decode, decode_parts, encode, local_from_plain, now_ns, refers_to_shm,
                          restamp)
from bus.latched import is_news, latch_key, latched
from bus.pipes import PIPE_MARKER, RECORD_HEAD, RECORD_MAX_BYTES, PipeIn, PipeOut, PipeWriters, RecordError
from bus.senders import Duplicate, SenderBook, new_instance_id, origin_host
from bus.shm import (DEFAULT_SLOTS, DEFAULT_THRESHOLD_BYTES, SHM_DIR, ShmDropped, ShmReader, ShmRing,
                     ShmUnavailable)
from bus.topics import validate_prefix

DEFAULT_HWM = 10_000
"""Messages queued per socket before dropping."""
MAX_GAP = 1 << 32
"""The longest seq jump counted as lost messages. A longer jump forward is no loss a publisher could have
made (4 billion messages) but a writer that renumbered, or a forged seq: counted as a reset, so that one
message cannot make ``gaps`` exceed what a heartbeat can carry (uint64)."""
SUBSCRIPTIONS_EVERY_NS = 20_000_000
"""How often a publisher reads the subscriptions forwarded to it (which forms to send), ns."""

# Plain ints: pyzmq's enum members cost a conversion on every call of the hot path.
_SNDMORE = int(zmq.SNDMORE)
_FORMS_MAX = 4096
"""Topics whose forms a publisher remembers; beyond it the cache starts again (forwarded topics are many)."""
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_BACKEND_SEND = zmq.backend.Socket.send
_POLLIN = int(zmq.POLLIN)
_WAIT_SLICE_MS = DISCOVER_EVERY_NS // 1_000_000
"""The longest single wait of ``Subscriber.recv`` (it waits again until its deadline)."""
_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns
_NO_ARRAYS: list[Any] = []
"""The array frames of a message without any (shared: never appended to)."""

log = structlog.get_logger("bus")


@dataclass
class _Loan:
    """A ring slot lent to the producer (``Publisher.loan``) until the publish that carries it."""

    topic: str
    ring: ShmRing
    slot: int
    nbytes: int
    address: int
    """Where the slot's bytes start in this process (how ``_shm_put`` recognises the loaned array)."""
    array: np.ndarray
    gen: int | None = None
    """The slot's generation once committed (the first form that referred to it)."""

_Forms = tuple[bool, bool, bool, tuple[PipeOut, ...], tuple[PipeOut, ...], bytes | None, int | None]
"""A topic's forms at a publisher: plain, local, batched, the local-form pipes, the batch pipes, the topic frame
when the batched form (over the link or into pipes) is the only one wanted (None otherwise), and the record bytes
a batch may hold to fit one pipe record (None without batch pipes)."""


def _pipe_record_bytes(frames: list[Any]) -> int:
    """The size of the pipe record of a batch without arrays (its topic and batch frames)."""
    return RECORD_HEAD.size + len(frames[0]) + len(frames[1])


_LOST: list[Any] = []
"""``Message.shm_taken`` of a message whose views were found overwritten (counted once)."""


class Publisher:
    """Publishes envelopes from one sender (``src``), numbering each topic's messages.

    The socket is an XPUB connected to the broker's XSUB, so the publisher
    also sees subscriptions and can wait until someone listens. Each
    publisher is one sender: ``host`` (this machine) and a new ``iid``
    (instance id) go into every header. It counts what it sent per topic
    (``topic_counts()``), which heartbeats carry so that tools measure
    rates without listening.

    Two forms of a message (docs/wire.md, section 12): the *plain* form
    (topic, header, body, array frames) for every subscriber of the topic,
    and the *local* form (topic frame ``@shm/TOPIC``) for subscribers that
    asked for it (``Subscriber(shm=True)``), in which arrays of
    ``shm_threshold`` bytes or more are written once into this publisher's
    shared-memory ring (``shm_slots`` slots) and referenced. The publisher
    reads the subscriptions the broker forwards (every 20 ms at most) and
    sends each form only when someone subscribed to it; the plain form is
    skipped only when a local subscriber is known and no plain one. When no
    segment can be made (/dev/shm missing, small or full), the local form
    carries its arrays inline and the publisher says so once.

    A third form, the *batched* form (envelope version 2, ``bus/batched.py``,
    docs/wire.md section 13: topic frame ``@b/TOPIC``), goes to subscribers
    that asked for it (``Subscriber(batched=True)``): a message goes at once
    when this publisher sent nothing for ``gather_ns``, else it waits at most
    that long for the ones that follow and leaves with them in one frame
    (``bus.batched.Gatherer``; the next message sends what is due, and a
    thread of this publisher sends it when none comes, ``Gatherer.wait_due``:
    at most 1.25 ``gather_ns`` of waiting). Order holds per topic.

    ``direct_dir``: the socket also listens at a direct endpoint in that
    folder (``bus/direct.py``, docs/wire.md section 14), where direct
    subscribers of this host connect without the broker; ZeroMQ routes
    each form per connection, so nobody gets a message twice.

    ``loan(topic, shape, dtype)`` hands out a writable array that lies in a
    ring slot: a producer that draws or captures into it publishes it in its
    next message of ``topic`` without a copy for local subscribers (as
    iceoryx's ``loan``); subscribers of the plain form get a copy of it.

    Not thread-safe for callers (one thread publishes); its own flushing
    thread shares the socket under a lock.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, src: str, *, hwm: int = DEFAULT_HWM,
                 linger_ms: int = 1000, iid: str | None = None, host: str | None = None,
                 shm_threshold: int = DEFAULT_THRESHOLD_BYTES, shm_slots: int = DEFAULT_SLOTS,
                 shm_dir: Path = SHM_DIR, gather_ns: int = GATHER_NS, direct_dir: Path | None = None) -> None:
        self.src = src
        self.iid = new_instance_id() if iid is None else iid
        self.host = origin_host() if host is None else host
        self.sock = ctx.socket(zmq.XPUB)
        self._send_frame = _BACKEND_SEND.__get__(self.sock)
        """``sock.send`` without pyzmq's Python wrapper, which adds only DRAFT routing ids and groups: 0.13
        against 0.31 us a frame, three frames or more a message."""
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, linger_ms)
        self.sock.connect(endpoint)
        self.direct_endpoint: Path | None = None
        """The socket file where direct subscribers connect (``direct_dir``), removed at ``close``."""
        self.direct_unavailable: str | None = None
        """Why no direct endpoint could be made in ``direct_dir`` (the broker still carries everything)."""
        if direct_dir is not None:
            try:
                self.direct_endpoint = bind_direct(self.sock, direct_dir)
            except (ValueError, OSError, zmq.ZMQError) as exc:
                self.direct_unavailable = str(exc)
                log.warning("direct_link_unavailable", src=src, folder=str(direct_dir), reason=str(exc),
                            detail="direct subscribers will not hear this publisher; the broker carries everything")
        self.pipes = PipeWriters(self.direct_endpoint.parent if self.direct_endpoint is not None else None, src)
        """The pipes of pipe subscribers (bus/pipes.py) that asked this publisher for topics, and its counters."""
        self._seq: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._encoder = Encoder(src, host=self.host, iid=self.iid)
        self._encoder.record_shm(self._shm_put, shm_threshold)
        self.sent = 0
        self.subscriptions: set[bytes] = set()
        self.shm_threshold = shm_threshold
        self.shm_slots = shm_slots
        self.shm_dir = shm_dir
        self.shm_unavailable: str | None = None
        """Why no segment could be made ('' : none tried yet or all well); the local form is then inline."""
        self._ring: ShmRing | None = None
        self._rings_made = 0
        self._forms: dict[str | bytes, _Forms] = {}
        """Per topic (or topic frame, for ``forward_small``): (send the plain form, the local form, the batched
        form, the pipes that want the local form, the pipes that want the batched form), from the
        subscriptions."""
        self._subs_due = 0
        self._gather = new_gatherer(gather_ns)
        self._gather_add = self._gather.add
        self._gather_body = self._gather.add_body
        self._topic_bytes = self._encoder.topic_bytes
        self._record = self._encoder.record
        self._lock = threading.Lock()
        """Held around every use of the socket: the flusher thread sends gathered batches."""
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._wake = threading.Event()
        """Set while something is gathered: the flusher sends it at the deadline."""
        self._flusher: threading.Thread | None = None
        self._armed = False
        """The flusher was woken for what is gathered (read and written under the lock)."""
        self._closed = False
        self._batch_bytes: dict[bytes, int] = {}
        """Bytes sent in the batched form per topic frame (``topic_counts``)."""
        self.batched_refused = 0
        """Passed-on messages (``forward``, ``publish_frames``) that could not be put in the batched form."""
        self._burst = BurstLog(log)
        self._loan: _Loan | None = None
        self.loans_published = 0
        """Arrays published from a slot on loan (``loan``): sent to local readers without a copy."""
        self._lent_ranges: list[tuple[int, int]] = []
        """Address ranges of the rings this publisher lent slots of: an array frame in one of them (a frame
        that was on loan, published again) goes to ZeroMQ as a copy, never as a view of a reused slot."""

    def loan(self, topic: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A writable array of ``shape`` and ``dtype`` for ``topic``'s next message, lent out of this
        publisher's shared-memory ring: fill it in place (draw, capture, ``np.copyto``) and publish it in
        a body; local subscribers then get a reference to the slot and the bytes are never copied.

        Rules, as iceoryx's: one loan at a time (a new loan, or a publish of ``topic`` that does not carry
        it, gives the old one back unpublished); once published the array is read-only, for its slot now
        belongs to the readers until the ring comes round. Where shared memory would not carry the array
        (below ``shm_threshold``, no local or batched subscriber of ``topic`` known, no segment) the
        array is an ordinary one of this process, published as any other."""
        dt = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if dt.kind not in "biufc" or len(shape) > MAX_ARRAY_DIMS:
            raise TypeError(f"array of dtype {dt} and {len(shape)} dims cannot cross the bus")
        nbytes = math.prod(shape) * dt.itemsize
        with self._lock:
            if self._closed:
                raise zmq.ZMQError(zmq.ENOTSOCK, f"publisher {self.src} is closed")
            self._give_back_loan()
            # Here rather than after the send: a producer takes its loan before the frame exists, so the read
            # (tens of microseconds after a quiet spell) does not compete with the frame's delivery.
            if self._subs_due:
                self._read_subscriptions_if_due(time.time_ns())
            if 0 < self.shm_threshold <= nbytes and self._wants_shm(topic):
                ring = self._ring
                if ring is None or nbytes > ring.slot_bytes:
                    ring = None if self.shm_unavailable is not None else self._new_ring(nbytes)
                if ring is not None and ring.slots > 1:
                    if ring.address_range not in self._lent_ranges:
                        self._lent_ranges.append(ring.address_range)
                    slot, array = ring.loan(nbytes, shape, dt)
                    self._loan = _Loan(topic, ring, slot, nbytes, ring.slot_address(slot), array)
                    return array
        return np.empty(shape, dt)

    def _wants_shm(self, topic: str) -> bool:
        """Someone subscribed to ``topic`` in a form that refers to shared memory (local, batched, a pipe)."""
        if self._subs_due == 0:  # nothing read yet: the subscriptions already forwarded
            self._drain_subscriptions()
        forms = self._forms.get(topic)
        if forms is None:
            forms = self._forms[topic] = self._forms_for(topic)
        return forms[1] or forms[2] or bool(forms[3]) or bool(forms[4])

    def _give_back_loan(self) -> None:
        """End the current loan: committed (published) or given back empty; its array turns read-only."""
        loan = self._loan
        if loan is None:
            return
        self._loan = None
        if loan.gen is not None:
            self.loans_published += 1
        elif not loan.ring.closed:
            loan.ring.commit(loan.slot, 0)
        loan.array.setflags(write=False)

    def publish(self, topic: str, body: dict[str, Any], corr: str | None = None) -> int:
        """Send one message; returns its seq. Raises EnvelopeError on a body that cannot be encoded."""
        self._acquire()  # bound once, not ``with``: 0.14 against 0.25 us a message on a 2-CPU VM
        try:
            if self._closed:
                raise zmq.ZMQError(zmq.ENOTSOCK, f"publisher {self.src} is closed")
            seq = self._seq.get(topic, 0)
            ts = _time_ns()
            if self._subs_due == 0:  # a new publisher's first message: the subscriptions already forwarded first
                self._subs_due = ts + SUBSCRIPTIONS_EVERY_NS
                self._drain_subscriptions()
                self._forms.clear()
            forms = self._forms.get(topic)
            if forms is None:
                self._topic_bytes(topic)  # validates it: the batched-only path below has no encoder call to
                forms = self._forms[topic] = self._forms_for(topic)
            # The native gatherer packs a body of plain values itself when only batched readers want the topic
            # (False: it cannot, or it is the Python one): what a stream of small messages to local readers costs.
            out = self._gather_body(forms[5], seq, ts, body, forms[6]) \
                if forms[5] is not None and corr is None and self._loan is None else False
            if out is False:
                self._send_forms(topic, seq, ts, body, corr, forms)
            elif out is not None:
                self._send_batches(out)
            elif not self._armed:
                self._arm()
            self._seq[topic] = seq + 1
            self.sent += 1
            # After the send, not before: reading the socket after a quiet spell costs tens of microseconds
            # (its command queue), which the message must not wait for. The next message sees the change. The
            # window is tested here, not only in the call: a call per message costs 0.1 us.
            if not self._subs_due - SUBSCRIPTIONS_EVERY_NS <= ts < self._subs_due:
                self._read_subscriptions_if_due(ts)
            return seq
        finally:
            self._release()

    def _send_forms(self, topic: str, seq: int, ts: int, body: dict[str, Any], corr: str | None,
                    forms: _Forms) -> None:
        """``publish`` of one message in every form someone wants, the encoder packing it (under the lock)."""
        if forms[2] or forms[4]:
            topic_raw, rec, arrays, in_shm = self._record(topic, ts, body, corr)
            if arrays or in_shm:  # a message with arrays goes alone, after everything gathered before it
                self._send_batches(self._gather.take_all(_monotonic_ns()))
                self._send_batch(topic_raw, seq, [rec], arrays)
            else:
                out = self._gather_add(topic_raw, seq, rec, _monotonic_ns())
                if out is not None:
                    self._send_batches(out)
                elif not self._armed:
                    self._arm()
        elif self._gather.deadline_ns is not None:
            self._send_due()
        if forms[1] or forms[3]:
            local = self._encoder.encode_local(topic, seq, ts, body, corr, self._shm_put, self.shm_threshold)
            if forms[3]:
                self._send_piped(topic, local, forms[3])
            if forms[1]:
                self._send(topic, local)
        loan = self._loan
        if forms[0]:  # an array that was on loan goes as a copy (``_lent``)
            self._send(topic, self._encoder.encode(topic, seq, ts, body, corr))
        if loan is not None and (loan.gen is not None or loan.topic == topic):
            self._give_back_loan()

    def _read_subscriptions_if_due(self, ts: int) -> None:
        """Read the subscriptions forwarded to this publisher if the last read is ``SUBSCRIPTIONS_EVERY_NS``
        old (or the wall clock ``ts`` went back)."""
        if not self._subs_due - SUBSCRIPTIONS_EVERY_NS <= ts < self._subs_due:
            self._subs_due = ts + SUBSCRIPTIONS_EVERY_NS
            if self._drain_subscriptions():
                self._forms.clear()

    def _arm(self) -> None:
        """Something is gathered: have the flusher send it at the deadline (the thread starts on first use)."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name=f"flush-{self.src}", daemon=True)
            self._flusher.start()
        self._armed = True
        self._wake.set()

    def _send_due(self) -> None:
        """Send what is gathered if its time has come. The flusher does not wait for the lock, so every
        message sent under it sends what is due first (``Gatherer.add`` does for a gathered one)."""
        gather = self._gather
        if gather.deadline_ns is not None:
            self._send_batches(gather.due(_monotonic_ns()))

    def _send_batches(self, batches: list[tuple[bytes, int, list[bytes]]] | None) -> None:
        if batches:
            for topic_raw, seq, records in batches:
                self._send_batch(topic_raw, seq, records, ())

    def _send_batch(self, topic_raw: bytes, seq: int, records: list[bytes], arrays: Any) -> None:
        """One batch of this sender's messages of a topic (seqs from ``seq``), to those who want the batched
        form: over the links, and into batch pipes (split into records that fit)."""
        frames = batch_frames(topic_raw, self._encoder.batch_head(seq), records, arrays)
        topic = topic_raw.decode("utf-8")
        forms = self._forms.get(topic)
        if forms is None:
            forms = self._forms[topic] = self._forms_for(topic)
        if forms[4]:
            if (not arrays and len(records) > 1 and _pipe_record_bytes(frames) > RECORD_MAX_BYTES
                    and any(not p.given_up and topic not in p.on_socket for p in forms[4])):  # a pipe takes it
                for first, chunk in self._record_chunks(topic_raw, seq, records):
                    chunk_frames = batch_frames(topic_raw, self._encoder.batch_head(first), chunk)
                    self._write_batch(topic, chunk_frames, len(chunk), forms[4])
            else:
                self._write_batch(topic, frames, len(records), forms[4])
        if not forms[2]:
            return
        nbytes = len(frames[0]) + len(frames[1])
        if arrays:
            nbytes += sum(a.nbytes for a in arrays)
        self._batch_bytes[topic_raw] = self._batch_bytes.get(topic_raw, 0) + nbytes
        if arrays:
            self._send_as(frames[0], frames[1:], 1)
            return
        send = self._send_frame
        send(frames[0], _SNDMORE)
        send(frames[1])

    def _send_as(self, topic_frame: bytes, frames: list[Any], n_plain: int) -> None:
        """One message over the link: ``topic_frame``, then ``frames``, the first ``n_plain`` of them as they are
        and the rest (array frames) copied by ZeroMQ when they lie in a ring this publisher lent (``_lent``)."""
        send = self._send_frame
        send(topic_frame, _SNDMORE)
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            flags = _SNDMORE if i < last else 0
            if i < n_plain:
                send(frame, flags)
            else:
                send(frame, flags, copy=self._lent(frame))

    def _record_chunks(self, topic_raw: bytes, seq: int, records: list[bytes]) -> Iterable[tuple[int, list[bytes]]]:
        """``records`` (seqs from ``seq``) in runs whose batch fits one pipe record: (first seq, run). A record
        that fits none alone is a run of its own (it goes over the link)."""
        head = len(self._encoder.batch_head(seq))
        room = RECORD_MAX_BYTES - _pipe_record_bytes([BATCH_MARKER + topic_raw, b""]) - head - 3  # array16 prefix
        first, run, size = seq, [], 0
        for i, rec in enumerate(records):
            if run and size + len(rec) > room:
                yield first, run
                first, run, size = seq + i, [], 0
            run.append(rec)
            size += len(rec)
        if run:
            yield first, run

    def _write_batch(self, topic: str, frames: list[Any], messages: int, pipes: tuple[PipeOut, ...],
                     own: bool = True) -> None:
        """A batch (``frames``: ``@b/TOPIC``, the batch, array frames) of ``messages`` into each of the batch
        ``pipes``; over the link, with the pipe's own topic frame, to those it cannot go into."""
        written = self.pipes.written
        later = self.pipes.write(pipes, topic, [frames[0], frames[1], b""] if len(frames) == 2 else None, messages)
        if own and self.pipes.written != written:
            topic_raw = frames[0][len(BATCH_MARKER):]
            took = (self.pipes.written - written) // messages
            self._batch_bytes[topic_raw] = (self._batch_bytes.get(topic_raw, 0)
                                            + (len(frames[0]) + len(frames[1])) * took)
        for pipe in later:
            self._send_as(pipe.socket_topic(frames[0]), frames[1:], 1)

    def _flush_loop(self) -> None:
        """The flusher thread: sends what is gathered when the publisher will not (``Gatherer.wait_due``).

        It waits holding no lock (and with the native gatherer without the GIL): a publisher that keeps
        publishing sends what is due with its next message and is never interrupted. (A flusher that looked
        at the lock at each deadline cost a busy publisher a third of its time in thread switches,
        bench/README.md.) It stays armed while messages keep coming, so that a busy publisher does not
        re-arm it (a wake of this thread) after every batch."""
        wake = self._wake
        gather = self._gather
        while True:
            wake.wait()
            due = gather.wait_due()
            with self._lock:
                if self._closed:
                    return
                if due:
                    try:
                        self._send_batches(gather.due(time.monotonic_ns()))
                    except zmq.ZMQError as exc:  # the socket closed under us: nothing left to send to
                        log.warning("batch_flush_failed", src=self.src, error=str(exc))
                        return
                elif gather.deadline_ns is None:  # quiet: the next message gathered arms it again
                    self._armed = False
                    wake.clear()

    def flush(self) -> None:
        """Send everything gathered now (the flusher would within ``gather_ns``)."""
        with self._lock:
            self._send_batches(self._gather.take_all(time.monotonic_ns()))

    def _lent(self, frame: np.ndarray) -> bool:
        """Whether an array frame lies in a ring this publisher lent slots of (ZeroMQ must copy it: a view
        would be sent after the ring came round)."""
        if not self._lent_ranges:
            return False
        at = frame.__array_interface__["data"][0]
        return any(lo <= at < hi for lo, hi in self._lent_ranges)

    def _send(self, topic: str, frames: list[Any]) -> None:
        send = self._send_frame
        if len(frames) == 3:
            self._bytes[topic] = self._bytes.get(topic, 0) + len(frames[0]) + len(frames[1]) + len(frames[2])
            send(frames[0], _SNDMORE)
            send(frames[1], _SNDMORE)
            send(frames[2])
        else:
            self._bytes[topic] = (self._bytes.get(topic, 0) + len(frames[0]) + len(frames[1]) + len(frames[2])
                                  + sum(f.nbytes for f in frames[3:]))
            # Small frames are cheapest copied; array frames go zero-copy.
            send(frames[0], _SNDMORE)
            send(frames[1], _SNDMORE)
            send(frames[2], _SNDMORE)
            last = len(frames) - 1
            for i in range(3, last):
                send(frames[i], _SNDMORE, copy=self._lent(frames[i]))
            send(frames[last], 0, copy=self._lent(frames[last]))

    def _forms_for(self, topic: str) -> _Forms:
        """Which forms of ``topic`` someone subscribed to: (plain, local, batched, the pipes that want the local
        form, the pipes that want the batched form, the topic frame if the batched form is the only one, the
        batch bytes that fit one pipe record). Plain
        unless only subscribers of the other forms are known:
        before any subscription is seen a publisher sends what it always did."""
        plain_t = topic.encode()
        local_t = LOCAL_MARKER + plain_t
        batch_t = BATCH_MARKER + plain_t
        plain = local = batched = False
        for s in self.subscriptions:
            if s[:1] == b"@":
                local = local or local_t.startswith(s)
                batched = batched or batch_t.startswith(s)
            elif plain_t.startswith(s):
                plain = True
        pipes = batch_pipes = ()
        if self.pipes.pipes:
            pipes, batch_pipes = self.pipes.matching(plain_t), self.pipes.matching_batches(plain_t)
        plain = plain or not (local or batched or pipes or batch_pipes)
        batch_only = plain_t if (batched or batch_pipes) and not (plain or local or pipes) else None
        # A batch for a pipe that fits one pipe record is one write, not cut into records message by message.
        max_bytes = None
        if batch_pipes:
            max_bytes = (RECORD_MAX_BYTES - _pipe_record_bytes([BATCH_MARKER + plain_t, b""])
                         - len(self._encoder.batch_head(0)) - 3)  # the batch's array16 prefix
        return plain, local, batched, pipes, batch_pipes, batch_only, max_bytes

    def _send_piped(self, topic: str, frames: list[Any], pipes: tuple[PipeOut, ...], own: bool = True) -> None:
        """The local form ``frames`` of ``topic`` into each of ``pipes``; over the link, with the pipe's own
        topic frame, to those it cannot go into (bus/pipes.py). ``own``: this sender's message (counted in
        ``topic_counts``), not one passed on."""
        written = self.pipes.written
        later = self.pipes.write(pipes, topic, frames)
        if own and self.pipes.written != written:
            size = len(frames[0]) + len(frames[1]) + len(frames[2])
            self._bytes[topic] = self._bytes.get(topic, 0) + size * (self.pipes.written - written)
        if later:
            plain_t = topic.encode()
            for pipe in later:
                self._send_as(pipe.socket_topic(plain_t), frames[1:], 2)

    def _shm_put(self, data: np.ndarray) -> tuple[str, int, int] | None:
        """Write one C-contiguous array's bytes into the ring; None when shared memory is unavailable or off
        (inline)."""
        if self.shm_threshold <= 0:
            return None
        loan = self._loan
        # The array on loan (or a view of all of it): its bytes are in place. Identity first: numpy's address
        # and the flattening cost ~30 us on a paced producer's cold path.
        if loan is not None and (data is loan.array or (data.nbytes == loan.nbytes
                                                        and data.ctypes.data == loan.address)) \
                and not loan.ring.closed:
            if loan.gen is None:
                loan.gen = loan.ring.commit(loan.slot, loan.nbytes)
            return loan.ring.name, loan.slot, loan.gen
        ring = self._ring
        if ring is None or data.nbytes > ring.slot_bytes:
            if self.shm_unavailable is not None:
                return None
            ring = self._new_ring(data.nbytes)
            if ring is None:
                return None
        slot, gen = ring.put(data.reshape(-1).view(np.uint8))
        return ring.name, slot, gen

    def _new_ring(self, nbytes: int) -> ShmRing | None:
        """A (bigger) ring; the old one is removed (a reader still holding it keeps its mapping)."""
        # A loan still being filled stays the producer's: an ordinary array now (its segment is unlinked and
        # no reader was referred to the slot), copied into the new ring when published.
        self._loan = None
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        random = self.iid.partition("-")[2] or "0"
        if not random.isalnum() or len(random) > 16:
            random = "0"
        name = f"sensorium-{os.getpid()}-{random.lower()}-{self._rings_made}"
        self._rings_made += 1
        try:
            self._ring = ShmRing(name, self.shm_slots, max(nbytes, self.shm_threshold), self.shm_dir)
        except ShmUnavailable as exc:
            self.shm_unavailable = str(exc)
            log.warning("shm_unavailable_inline", src=self.src, reason=str(exc),
                        detail="arrays for local subscribers go inline from now on")
            return None
        return self._ring

    def publish_frames(self, frames: list[Any], *, ts: int | None = None, corr: str | None = None) -> int:
        """Send an already encoded message (a replay) under this sender's header:
        body and array frames go out unchanged, ``ts`` (ns) defaults to now."""
        topic = bytes(frames[0]).decode("utf-8")
        seq = self._seq.get(topic, 0)
        out = restamp(frames, Header(self.src, seq, now_ns() if ts is None else ts, corr, iid=self.iid,
                                     host=self.host))
        with self._lock:
            self._seq[topic] = seq + 1
            self._bytes[topic] = self._bytes.get(topic, 0) + sum(len(memoryview(f)) for f in out)
            self._drain_subscriptions()
            forms = self._forms_for(topic)
            # The other forms may carry their arrays inline: no copy into shared memory for a replay.
            if forms[2] or forms[4]:
                self._send_batches(self._gather.take_all(time.monotonic_ns()))
                self._send_converted(out, None, topic, forms)
            else:
                self._send_due()
            if forms[1] or forms[3]:
                local = [LOCAL_MARKER + bytes(out[0]), *out[1:]]
                if forms[3]:
                    self._send_piped(topic, local, forms[3], own=False)  # its bytes are counted above
                if forms[1]:
                    self.sock.send_multipart(local, copy=False)
            if forms[0]:
                self.sock.send_multipart(out, copy=False)
            self.sent += 1
            return seq

    def forward(self, frames: list[Any]) -> None:
        """Pass on another sender's message (what a bridge imports): header, body and arrays as they came,
        in the forms someone subscribed to. For local subscribers, array frames of ``shm_threshold`` bytes or
        more go through this publisher's ring (``local_from_plain``). Not counted in ``topic_counts`` (not
        this sender's messages). Raises EnvelopeError on a message that cannot be put in the local form."""
        with self._lock:
            self._forward(frames)

    def _forward(self, frames: list[Any]) -> None:
        t = frames[0]
        self._read_subscriptions_if_due(time.time_ns())
        self._send_due()
        topic = t.decode("utf-8", "replace") if type(t) is bytes else bytes(t).decode("utf-8", "replace")
        if topic[:1] == "@" or refers_to_shm(frames[2]):
            raise EnvelopeError("not in the plain form (a local-form topic or a shared-memory reference)", topic)
        forms = self._forms.get(topic)
        if forms is None:
            if len(self._forms) > _FORMS_MAX:
                self._forms.clear()
            forms = self._forms[topic] = self._forms_for(topic)
        if forms[2] or forms[4]:
            self._send_converted(frames, self._shm_put, topic, forms)
        send = self._send_frame
        if len(frames) == 3:
            if forms[3]:
                self._send_piped(topic, [LOCAL_MARKER + bytes(t), frames[1], frames[2]], forms[3], own=False)
            if forms[1]:
                send(LOCAL_MARKER + bytes(t), _SNDMORE)
                send(frames[1], _SNDMORE)
                send(frames[2])
            if forms[0]:
                send(t, _SNDMORE)
                send(frames[1], _SNDMORE)
                send(frames[2])
        else:
            if forms[1] or forms[3]:
                local = local_from_plain(frames, self._shm_put, self.shm_threshold)
                if forms[3]:
                    self._send_piped(topic, local, forms[3], own=False)
                if forms[1]:
                    self.sock.send_multipart(local, copy=False)
            if forms[0]:
                self.sock.send_multipart(frames, copy=False)
        self.sent += 1

    def forward_small(self, messages: list[list[bytes]]) -> None:
        """``forward`` for many messages of three frames each (topic, header, body), as bytes, already
        known to be in the plain form (the caller checked: ``refers_to_shm``, a valid topic)."""
        with self._lock:
            self._forward_small(messages)

    def _forward_small(self, messages: list[list[bytes]]) -> None:
        self._read_subscriptions_if_due(time.time_ns())
        self._send_due()
        send = self._send_frame
        all_forms = self._forms
        for t, h, b in messages:
            forms = all_forms.get(t)
            if forms is None:
                if len(all_forms) > _FORMS_MAX:  # topics come from another host: keep the cache bounded
                    all_forms.clear()
                forms = all_forms[t] = self._forms_for(t.decode("utf-8", "replace"))
            if forms[2] or forms[4]:
                self._send_converted([t, h, b], None, t.decode("utf-8", "replace"), forms)
            if forms[3]:
                self._send_piped(t.decode("utf-8", "replace"), [LOCAL_MARKER + t, h, b], forms[3], own=False)
            if forms[1]:
                send(LOCAL_MARKER + t, _SNDMORE)
                send(h, _SNDMORE)
                send(b)
            if forms[0]:
                send(t, _SNDMORE)
                send(h, _SNDMORE)
                send(b)
        self.sent += len(messages)

    def _send_converted(self, frames: list[Any], put: Any, topic: str, forms: _Forms) -> None:
        """Another sender's plain message in the batched form, as a batch of one. One that cannot be put in that
        form (a header or body over the limits, an older writer's oddity) is counted in ``batched_refused``,
        logged once per burst and skipped in that form only."""
        try:
            out = batch_from_plain(frames, put, self.shm_threshold)
        except EnvelopeError as exc:
            self.batched_refused += 1
            self._burst.error("batched_refused", "batched_form_refused", topic=exc.topic, reason=exc.reason,
                              refused_total=self.batched_refused)
            return
        if forms[4]:
            self._write_batch(topic, out, 1, forms[4], own=False)
        if forms[2]:
            self.sock.send_multipart(out, copy=False)

    def topic_counts(self) -> dict[str, dict[str, int]]:
        """Per topic sent: ``out`` (messages) and ``bytes`` (all frames, every form), since this publisher was
        made."""
        return {topic: {"out": n, "bytes": self._bytes.get(topic, 0) + self._batch_bytes.get(topic.encode(), 0)}
                for topic, n in self._seq.items()}

    def drain_subscriptions(self) -> bool:
        """Read subscription changes forwarded by the broker (non-blocking); True if any came. For an owner
        that waits on other sockets: call it now and then (publish reads them too); never poll ``sock``
        yourself, the flusher thread may be sending on it."""
        with self._lock:
            return self._drain_subscriptions()

    def _drain_subscriptions(self) -> bool:
        # Asking for the socket's events first: when nothing came (nearly always), a receive that fails
        # costs a raised zmq.Again on top (measured 77 against 43 us after 17 ms asleep).
        if not self.sock.getsockopt(_EVENTS) & _POLLIN:
            return False
        changed = False
        while True:
            try:
                msg = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                if changed:
                    self._forms.clear()
                return changed
            if msg[:1] == b"\x01":
                self.subscriptions.add(msg[1:])
                self.pipes.note(msg[1:], True)
                changed = True
            elif msg[:1] == b"\x00":
                self.subscriptions.discard(msg[1:])
                self.pipes.note(msg[1:], False)
                changed = True

    def has_subscriber(self, topic: str) -> bool:
        """Someone subscribed to ``topic``, in any form."""
        t = topic.encode()
        local_t, batch_t = LOCAL_MARKER + t, BATCH_MARKER + t
        return any(t.startswith(s) or (s[:1] == b"@" and (local_t.startswith(s) or batch_t.startswith(s)))
                   for s in self.subscriptions) or bool(self.pipes.matching(t) or self.pipes.matching_batches(t))

    def wait_for_subscriber(self, topic: str, timeout_s: float) -> bool:
        """Block until some subscriber's prefix matches ``topic``, or the timeout."""
        end = time.monotonic() + timeout_s
        while True:
            with self._lock:
                self._drain_subscriptions()
                if self.has_subscriber(topic):
                    return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            with self._lock:  # nothing gathered may wait behind this poll: the flusher cannot send meanwhile
                self._send_batches(self._gather.take_all(_monotonic_ns()))
                self.sock.poll(int(min(left, 0.05) * 1000) + 1, zmq.POLLIN)

    def close(self) -> None:
        """Send what is gathered, stop the flusher, close the socket (queued messages go within the linger)."""
        with self._lock:
            if self._closed:
                return
            try:
                self._send_batches(self._gather.take_all(time.monotonic_ns()))
            except zmq.ZMQError as exc:
                log.warning("batch_flush_failed", src=self.src, error=str(exc))
            self._closed = True
            self._give_back_loan()
            self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.sock.close()
        self.pipes.close()
        if self.direct_endpoint is not None:  # ZeroMQ (4.3) leaves the socket file of a closed listener
            self.direct_endpoint.unlink(missing_ok=True)
        if self._ring is not None:
            self._ring.close()
            self._ring = None


@dataclass
class SubscriberStats:
    received: int = 0
    """Messages decoded and delivered."""
    malformed: int = 0
    """Messages that failed to decode: counted and dropped."""
    gaps: int = 0
    """Messages missed, from seq gaps, all senders and topics."""
    resets: int = 0
    """Times one sender's seq went backwards (a restarted writer that sends no instance id)."""
    latched: int = 0
    """Latched values replayed by the broker's cache and delivered (also counted in ``received``)."""
    latched_repeats: int = 0
    """Replayed values skipped: this subscriber already had that value or a newer one."""
    gaps_by_stream: dict[tuple[tuple[str, str, str], str], int] = field(default_factory=dict)
    """Gaps per (sender (host, src, iid), topic)."""
    shm_drops: int = 0
    """Messages dropped because a shared-memory array was overwritten, half-written or gone before it
    was read (a slow reader, a publisher killed mid-write): never delivered as wrong data."""
    local_skipped: int = 0
    """Local-form messages (``@shm/...``) received by a subscriber that did not ask for them (one that
    subscribed to everything without ``shm=True``), and batches for another subscriber's pipe: skipped, not
    malformed."""
    piped: int = 0
    """Messages read from this subscriber's pipe (``pipe=True``; a batch record holds several), delivered or
    counted as the others (a record that is none: one)."""


class Subscriber:
    """Receives and decodes envelopes, filtering exact topics and counting losses.

    ``subscribe(topic)`` delivers exactly that topic; ``subscribe(prefix,
    exact=False)`` delivers every topic starting with ``prefix`` (a prefix
    ending in '.' takes a whole area, '' takes everything).

    ``shm=True`` opts in to the local form (docs/wire.md, section 12): every
    subscription (or one: ``subscribe(topic, shm=True)``) is made for ``@shm/TOPIC``, and arrays a publisher put in
    shared memory arrive as copies taken out of its segment after a
    generation check; an array overwritten before it was read is counted in
    ``stats.shm_drops`` and its message dropped. Only for a process on the
    publishers' host: a recorder, a bridge or an outside tool stays plain
    and gets the bytes inline.

    ``shm_views=True`` (with ``shm``): arrays are read-only views of the
    publisher's memory instead of copies. The validity rule: a view holds
    the publisher's array only until the publisher has written ``shm_slots``
    more large arrays; read what you need, then call ``still_valid(msg)``:
    False means the slot was overwritten while you read (the message then
    counts as a drop, not as received) and what you read must be thrown
    away. Keep a ``copy()`` of anything you hold longer.

    ``batched=True`` (implies ``shm``) opts in to the batched form (envelope
    version 2, docs/wire.md section 13): subscriptions are made for
    ``@b/TOPIC``, and a publisher sends many small messages in one frame,
    which ``recv`` hands out one by one. Senders that only speak the first
    envelope (an outside publisher that does not answer ``@b/``
    subscriptions) are not heard by such a subscription.

    ``direct_dir`` (implies ``shm``; ``endpoint`` must then be None): a
    *direct subscriber* (``bus/direct.py``, docs/wire.md section 14). It
    connects to every publisher of this host that listens in that folder,
    not to the broker, and finds new ones within 0.1 s while it reads
    (``recv``, ``recv_nowait``; a reader that polls on its own waits on
    ``pollables()`` and calls ``look()`` at least that often). It hears only
    such publishers, and no latched replays.

    ``pipe=True`` (with ``direct_dir``): a *pipe subscriber* (``bus/pipes.py``,
    docs/wire.md section 15). Its local-form subscriptions ask publishers to
    write those messages into a FIFO of its own in that folder: no ZeroMQ I/O
    thread on either side (two wake-ups less per message each). Messages
    that do not fit a pipe record still come over the link. With
    ``batched=True`` too, publishers write batches into the pipe, as many
    messages to a record as fit. Read it with
    ``recv`` or ``recv_nowait`` only: a pipe's messages do not wake ``sock``.
    When no pipe can be made (``pipe_unavailable`` says why) it reads as a
    direct subscriber.

    ``recv`` waits in ZeroMQ's receive with the socket's ``RCVTIMEO``, which
    it leaves set: a caller that also receives on ``sock`` directly sets its
    own (a pipe subscriber waits in ``select.poll`` instead).
    """

    MAX_STREAMS = 65_536
    """Bound on tracked (host, src, iid, topic) streams; beyond it tracking starts afresh."""

    def __init__(self, ctx: zmq.Context, endpoint: str | None, topics: Iterable[str] = (), *,
                 prefixes: Iterable[str] = (), hwm: int = DEFAULT_HWM, limits: Limits = DEFAULT_LIMITS,
                 shm: bool = False, shm_views: bool = False, shm_dir: Path = SHM_DIR,
                 batched: bool = False, direct_dir: Path | None = None, pipe: bool = False) -> None:
        if (endpoint is None) == (direct_dir is None):
            raise ValueError("a Subscriber connects to the broker (endpoint) or to direct links (direct_dir): "
                             "one of the two; with both, messages would arrive twice")
        if pipe and direct_dir is None:
            raise ValueError("a pipe (pipe=True) is for a direct subscriber: publishers open it in direct_dir")
        self.limits = limits
        self._batched = batched
        self._ready: deque[Message] = deque()
        """Messages of a received batch not handed out yet."""
        shm = shm or batched or direct_dir is not None
        self._shm_default = shm
        self._shm_views = shm_views
        self._shm_dir = shm_dir
        self._shm: ShmReader | None = ShmReader(shm_dir, views=shm_views) if shm else None
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
        self.direct: DirectLinks | None = None
        """A direct subscriber's links to the publishers of its folder."""
        self._rcvtimeo_ms = -1
        """The socket's receive timeout as last set by ``recv`` (ZeroMQ's default: wait forever)."""
        if endpoint is not None:
            self.sock.connect(endpoint)
        else:  # a link whose publisher is gone is retried until let go: seldom
            self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5_000)
        self.stats = SubscriberStats()
        self.keep_frames = False
        """Keep the received frames in ``Message.frames`` (a recorder's exact copies)."""
        self.deliver_replays = True
        """Deliver the latched values the broker's cache replays (marked ``header.latched``) when they
        are news; False: skip every replay (counted in ``latched_repeats``)."""
        self._latched_topics = latched()
        self._latched_seqs: dict[tuple[str, str, Any], int] = {}
        """(topic, src, key) of latched topics -> seq of the newest value had, live or replayed."""
        self._exact: set[str] = set()
        self._prefixes: list[str] = []
        self._last_seq: dict[tuple[str, str, str, str], int] = {}
        self.senders = SenderBook()
        """Which instance sent last per (host, src): finds two live processes under one name."""
        self._sender_iid = self.senders.current
        self._next_topic: bytes | None = None
        """First frame of the next message, read while finding the end of a lone-frame one."""
        self._wire: dict[tuple[str, bool], set[bytes]] = {}
        """What ``subscribe(topic, exact)`` set on the socket, each form once: ZeroMQ counts subscriptions, and
        one ``unsubscribe`` must undo a topic subscribed twice."""
        self._burst = BurstLog(log)
        self._pipe: PipeIn | None = None
        self.pipe_unavailable: str | None = None
        """Why ``pipe=True`` got no pipe (its subscriptions are then direct ones); None otherwise."""
        if pipe and direct_dir is not None:
            try:
                self._pipe = PipeIn(direct_dir)
            except (ValueError, OSError) as exc:
                self.pipe_unavailable = str(exc)
                log.warning("pipe_unavailable", folder=str(direct_dir), reason=str(exc),
                            detail="local-form messages come over the direct links")
        self._sock_quiet = False
        """A pipe subscriber: the socket's EVENTS said nothing waits, and nothing touched the socket since, so
        its descriptor fires when something comes (``_recv_piped``)."""
        self._sock_fd = self.sock.getsockopt(zmq.FD)
        self._poller = select.poll()
        self._pipe_poller = select.poll()
        """The pipe alone (``waiting``)."""
        if self._pipe is not None:
            self._poller.register(self._pipe.fd, select.POLLIN)
            self._poller.register(self._sock_fd, select.POLLIN)
            self._pipe_poller.register(self._pipe.fd, select.POLLIN)
            self.sock.setsockopt(zmq.SUBSCRIBE, self._pipe.keep_subscription())
        try:
            for t in topics:
                self.subscribe(t)
            for p in prefixes:
                self.subscribe(p, exact=False)
        except BaseException:  # a bad topic: nothing of this subscriber stays behind
            self.close()
            raise
        if direct_dir is not None:
            self.direct = DirectLinks(self.sock, direct_dir)
            self.direct.scan()

    def discover(self) -> bool:
        """A direct subscriber: look for new publishers and let go of gone ones now (``recv`` does every
        0.1 s); True if a link changed. False for a subscriber of the broker."""
        self._sock_quiet = False
        return self.direct.scan() if self.direct is not None else False

    def subscribe(self, topic: str, exact: bool = True, shm: bool | None = None) -> None:
        """``shm``: this subscription in the local form (None: as the subscriber was made)."""
        validate_prefix(topic)
        if exact:
            self._exact.add(topic)
        elif topic not in self._prefixes:
            self._prefixes.append(topic)
        local = self._shm_default if shm is None else shm
        if local and self._shm is None:
            self._shm = ShmReader(self._shm_dir, views=self._shm_views)
        raw = topic.encode()
        if local and self._pipe is not None:
            wire = self._pipe.subscription(raw, batched=self._batched)
        else:
            wire = ((BATCH_MARKER if self._batched else LOCAL_MARKER) if local else b"") + raw
        forms = self._wire.setdefault((topic, exact), set())
        if wire in forms:  # already: a second SUBSCRIBE would need a second UNSUBSCRIBE
            return
        forms.add(wire)
        self._sock_quiet = False
        self.sock.setsockopt(zmq.SUBSCRIBE, wire)

    def unsubscribe(self, topic: str, exact: bool = True) -> None:
        """Undo ``subscribe(topic, exact)``, however often it was called; the socket keeps a form another
        subscription (the same topic as a prefix, or exact) still holds."""
        if exact:
            self._exact.discard(topic)
        elif topic in self._prefixes:
            self._prefixes.remove(topic)
        for wire in self._wire.pop((topic, exact), ()):
            self.sock.setsockopt(zmq.UNSUBSCRIBE, wire)
        self._sock_quiet = False

    def overlapping(self, topic: str, exact: bool = True) -> str | None:
        """One of this subscriber's subscriptions that some message of ``topic`` (exact, or a prefix) would also
        match, as ``subscriptions()`` writes it; None when there is none."""
        for held in self._exact:
            if held == topic or (not exact and held.startswith(topic)):
                return held
        for held in self._prefixes:
            if topic.startswith(held) or (not exact and held.startswith(topic)):
                return held + "*"
        return None

    def wait_subscribed(self, frontend: str, timeout_s: float) -> bool:
        """Block until the broker holds this socket's subscriptions.

        A subscription travels subscriber -> broker -> publishers, in order per
        socket; so once a fresh, unique one reaches a publisher of our own,
        every earlier subscription of this socket is in the broker too, and
        any publisher connecting from now on will honour them.
        """
        if self.direct is not None:
            raise ValueError("a direct subscriber is not connected to a broker: a publisher sees its subscriptions "
                             "itself (Publisher.wait_for_subscriber)")
        marker = f"sys.sync.{os.getpid()}_{uuid.uuid4().hex[:12]}"
        self.sock.setsockopt(zmq.SUBSCRIBE, marker.encode())
        pub = Publisher(self.sock.context, frontend, "sync", linger_ms=0)
        try:
            return pub.wait_for_subscriber(marker, timeout_s)
        finally:
            pub.close()
            self.sock.setsockopt(zmq.UNSUBSCRIBE, marker.encode())

    def subscriptions(self) -> list[str]:
        """Exact topics, then prefixes marked with a trailing '*' (``detect.*``; ``*`` is everything)."""
        return sorted(self._exact) + [p + "*" for p in self._prefixes]

    def wanted(self, topic: str) -> bool:
        return topic in self._exact or self._matches_prefix(topic)

    def pending(self) -> int:
        """Non-zero while something already read from the socket or the pipe is not handed out yet (messages of
        a batch, the pipe's records): a reader that polls ``sock`` before ``recv_nowait`` must not wait then
        (the socket and the pipe show nothing for them). A topic frame kept from a malformed message is not
        counted: the rest of its message is still in the socket, which shows it."""
        return len(self._ready) + (len(self._pipe.records) if self._pipe is not None else 0)

    def pollables(self) -> list[zmq.Socket | int]:
        """What a reader with a poll loop of its own (a ``zmq.Poller``) waits on for ``POLLIN`` before calling
        ``recv_nowait``: the socket, and a pipe subscriber's FIFO (its messages do not wake the socket). Both
        stay readable to a ``zmq.Poller`` while something waits there (``zmq_poll`` reads the socket's
        ``EVENTS``; a FIFO is level-triggered), so the reader may take one message per wake, or call until
        ``zmq.Again``; it must not wait while ``pending()`` is non-zero, and a direct subscriber calls
        ``look()`` at least every 0.1 s. (The socket's ``zmq.FD`` polled directly is edge-triggered: such a
        reader calls until ``zmq.Again``.)"""
        return [self.sock] if self._pipe is None else [self.sock, self._pipe.fd]

    def look(self) -> bool:
        """A direct subscriber whose reader polls on its own: look for new publishers and gone ones if
        ``DISCOVER_EVERY_NS`` passed since the last look (a ``stat`` of the folder when nothing changed, as
        ``recv`` does); True if a link changed. False for a subscriber of the broker."""
        if self.direct is None:
            return False
        listings = self.direct.listings
        changed = self.direct.maybe_scan(_monotonic_ns())
        if changed or self.direct.listings != listings:
            self._sock_quiet = False  # a connect, a disconnect or a look at EVENTS: the socket's signal may be taken
        return changed

    def waiting(self) -> bool:
        """Something is here to be read without waiting (a message, or a malformed one): a handler that keeps
        only the newest message may leave the work to the next one."""
        if self._ready or self._next_topic is not None:
            return True
        self._sock_quiet = False  # reading EVENTS takes the signal of the socket's descriptor (_recv_piped)
        if self.sock.getsockopt(_EVENTS) & _POLLIN:
            return True
        if self._pipe is None:
            return False
        return bool(self._pipe.records) or bool(self._pipe_poller.poll(0))

    def recv(self, timeout_ms: int | None = None) -> Message | None:
        """The next wanted message, or None when nothing came within ``timeout_ms``
        (``0``: do not wait; ``None``: wait forever). Malformed messages are
        counted, logged once per burst and skipped."""
        if self._ready:
            return self._ready.popleft()
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        if self._pipe is not None:
            return self._recv_piped(deadline)
        while True:
            # In slices: a signal makes ZeroMQ start its wait again, and a direct subscriber looks for new
            # publishers before each receive (_take).
            if deadline is None:
                wait_ms = _WAIT_SLICE_MS
            else:
                wait_ms = min(max(int((deadline - time.monotonic()) * 1000 + 0.999), 0), _WAIT_SLICE_MS)
            # The first frame is waited for in ZeroMQ's own receive (the socket's timeout), not in a poll
            # first: one wake-up and one call less per message, which a paced reader pays on every one.
            if wait_ms != self._rcvtimeo_ms:
                self.sock.setsockopt(zmq.RCVTIMEO, wait_ms)
                self._rcvtimeo_ms = wait_ms
            try:
                msg = self._take(0)
            except zmq.Again:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            if msg is not None:
                return msg

    def recv_nowait(self) -> Message | None:
        """One message already waiting: the Message, or None when it was
        malformed or unwanted (counted); raises zmq.Again when none is waiting.

        The topic is received copied; header and body as zmq.Frames, whose
        ``more`` flags mark where the message ends at a fraction of the cost of
        asking the socket; array frames without copying. Only the topic's own
        ``more`` is unknown: a lone-frame message is recognised when the next
        frame looks like a topic (a header never starts with a letter), and
        that frame is kept as the start of the next message, so a malformed
        message never takes a good one with it.
        """
        return self._take(_NOBLOCK)

    def _recv_piped(self, deadline: float | None) -> Message | None:
        """``recv`` of a pipe subscriber: one ``poll`` on the pipe and the socket's ZeroMQ descriptor. That
        descriptor only says "look again" (edge-triggered): the socket's ``EVENTS`` is read after anything that
        may have taken its signal, and then not again until the descriptor fires, so a message on the pipe costs
        one ``poll`` and one ``read`` (``zmq_poll`` would read ``EVENTS`` on every call). The pipe is read before
        the socket: a topic that moved from the pipe to the link stays in order (bus/pipes.py)."""
        pipe = self._pipe
        poll = self._poller.poll
        sock_fd = self._sock_fd
        direct = self.direct
        while True:
            if self._ready:
                return self._ready.popleft()
            if pipe.records:
                msg = self._take_piped()
                if msg is not None:
                    return msg
                continue
            if not self._sock_quiet:
                if self.sock.getsockopt(_EVENTS) & _POLLIN:
                    if self._fill_pipe():
                        continue
                    try:
                        msg = self._take_socket(_NOBLOCK)
                    except zmq.Again:
                        continue
                    if msg is not None:
                        return msg
                    continue
                self._sock_quiet = True
            if direct is not None:
                listings = direct.listings
                if direct.maybe_scan(_monotonic_ns()) or direct.listings != listings:
                    self._sock_quiet = False  # a connect, a disconnect or a look at EVENTS: the signal may be taken
                    continue
            if deadline is None:
                wait_ms = _WAIT_SLICE_MS
            else:
                wait_ms = min(max(int((deadline - time.monotonic()) * 1000 + 0.999), 0), _WAIT_SLICE_MS)
            ready = poll(wait_ms)
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            for fd, _ in ready:
                if fd == sock_fd:
                    self._sock_quiet = False
                else:
                    self._fill_pipe()

    def _fill_pipe(self) -> bool:
        """Read the pipe without waiting; True if a record waits. Bytes that are no record are counted as one
        malformed message."""
        try:
            return self._pipe.fill()
        except RecordError as exc:
            self._malformed(EnvelopeError(str(exc)))
            return bool(self._pipe.records)

    def _take_piped(self) -> Message | None:
        """The oldest record read from the pipe, decoded and accounted as a message of the link would be."""
        topic_raw, head_raw, body_raw = self._pipe.records.popleft()
        self.stats.piped += 1
        if topic_raw[:len(BATCH_MARKER)] == BATCH_MARKER and self._batched:  # a batch: the "header" frame holds it
            if body_raw:
                return self._malformed(EnvelopeError("pipe record of a batch with a third frame"))
            return self._deliver_batch(topic_raw, head_raw, _NO_ARRAYS, piped=True)
        if topic_raw[:len(LOCAL_MARKER)] != LOCAL_MARKER:
            return self._malformed(EnvelopeError("pipe record not in the local form"))
        return self._finish(topic_raw, head_raw, body_raw, _NO_ARRAYS)

    def _take(self, flags: int) -> Message | None:
        """``recv_nowait``, the first frame received with ``flags`` (0: wait up to the socket's timeout)."""
        if self._ready:
            return self._ready.popleft()
        pipe = self._pipe
        if pipe is None:
            return self._take_socket(flags)
        if pipe.records:
            return self._take_piped()
        # The socket asked first, the pipe read after: a message found on the socket was there before the read,
        # so whatever its publisher wrote into the pipe before it is read first (order per topic).
        waiting = self.sock.getsockopt(_EVENTS) & _POLLIN
        self._sock_quiet = not waiting
        if self._fill_pipe():
            return self._take_piped()
        if not waiting:
            raise zmq.Again()
        return self._take_socket(_NOBLOCK)

    def _take_socket(self, flags: int) -> Message | None:
        """``_take`` of what comes over the socket."""
        self._sock_quiet = False
        recv = self.sock.recv
        topic_raw = self._next_topic
        if topic_raw is None:
            if self.direct is not None:  # also under steady traffic: a new publisher is found within 0.1 s
                self.direct.maybe_scan(_monotonic_ns())
            topic_raw = recv(flags)
        else:
            self._next_topic = None
        if topic_raw[:3] == BATCH_MARKER:
            return self._recv_batch(topic_raw)
        if topic_raw[:3] == PIPE_MARKER:  # for a pipe, over the link: a batch goes on as one, if the pipe is ours
            name, _, rest = topic_raw[3:].partition(b"/")
            if rest[:3] == BATCH_MARKER:
                return self._recv_batch(rest, self._pipe is not None and name == self._pipe.name_raw)
        try:
            head = recv(_NOBLOCK, copy=False)
        except zmq.Again:
            return self._malformed(EnvelopeError("message of 1 frame; expected topic, header, body"))
        head_raw = head.bytes
        if head_raw[:1].isalpha() or head_raw[:1] == b"@":  # a topic (of any form): this message had one frame
            if head.more:
                self._next_topic = head_raw
            else:  # the next message is a lone frame too
                self._malformed(EnvelopeError("message of 1 frame; expected topic, header, body"))
            return self._malformed(EnvelopeError("message of 1 frame; expected topic, header, body"))
        if not head.more:
            return self._malformed(EnvelopeError("message of 2 frames; expected topic, header, body"))
        body = recv(_NOBLOCK, copy=False)
        if not body.more:
            body_raw, array_bufs = body.bytes, _NO_ARRAYS
        else:
            body_raw, array_bufs = body.buffer, self._array_frames()
        if topic_raw[:1] == b"@":
            if self._shm is None:
                self.stats.local_skipped += 1
                return None
            if topic_raw[:3] == PIPE_MARKER:  # for a pipe, over the link: the local form, if the pipe is ours
                name, _, plain_t = topic_raw[3:].partition(b"/")
                if self._pipe is None or name != self._pipe.name_raw:
                    self.stats.local_skipped += 1
                    return None
                topic_raw = LOCAL_MARKER + plain_t
        return self._finish(topic_raw, head_raw, body_raw, array_bufs)

    def _finish(self, topic_raw: bytes, head_raw: Any, body_raw: Any, array_bufs: Any) -> Message | None:
        """Decode, account and deliver a received message's frames."""
        shm = self._shm
        if shm is not None and shm.views:
            shm.taken = []
        try:
            msg = decode_parts(topic_raw, head_raw, body_raw, array_bufs, self.limits, shm)
        except EnvelopeError as exc:
            return self._malformed(exc)
        except ShmDropped as exc:
            return self._shm_dropped(exc)
        if shm is not None and shm.views and shm.taken:
            msg.shm_taken = shm.taken
        if self.keep_frames:
            # A recorder keeps bytes, never references: the local form is stored re-encoded inline.
            msg.frames = ([topic_raw, head_raw, body_raw, *array_bufs] if topic_raw[:1] != b"@"
                          else encode(msg.topic, msg.header, msg.body))
        return self._deliver(msg)

    def _recv_batch(self, topic_raw: bytes, wanted: bool = True) -> Message | None:
        """The rest of a batched-form message (``@b/TOPIC``, batch, arrays): its first message; the others
        wait in ``_ready``. ``wanted``: False for a batch sent to another subscriber's pipe (read and skipped)."""
        recv = self.sock.recv
        try:
            batch = recv(_NOBLOCK, copy=False)
        except zmq.Again:
            return self._malformed(EnvelopeError("batched message of 1 frame; expected topic, batch"))
        batch_raw = batch.bytes
        if batch_raw[:1].isalpha() or batch_raw[:1] == b"@":  # a topic: the batch frame is missing
            if batch.more:
                self._next_topic = batch_raw
            else:
                self._malformed(EnvelopeError("message of 1 frame; expected topic, header, body"))
            return self._malformed(EnvelopeError("batched message of 1 frame; expected topic, batch"))
        array_bufs = self._array_frames() if batch.more else _NO_ARRAYS
        if not self._batched or not wanted:
            self.stats.local_skipped += 1
            return None
        return self._deliver_batch(topic_raw, batch_raw, array_bufs)

    def _deliver_batch(self, topic_raw: bytes, batch_raw: Any, array_bufs: Any,
                       piped: bool = False) -> Message | None:
        """Decode, account and deliver a batch (``@b/TOPIC``, its batch frame, its array frames): its first
        wanted message; the others wait in ``_ready``. ``piped``: read from the pipe (its record counted one
        message in ``stats.piped``; the batch's others are counted here)."""
        shm = self._shm
        if shm is not None and shm.views:
            shm.taken = []
        try:
            msgs = decode_batch(topic_raw[len(BATCH_MARKER):], batch_raw, array_bufs, self.limits, shm)
        except EnvelopeError as exc:
            return self._malformed(exc)
        except ShmDropped as exc:
            return self._shm_dropped(exc)
        if piped:
            self.stats.piped += len(msgs) - 1
        first = msgs[0]
        if shm is not None and shm.views and shm.taken:
            first.shm_taken = shm.taken
        topic = first.topic
        if topic not in self._exact and not self._matches_prefix(topic):
            return None
        if self.keep_frames:
            for msg in msgs:  # a recorder keeps bytes: each message re-encoded in the plain form
                msg.frames = encode(msg.topic, msg.header, msg.body)
        if len(msgs) == 1 or topic in self._latched_topics:
            out = self._deliver(first)
            for msg in msgs[1:]:
                if self._deliver(msg) is not None:
                    self._ready.append(msg)
            return out
        # One sender, one topic, consecutive seqs: account the batch as its first and last message.
        self._account(first)
        last = msgs[-1]
        self._last_seq[(last.header.host, last.header.src, last.header.iid, topic)] = last.header.seq
        self.stats.received += len(msgs)
        self._ready.extend(msgs[1:])
        return first

    def _array_frames(self) -> list[Any]:
        """The array frames that end the message under way, uncopied."""
        recv = self.sock.recv
        bufs: list[Any] = []
        more = True
        while more:
            frame = recv(_NOBLOCK, copy=False)
            bufs.append(frame.buffer)
            more = frame.more
        return bufs

    def decode(self, frames: list[Any]) -> Message | None:
        """Decode and account one received multipart message; None if malformed or unwanted."""
        try:
            msg = decode(frames, self.limits)
        except EnvelopeError as exc:
            return self._malformed(exc)
        if self.keep_frames:
            msg.frames = frames
        return self._deliver(msg)

    def still_valid(self, msg: Message) -> bool:
        """After reading a message's shared-memory views (``shm_views``): whether they still held the
        publisher's arrays. False: the message is counted as a drop instead of as received."""
        if msg.shm_taken is _LOST:
            return False
        if not msg.shm_taken or self._shm is None or self._shm.still_valid(msg.shm_taken):
            return True
        msg.shm_taken = _LOST
        self.stats.received -= 1
        self.stats.shm_drops += 1
        return False

    def _shm_dropped(self, exc: ShmDropped) -> None:
        self.stats.shm_drops += 1
        self._burst.error("shm_drop", "shm_array_dropped", reason=exc.reason, segment=exc.segment,
                            slot=exc.slot, topic=getattr(exc, "topic", None), shm_drops_total=self.stats.shm_drops)
        msg = getattr(exc, "message", None)
        if msg is not None and self.wanted(msg.topic):
            self._account(msg)  # its seq is counted here, as a drop, not again as a gap
        return None

    def _malformed(self, exc: EnvelopeError) -> None:
        self.stats.malformed += 1
        self._burst.error("malformed", "malformed_message_dropped", topic=exc.topic, reason=exc.reason,
                          malformed_total=self.stats.malformed)
        return None

    def _deliver(self, msg: Message) -> Message | None:
        topic = msg.topic
        if topic not in self._exact and not self._matches_prefix(topic):
            return None
        key_field = self._latched_topics.get(topic)
        if msg.header.latched:
            return self._replayed(msg, key_field or "")
        if key_field is not None:
            self._remember_latched(latch_key(msg, key_field), msg.header.seq)
        self._account(msg)
        self.stats.received += 1
        return msg

    def _replayed(self, msg: Message, key_field: str) -> Message | None:
        """A value from the broker's cache: outside the seq accounting; delivered when it is news."""
        key = latch_key(msg, key_field)
        if not self.deliver_replays or not is_news(self._latched_seqs.get(key), msg.header.seq):
            self.stats.latched_repeats += 1
            return None
        self._remember_latched(key, msg.header.seq)
        self.stats.latched += 1
        self.stats.received += 1
        return msg

    def _remember_latched(self, key: tuple[str, str, Any], seq: int) -> None:
        if key not in self._latched_seqs and len(self._latched_seqs) >= self.MAX_STREAMS:
            self._latched_seqs.clear()
        self._latched_seqs[key] = seq

    def _matches_prefix(self, topic: str) -> bool:
        for p in self._prefixes:
            if topic.startswith(p):
                return True
        return False

    def duplicates(self) -> list[Duplicate]:
        """Names under which two live processes of one host publish, as this subscriber sees it."""
        return self.senders.duplicates()

    def _account(self, msg: Message) -> None:
        header = msg.header
        key = (header.host, header.src, header.iid, msg.topic)
        if self._sender_iid.get((header.host, header.src)) != header.iid:  # inlined: every message passes here
            self.senders.observe(header.host, header.src, header.iid)
        seq = header.seq
        last = self._last_seq.get(key)
        if last is not None:
            if last + 1 < seq <= last + 1 + MAX_GAP:
                missed = seq - last - 1
                self.stats.gaps += missed
                stream = (header.sender, msg.topic)
                self.stats.gaps_by_stream[stream] = self.stats.gaps_by_stream.get(stream, 0) + missed
            elif seq != last + 1:  # backwards, or a jump too long to be loss
                self.stats.resets += 1
        elif len(self._last_seq) >= self.MAX_STREAMS:
            self._last_seq.clear()
        self._last_seq[key] = seq

    def close(self) -> None:
        self.sock.close()
        if self._pipe is not None:
            self._pipe.close()
        if self._shm is not None:
            self._shm.close()
