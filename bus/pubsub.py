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
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import structlog
import zmq

from bus.burstlog import BurstLog
from bus.envelope import (DEFAULT_LIMITS, EnvelopeError, Encoder, Header, Limits, Message, decode, decode_parts,
                          now_ns, restamp)
from bus.senders import Duplicate, SenderBook, new_instance_id, origin_host
from bus.topics import validate_prefix

DEFAULT_HWM = 10_000
"""Messages queued per socket before dropping."""

# Plain ints: pyzmq's enum members cost a conversion on every call of the hot path.
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)

log = structlog.get_logger("bus")


class Publisher:
    """Publishes envelopes from one sender (``src``), numbering each topic's messages.

    The socket is an XPUB connected to the broker's XSUB, so the publisher
    also sees subscriptions and can wait until someone listens. Each
    publisher is one sender: ``host`` (this machine) and a new ``iid``
    (instance id) go into every header. It counts what it sent per topic
    (``topic_counts()``), which heartbeats carry so that tools measure
    rates without listening.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, src: str, *, hwm: int = DEFAULT_HWM,
                 linger_ms: int = 1000, iid: str | None = None, host: str | None = None) -> None:
        self.src = src
        self.iid = new_instance_id() if iid is None else iid
        self.host = origin_host() if host is None else host
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, linger_ms)
        self.sock.connect(endpoint)
        self._seq: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._encoder = Encoder(src, host=self.host, iid=self.iid)
        self.sent = 0
        self.subscriptions: set[bytes] = set()

    def publish(self, topic: str, body: dict[str, Any], corr: str | None = None) -> int:
        """Send one message; returns its seq. Raises EnvelopeError on a body that cannot be encoded."""
        seq = self._seq.get(topic, 0)
        frames = self._encoder.encode(topic, seq, time.time_ns(), body, corr)
        self._seq[topic] = seq + 1
        send = self.sock.send
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
                send(frames[i], _SNDMORE, copy=False)
            send(frames[last], 0, copy=False)
        self.sent += 1
        return seq

    def publish_frames(self, frames: list[Any], *, ts: int | None = None, corr: str | None = None) -> int:
        """Send an already encoded message (a replay) under this sender's header:
        body and array frames go out unchanged, ``ts`` (ns) defaults to now."""
        topic = bytes(frames[0]).decode("utf-8")
        seq = self._seq.get(topic, 0)
        out = restamp(frames, Header(self.src, seq, now_ns() if ts is None else ts, corr, iid=self.iid,
                                     host=self.host))
        self._seq[topic] = seq + 1
        self._bytes[topic] = self._bytes.get(topic, 0) + sum(len(memoryview(f)) for f in out)
        self.sock.send_multipart(out, copy=False)
        self.sent += 1
        return seq

    def topic_counts(self) -> dict[str, dict[str, int]]:
        """Per topic sent: ``out`` (messages) and ``bytes`` (all frames), since this publisher was made."""
        return {topic: {"out": n, "bytes": self._bytes.get(topic, 0)} for topic, n in self._seq.items()}

    def drain_subscriptions(self) -> None:
        """Read subscription changes forwarded by the broker (non-blocking)."""
        while True:
            try:
                msg = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.subscriptions.add(msg[1:])
            elif msg[:1] == b"\x00":
                self.subscriptions.discard(msg[1:])

    def has_subscriber(self, topic: str) -> bool:
        t = topic.encode()
        return any(t.startswith(s) for s in self.subscriptions)

    def wait_for_subscriber(self, topic: str, timeout_s: float) -> bool:
        """Block until some subscriber's prefix matches ``topic``, or the timeout."""
        end = time.monotonic() + timeout_s
        while True:
            self.drain_subscriptions()
            if self.has_subscriber(topic):
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.sock.poll(int(min(left, 0.05) * 1000) + 1, zmq.POLLIN)

    def close(self) -> None:
        self.sock.close()


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
    gaps_by_stream: dict[tuple[tuple[str, str, str], str], int] = field(default_factory=dict)
    """Gaps per (sender (host, src, iid), topic)."""


