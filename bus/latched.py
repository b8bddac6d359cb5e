"""Latched topics: state you can see when you arrive.

A topic is latched when its body class says ``LATCHED = True`` (``bus.messages``,
``bus/bodies/``): a source's connection state (``sensor.state``), the set of
active alerts (``monitor.active_alerts``), each actor's state (``sys.actor``, one
value per ``actor``). ``latched_topics()`` lists them; nothing else keeps a
list.

The broker's process keeps the last value of each (topic, sender, key) in a
``LastValueCache`` and, like the zguide's last-value cache or ROS 2's
transient-local durability, sends the values a new subscription matches as
soon as it arrives. ``LatchedCache`` is that cache on its own thread, beside
libzmq's proxy (which keeps forwarding everything else without Python):

* a SUB on the broker's XPUB, subscribed to the latched topics only, stores
  each value (its wire frames, the header marked ``latched: true``);
* an XPUB connected to the broker's XSUB sees every subscription (the
  broker's XPUB is ``ZMQ_XPUB_VERBOSE``, so a repeated one too) and sends the
  stored values whose topic starts with it, through the broker.

The broker fans a replay out to every subscriber of that topic, not only the
new one; ``Subscriber`` passes a replay on only when it is newer than what it
already had for that (sender, topic, key) (``is_news``), and never counts one
as a gap or a restart.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import threading
from dataclasses import dataclass
from typing import Any, Mapping

import structlog
import zmq

from bus import bodies
from bus.burstlog import BurstLog
from bus.batched import batch_from_plain
from bus.envelope import BATCH_MARKER, LOCAL_MARKER, EnvelopeError, Message, mark_latched
from bus.messages import Body

log = structlog.get_logger("latched")

LatchKey = tuple[str, str, Any]
"""(topic, src, value of the body's LATCH_KEY field or None)."""


def latched_topics() -> dict[str, str]:
    """Every latched topic and its ``LATCH_KEY`` ('' : one value per sender), from the body classes
    of ``bus.messages`` and every module of ``bus.bodies`` (where every topic's schema lives; a class
    elsewhere does not count, so the answer never depends on what else was imported)."""
    for module in pkgutil.iter_modules(bodies.__path__):
        importlib.import_module(f"{bodies.__name__}.{module.name}")
    found: dict[str, str] = {}
    stack = list(Body.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.LATCHED and cls.TOPIC and cls.__module__.startswith("bus."):
            found[cls.TOPIC] = cls.LATCH_KEY
    return found


_LATCHED: dict[str, str] | None = None


def latched() -> dict[str, str]:
    """``latched_topics()``, worked out once per process."""
    global _LATCHED
    if _LATCHED is None:
        _LATCHED = latched_topics()
    return _LATCHED


def latch_key(msg: Message, key_field: str) -> LatchKey:
    """Which value of its topic ``msg`` is: per sender, and per ``key_field`` of the body when set."""
    return msg.topic, msg.header.src, (_hashable(msg.body.get(key_field)) if key_field else None)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def is_news(had_seq: int | None, seq: int) -> bool:
    """Whether a replayed value (``seq``) tells a subscriber something: it has no value of that
    (topic, sender, key) yet, or only an older one. A live message newer than the replay may
    overtake it on the way (they come from different sockets); the replay is then stale."""
    return had_seq is None or seq > had_seq


@dataclass
class CacheStats:
    values: int = 0
    """Values held now."""
    stored: int = 0
    """Latched messages stored (each replaces the previous value of its key)."""
    replays: int = 0
    """Values sent to new subscribers."""
    malformed: int = 0
    """Latched-topic messages that did not decode: counted and not stored."""
    refused: int = 0
    """New keys refused because the cache was full (``max_values``)."""
    dropped: int = 0
    """Replays not sent: the queue to the broker was full."""


class LastValueCache:
    """The last value of each (topic, src, key), as ready-to-send frames marked latched. Pure: no sockets."""

    def __init__(self, topics: Mapping[str, str], max_values: int = 4096) -> None:
        self.topics = dict(topics)
        self.max_values = max_values
        self.stats = CacheStats()
        self._values: dict[LatchKey, list[bytes]] = {}

    def store(self, msg: Message, frames: list[Any]) -> bool:
        """Keep ``msg`` (received as ``frames``) as the value of its key; False when not kept
        (not a latched topic, a replay, a bad header, or the cache full with a new key)."""
        key_field = self.topics.get(msg.topic)
        if key_field is None or msg.header.latched:
            return False
        key = latch_key(msg, key_field)
        if key not in self._values and len(self._values) >= self.max_values:
            self.stats.refused += 1
            return False
        try:
            marked = mark_latched(frames, msg.topic)
        except EnvelopeError:
            self.stats.malformed += 1
            return False
        self._values[key] = marked
        self.stats.stored += 1
        self.stats.values = len(self._values)
        return True

    def matching(self, prefix: bytes) -> list[list[bytes]]:
        """The values a subscription to ``prefix`` receives (ZeroMQ prefix match on the topic frame). A
        local-form subscription (``@shm/PREFIX``: a shared-memory subscriber, a bridge's exports) gets them in
        the local form, their arrays inline (docs/wire.md, section 12); a batched-form one (``@b/PREFIX``) each
        as a batch of one (section 13)."""
        if prefix.startswith(BATCH_MARKER):
            plain = prefix[len(BATCH_MARKER):]
            out = []
            for frames in self._values.values():
                if frames[0].startswith(plain):
                    try:
                        out.append(batch_from_plain(frames))
                    except EnvelopeError as exc:  # a value at a limit that its repacked header passes: not replayed
                        self.stats.malformed += 1
                        log.warning("latched_batched_form_refused", topic=exc.topic, reason=exc.reason)
            return out
        if prefix.startswith(LOCAL_MARKER):
            plain = prefix[len(LOCAL_MARKER):]
            return [[LOCAL_MARKER + frames[0], *frames[1:]] for frames in self._values.values()
                    if frames[0].startswith(plain)]
        return [frames for frames in self._values.values() if frames[0].startswith(prefix)]

    def subscriptions(self) -> list[str]:
        """What the cache subscribes to: each latched topic (checked exactly after receipt)."""
        return sorted(self.topics)


class LatchedCache:
    """The last-value cache of one broker, on its own thread (``bus.broker.Broker`` starts it)."""

    def __init__(self, ctx: zmq.Context, frontend: str, backend: str, *, topics: Mapping[str, str] | None = None,
                 hwm: int = 10_000, max_message_bytes: int = 64 * 1024 * 1024, max_values: int = 4096) -> None:
        self.ctx = ctx
        self.frontend = frontend
        self.backend = backend
        self.hwm = hwm
        self.max_message_bytes = max_message_bytes
        self.cache = LastValueCache(latched() if topics is None else topics, max_values)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._burst = BurstLog(log)
        self._sub_malformed = 0

    def counters(self) -> dict[str, int]:
        """The cache's figures for the broker's statistics, under ``latched_*``."""
        stats = dataclasses.asdict(self.cache.stats)
        stats["malformed"] += self._sub_malformed
        return {f"latched_{name}": value for name, value in stats.items()}

    def start(self, timeout_s: float = 10.0) -> "LatchedCache":
        """Start the thread; returns once its subscriptions are in the broker, so no value published
        from now on is missed. Raises RuntimeError when it could not get there."""
        self._thread = threading.Thread(target=self._run, name="broker-latched", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the latched-topic cache did not start: {self._error or 'timed out'}")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        from bus.envelope import Limits  # noqa: PLC0415
        from bus.pubsub import Subscriber  # noqa: PLC0415 - pubsub imports this module

        sub = Subscriber(self.ctx, self.backend, self.cache.subscriptions(), hwm=self.hwm,
                         limits=Limits(max_message_bytes=self.max_message_bytes))
        sub.keep_frames = True
        sub.deliver_replays = False
        xpub = self.ctx.socket(zmq.XPUB)
        xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
        xpub.setsockopt(zmq.SNDHWM, self.hwm)
        xpub.setsockopt(zmq.LINGER, 0)
        try:
            xpub.connect(self.frontend)
            if not sub.wait_subscribed(self.frontend, 10.0):
                raise RuntimeError(f"subscriptions never reached the broker at {self.backend}")
            self._ready.set()
            poller = zmq.Poller()
            poller.register(sub.sock, zmq.POLLIN)
            poller.register(xpub, zmq.POLLIN)
            while not self._stop.is_set():
                events = dict(poller.poll(200))
                if sub.sock in events:
                    self._store_all(sub)
                if xpub in events:
                    self._replay_all(xpub)
        except zmq.ContextTerminated:
            pass
        except Exception as exc:  # noqa: BLE001 - reported to start() or logged: the proxy goes on
            self._error = exc
            log.error("latched_cache_failed", error=repr(exc), exc_info=exc)
            self._ready.set()
        finally:
            sub.close()
            xpub.close(linger=0)

    def _store_all(self, sub: Any) -> None:
        while True:
            try:
                msg = sub.recv_nowait()
            except zmq.Again:
                return
            if msg is not None and msg.frames is not None:
                self.cache.store(msg, msg.frames)
            self._sub_malformed = sub.stats.malformed  # counted and logged by the Subscriber

    def _replay_all(self, xpub: zmq.Socket) -> None:
        while True:
            try:
                event = xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[:1] != b"\x01":
                continue  # an unsubscription
            for frames in self.cache.matching(event[1:]):
                try:
                    xpub.send_multipart(frames, zmq.NOBLOCK)
                    self.cache.stats.replays += 1
                except zmq.Again:
                    self.cache.stats.dropped += 1
                    self._burst.error("replay_dropped", "latched_replay_dropped", topic=frames[0].decode(),
                                      reason="queue to the broker full", dropped_total=self.cache.stats.dropped)