class Subscriber:
    """Receives and decodes envelopes, filtering exact topics and counting losses.

    ``subscribe(topic)`` delivers exactly that topic; ``subscribe(prefix,
    exact=False)`` delivers every topic starting with ``prefix`` (a prefix
    ending in '.' takes a whole area, '' takes everything).
    """

    MAX_STREAMS = 65_536
    """Bound on tracked (host, src, iid, topic) streams; beyond it tracking starts afresh."""

    def __init__(self, ctx: zmq.Context, endpoint: str, topics: Iterable[str] = (), *,
                 prefixes: Iterable[str] = (), hwm: int = DEFAULT_HWM, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
        self.sock.connect(endpoint)
        self.stats = SubscriberStats()
        self.keep_frames = False
        """Keep the received frames in ``Message.frames`` (a recorder's exact copies)."""
        self._exact: set[str] = set()
        self._prefixes: list[str] = []
        self._last_seq: dict[tuple[str, str, str, str], int] = {}
        self.senders = SenderBook()
        """Which instance sent last per (host, src): finds two live processes under one name."""
        self._sender_iid = self.senders.current
        self._next_topic: bytes | None = None
        """First frame of the next message, read while finding the end of a lone-frame one."""
        self._burst = BurstLog(log)
        for t in topics:
            self.subscribe(t)
        for p in prefixes:
            self.subscribe(p, exact=False)

    def subscribe(self, topic: str, exact: bool = True) -> None:
        validate_prefix(topic)
        if exact:
            self._exact.add(topic)
        elif topic not in self._prefixes:
            self._prefixes.append(topic)
        self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())

    def unsubscribe(self, topic: str, exact: bool = True) -> None:
        """Undo ``subscribe(topic, exact)``; the socket keeps the prefix while the other form still needs it."""
        if exact:
            self._exact.discard(topic)
        elif topic in self._prefixes:
            self._prefixes.remove(topic)
        self.sock.setsockopt(zmq.UNSUBSCRIBE, topic.encode())

    def wait_subscribed(self, frontend: str, timeout_s: float) -> bool:
        """Block until the broker holds this socket's subscriptions.

        A subscription travels subscriber -> broker -> publishers, in order per
        socket; so once a fresh, unique one reaches a publisher of our own,
        every earlier subscription of this socket is in the broker too, and
        any publisher connecting from now on will honour them.
        """
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

    def recv(self, timeout_ms: int | None = None) -> Message | None:
        """The next wanted message, or None when nothing came within ``timeout_ms``
        (``0``: do not wait; ``None``: wait forever). Malformed messages are
        counted, logged once per burst and skipped."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            try:
                msg = self.recv_nowait()
            except zmq.Again:
                if deadline is None:
                    self.sock.poll(None, zmq.POLLIN)
                    continue
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0 or not self.sock.poll(left_ms, zmq.POLLIN):
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
        recv = self.sock.recv
        topic_raw = self._next_topic
        if topic_raw is None:
            topic_raw = recv(_NOBLOCK)
        else:
            self._next_topic = None
        try:
            head = recv(_NOBLOCK, copy=False)
        except zmq.Again:
            return self._malformed(EnvelopeError("message of 1 frame; expected topic, header, body"))
        head_raw = head.bytes
        if head_raw[:1].isalpha():
            if head.more:
                self._next_topic = head_raw
            else:  # the next message is a lone frame too
                self._malformed(EnvelopeError("message of 1 frame; expected topic, header, body"))
            return self._malformed(EnvelopeError("message of 1 frame; expected topic, header, body"))
        if not head.more:
            return self._malformed(EnvelopeError("message of 2 frames; expected topic, header, body"))
        body = recv(_NOBLOCK, copy=False)
        array_bufs: list[Any] = []
        if not body.more:
            body_raw = body.bytes
        else:
            body_raw = body.buffer
            more = True
            while more:
                frame = recv(_NOBLOCK, copy=False)
                array_bufs.append(frame.buffer)
                more = frame.more
        try:
            msg = decode_parts(topic_raw, head_raw, body_raw, array_bufs, self.limits)
        except EnvelopeError as exc:
            return self._malformed(exc)
        if self.keep_frames:
            msg.frames = [topic_raw, head_raw, body_raw, *array_bufs]
        return self._deliver(msg)

    def decode(self, frames: list[Any]) -> Message | None:
        """Decode and account one received multipart message; None if malformed or unwanted."""
        try:
            msg = decode(frames, self.limits)
        except EnvelopeError as exc:
            return self._malformed(exc)
        if self.keep_frames:
            msg.frames = frames
        return self._deliver(msg)

    def _malformed(self, exc: EnvelopeError) -> None:
        self.stats.malformed += 1
        self._burst.error("malformed", "malformed_message_dropped", topic=exc.topic, reason=exc.reason,
                          malformed_total=self.stats.malformed)
        return None

    def _deliver(self, msg: Message) -> Message | None:
        topic = msg.topic
        if topic not in self._exact and not self._matches_prefix(topic):
            return None
        self._account(msg)
        self.stats.received += 1
        return msg

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
            if seq > last + 1:
                missed = seq - last - 1
                self.stats.gaps += missed
                stream = (header.sender, msg.topic)
                self.stats.gaps_by_stream[stream] = self.stats.gaps_by_stream.get(stream, 0) + missed
            elif seq <= last:
                self.stats.resets += 1
        elif len(self._last_seq) >= self.MAX_STREAMS:
            self._last_seq.clear()
        self._last_seq[key] = seq

    def close(self) -> None:
        self.sock.close()
