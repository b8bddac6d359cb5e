"""The Actor base class: one process, one event loop, the bus on both sides.

A subclass reads like a story::

    class Counter(Actor):
        kind = "counter"

        def setup(self) -> None:            # load what is needed
            self.n = 0
            self.every(5.0, self.report)

        @handles("camera.frame")            # one handler per topic
        def on_camera_frame(self, msg: Message) -> None:
            self.n += 1

        def report(self) -> None:
            self.publish("counter.total", {"n": self.n})

        def teardown(self) -> None:         # release it
            ...

The base class owns what every actor shares: the heartbeat (every
``heartbeat_s`` with counters, handler latency percentiles and RSS), counters,
``ctl.<name>`` commands (``stop``, ``ping``, ``stats``, and ``ctl_<cmd>``
methods of the subclass), stopping on SIGTERM/SIGINT, and exiting by itself
when the supervisor that started it is gone.

Lifecycle (pykka's): ``teardown()``, and the heartbeats, run only once
``setup()`` has returned, so both may rely on every attribute setup makes. A
setup that raises ends the process at once: ``ActorExit`` with its code and
reason, any other exception with code 1 and its traceback, logged once.

Handler errors: a message whose envelope or body does not decode
(``EnvelopeError``, or ``BodyError`` from a typed body's ``from_body``) is bad
input, counted under ``dropped`` only and logged once per burst; handlers read
bodies through their typed body classes so that a malformed one raises
``BodyError``. Any other exception from a handler or timer is a bug here,
counted under ``errors`` only and logged with its traceback, the topic, src
and seq once per burst; the actor goes on.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generic, Iterable, TypeVar

import numpy as np
import psutil
import structlog
import zmq
from pydantic import BaseModel

from bus.burstlog import BurstLog
from bus.endpoints import Endpoints
from bus.envelope import EnvelopeError, Limits, Message
from bus.latched import latched
from bus.messages import Body, BodyError, Command, CommandReply, Counters, Heartbeat
from bus.pubsub import Publisher, Subscriber
from bus.shm import DEFAULT_SLOTS, DEFAULT_THRESHOLD_BYTES
from bus.topics import ctl_topic

S = TypeVar("S", bound=BaseModel)
"""The settings model of a kind: ``class VadActor(Actor[VadSettings])`` makes ``self.settings`` a VadSettings."""

SUPERVISOR_PID_ENV = "SENSORIUM_SUPERVISOR_PID"
LATENCY_WINDOW = 1024
"""Handler timings kept for the percentiles in the heartbeat."""


def handles(topic: str) -> Callable[[Callable], Callable]:
    """Mark a method as the handler of ``topic`` (exact), or of every topic
    starting with it when it ends with '.' (``detect.``)."""

    def mark(fn: Callable) -> Callable:
        fn.__handles__ = topic  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class _Timer:
    interval_s: float
    callback: Callable[[], None]
    due: float


def latency_summary(samples_ms: Iterable[float]) -> dict[str, float | int]:
    """``n`` and, when there are samples, p50, p90, p99 and max, rounded to microseconds: the percentiles
    as ``np.percentile``'s default (linear between the two nearest ranks) gives them.

    One ``sorted`` of at most ``LATENCY_WINDOW`` floats: every actor runs this once a heartbeat, cold, where
    ``np.percentile``'s general machinery costs a few hundred microseconds.
    """
    ranked = sorted(samples_ms)
    n = len(ranked)
    if not n:
        return {"n": 0}

    def at(q: float) -> float:
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        return ranked[lo] + (ranked[hi] - ranked[lo]) * (pos - lo)

    return {"n": n, "p50": round(at(0.50), 3), "p90": round(at(0.90), 3), "p99": round(at(0.99), 3),
            "max": round(ranked[-1], 3)}


class ActorExit(Exception):
    """Raised inside an actor to stop it with an exit code (non-zero: a failure)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Actor(Generic[S]):
    kind: ClassVar[str] = ""
    _handlers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                topic = getattr(value, "__handles__", None)
                if topic is not None:
                    found[topic] = attr
        cls._handlers = found

    def __init__(self, name: str, settings: S, endpoints: Endpoints, *, hwm: int = 10_000,
                 limits: Limits | None = None, heartbeat_s: float = 1.0, ctx: zmq.Context | None = None,
                 shm_threshold: int = DEFAULT_THRESHOLD_BYTES, shm_slots: int = DEFAULT_SLOTS) -> None:
        self.name = name
        self.settings: S = settings
        self.endpoints = endpoints
        self.heartbeat_s = heartbeat_s
        self.log = structlog.get_logger(self.kind or "actor")
        self.counters = Counters()
        self.state = "starting"
        self._ctx = ctx or zmq.Context.instance()
        self._hwm = hwm
        self._shm = (shm_threshold, shm_slots)
        self._limits = limits or Limits()
        self._timers: list[_Timer] = []
        self._latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._stop = threading.Event()
        self._signalled: int | None = None  # set by the signal handler alone; see _on_signal
        self._exit_code = 0
        self._started = time.monotonic()
        self._proc = psutil.Process()
        self._burst = BurstLog(self.log)
        self._exact: dict[str, Callable[[Message], None]] = {
            t: getattr(self, m) for t, m in self._handlers.items() if not t.endswith(".")}
        self._prefixed: list[tuple[str, Callable[[Message], None]]] = [
            (t, getattr(self, m)) for t, m in self._handlers.items() if t.endswith(".")]
        self.pub: Publisher | None = None
        self.sub: Subscriber | None = None
        """Everything through the broker, but the local-form subscriptions on a bus with a direct-link folder."""
        self.local_sub: Subscriber | None = None
        """``subscribe(..., shm=True)`` on a bus with a direct-link folder: a pipe subscriber (bus/pipes.py)
        linked straight to this host's publishers, made at the first such subscription."""
        self.view_sub: Subscriber | None = None
        """The same for ``subscribe(..., views=True)``: it hands out read-only views of the publishers' rings."""
        self._local_topics: dict[str, Subscriber] = {}
        self._polled: dict[zmq.Socket | int, Subscriber] = {}
        """What the loop polls for the local subscribers, and whose it is."""
        self._socket_callbacks: dict[zmq.Socket, Callable[[], None]] = {}
        self._poller: zmq.Poller | None = None

    # -- what subclasses write -------------------------------------------

    def setup(self) -> None:
        """Load what the actor needs; runs before the first message."""

    def teardown(self) -> None:
        """Release what setup took; runs once after the loop ends."""

    def heartbeat_extra(self) -> dict[str, Any]:
        """Kind-specific figures for the heartbeat (queue backlog...)."""
        return {}

    # -- what subclasses call ----------------------------------------------

    def every(self, interval_s: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` every ``interval_s`` seconds from the actor's loop."""
        self._timers.append(_Timer(interval_s, callback, time.monotonic() + interval_s))

    def watch(self, sock: zmq.Socket, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable()`` from the actor's loop whenever ``sock`` (a socket of the actor's own, such
        as a bridge's link) has something to read; it should read what is waiting, up to a budget."""
        self._socket_callbacks[sock] = on_readable
        if self._poller is not None:
            self._poller.register(sock, zmq.POLLIN)

    def unwatch(self, sock: zmq.Socket) -> None:
        """Stop watching ``sock`` (before closing it)."""
        if self._socket_callbacks.pop(sock, None) is not None and self._poller is not None:
            self._poller.unregister(sock)

    def subscribe(self, topic: str, handler: Callable[[Message], None] | None = None, *, shm: bool = False,
                  views: bool = False) -> None:
        """Receive ``topic`` (exact, or a prefix ending in '.'), handled by
        ``handler`` when given (for topics known only from settings). ``shm``:
        large arrays of this topic come through the publisher's shared memory
        (copied out; ``bus.pubsub.Subscriber``), for topics of big frames.

        On a bus with a direct-link folder (an ``ipc://`` frontend) such a
        topic comes straight from the publishers of this host, their
        references written into a pipe of this actor's (``local_sub``), not
        through the broker: the publisher's write wakes the actor, one hand-off
        instead of six.
        The broker's local form reached the same senders, the ones that
        answer local-form subscriptions (actors, bridges, replay,
        ``inject``; ``Publisher(direct_dir=folder_for(frontend))`` in code of
        your own); latched replays do not come this way.

        ``views`` (implies ``shm``): no copy; the handler gets read-only
        views of the publisher's ring, valid until it has written ``shm_slots``
        more arrays. Read what you need, then call ``still_valid(msg)``: False
        means the slot was overwritten while you read (the message counts as
        dropped) and what you read must be thrown away. On a bus without a
        direct-link folder the arrays come copied, and ``still_valid`` is True; so they do where this host's
        publishers cannot make direct endpoints there (``direct_link_unavailable`` in the log).

        A topic that overlaps one the actor already receives another way (through the broker, with or
        without views: ``@handles`` topics come through the broker) raises ValueError: each message would
        be delivered twice."""
        assert self.sub is not None and self.pub is not None
        prefix = topic.endswith(".")
        through_pipe = (shm or views) and self.endpoints.direct_dir is not None and self.pub.direct_unavailable is None
        target = ("views" if views else "shm") if through_pipe else "broker"
        for other, name, how in ((self.sub, "broker", "through the broker"), (self.local_sub, "shm", "with shm"),
                                 (self.view_sub, "views", "with views")):
            clash = other.overlapping(topic, exact=not prefix) if other is not None and name != target else None
            if clash is not None:
                raise ValueError(f"{topic!r} overlaps {clash!r}, which this actor already receives {how}: "
                                 "each message would be delivered twice")
        if through_pipe:
            local = self._local_subscriber(views)
            local.subscribe(topic, exact=not prefix)
            self._local_topics[topic] = local
        else:
            self.sub.subscribe(topic, exact=not prefix, shm=shm or views)
        if handler is not None:
            if prefix:
                self._prefixed.append((topic, handler))
            else:
                self._exact[topic] = handler

    def unsubscribe(self, topic: str) -> None:
        """Undo ``subscribe(topic, handler)`` (a topic the actor's own ``@handles`` names stays handled)."""
        assert self.sub is not None
        if topic in self._handlers:
            return
        prefix = topic.endswith(".")
        local = self._local_topics.pop(topic, None)
        if local is not None:
            local.unsubscribe(topic, exact=not prefix)
        else:
            self.sub.unsubscribe(topic, exact=not prefix)
        if prefix:
            self._prefixed = [(t, h) for t, h in self._prefixed if t != topic]
        else:
            self._exact.pop(topic, None)

    def publish(self, topic_or_body: str | Body, body: dict[str, Any] | None = None,
                corr: str | None = None) -> int:
        """Publish a typed body (``publish(Heartbeat(...))``) or a topic and a map."""
        assert self.pub is not None
        if isinstance(topic_or_body, Body):
            topic, payload = topic_or_body.TOPIC, topic_or_body.to_body()
        else:
            topic, payload = topic_or_body, body or {}
        seq = self.pub.publish(topic, payload, corr=corr)
        self.counters.sent += 1
        return seq

    def still_valid(self, msg: Message) -> bool:
        """After reading the views of a message of a ``views=True`` subscription: whether the publisher's
        arrays were still there (False: the message is counted as dropped; throw away what was read)."""
        if self.view_sub is None:
            return True
        drops = self.view_sub.stats.shm_drops
        valid = self.view_sub.still_valid(msg)
        if self.view_sub.stats.shm_drops != drops:  # a drop, not a message received (the subscriber says so too)
            self.counters.received -= 1
        return valid

    def messages_waiting(self) -> bool:
        """Another message is already here (a handler that keeps only the newest frame may leave the work to it)."""
        return any(sub.waiting() for sub in self._subscribers())

    def loan(self, topic: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A writable array to draw the next ``topic`` message's array into, published without a copy for
        local subscribers (``Publisher.loan``)."""
        assert self.pub is not None
        return self.pub.loan(topic, shape, dtype)

    def stop(self, reason: str = "requested", code: int = 0) -> None:
        """Ask the loop to end after the current message; safe from any thread."""
        if not self._stop.is_set():
            self._exit_code = code
            self.log.info("stop_requested", reason=reason, code=code)
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._signalled is not None or self._stop.is_set()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Python runs this between two bytecodes of the main thread, which may be holding a lock the
        # handler would need: the log's (structlog prints under a lock; logging here hung an actor on
        # SIGTERM in CI) or the stop event's. So it only records; the loop logs and stops.
        self._signalled = signum

    def _take_signal(self) -> None:
        if self._signalled is not None and not self._stop.is_set():
            self.stop(signal.Signals(self._signalled).name)

    # -- the loop ------------------------------------------------------------

    def run(self) -> int:
        """Connect, set up, loop until stopped, tear down; returns the exit code."""
        self._install_signal_handlers()
        self._start_watchdog()
        self.pub = Publisher(self._ctx, self.endpoints.frontend, self.name, hwm=self._hwm,
                             shm_threshold=self._shm[0], shm_slots=self._shm[1], direct_dir=self.endpoints.direct_dir)
        self.sub = Subscriber(self._ctx, self.endpoints.backend, hwm=self._hwm, limits=self._limits)
        try:
            self._connect()
            if self._set_up():
                try:
                    self._take_signal()  # one that came during connect or setup: no "ready", straight to teardown
                    if not self.stopping:
                        self.state = "ready"
                        self.log.info("ready", setup_s=round(time.monotonic() - self._started, 3))
                        self._send_heartbeat()
                        self.every(self.heartbeat_s, self._send_heartbeat)
                        self._loop()
                finally:
                    self._tear_down()
        finally:
            self.pub.close()
            for local in self._local_subscribers():
                local.close()
            self.sub.close()
            self.log.info("stopped", code=self._exit_code, **self.counters.to_body())
        return self._exit_code

    def _connect(self) -> None:
        assert self.pub is not None and self.sub is not None
        # A message sent before subscriptions reach a new publisher is lost
        # (ZeroMQ's slow joiner); under a supervisor, wait until it hears
        # heartbeats so that the "ready" one is not lost.
        supervised = bool(os.environ.get(SUPERVISOR_PID_ENV))
        if not self.pub.wait_for_subscriber(Heartbeat.TOPIC, 10.0 if supervised else 0.5) and supervised:
            self.log.warning("no_heartbeat_subscriber", waited_s=10.0)
        if supervised:
            # The broker's cache of latched topics must hear a first state change made in setup()
            # (sensor.state); its subscriptions came with the heartbeat's, so this takes no time.
            for topic in latched():
                self.pub.wait_for_subscriber(topic, 1.0)
        self.sub.subscribe(ctl_topic(self.name))
        for topic in self._handlers:
            self.sub.subscribe(topic, exact=not topic.endswith("."))

    def _set_up(self) -> bool:
        """Run setup(); False, with the exit code set and the error logged once, when it raised.

        Nothing else runs after a failed setup (no teardown, no heartbeat):
        they would meet a half-built actor and bury the real error under theirs.
        """
        self.log.info("setup_begin", pid=os.getpid())
        try:
            self.setup()
        except ActorExit as exc:
            # A reason the kind chose to give (what to install, which file is bad): no traceback needed.
            self._exit_code = exc.code
            self.log.error("setup_failed", error=repr(exc), code=exc.code)
            return False
        except Exception as exc:  # noqa: BLE001 - any setup error is fatal for this process
            self._exit_code = 1
            self.log.error("setup_failed", error=repr(exc), code=1, exc_info=exc)
            return False
        return True

    def _tear_down(self) -> None:
        """teardown() and the last heartbeat; only ever after a setup that succeeded."""
        self.state = "stopping"
        try:
            self.teardown()
        except Exception as exc:  # noqa: BLE001 - teardown must not hide the exit code
            self.counters.errors += 1
            self.log.error("teardown_failed", error=repr(exc), exc_info=exc)
        self._send_heartbeat()

    def _loop(self) -> None:
        assert self.sub is not None and self.pub is not None
        poller = self._poller = zmq.Poller()
        poller.register(self.sub.sock, zmq.POLLIN)
        for item in self._polled:
            poller.register(item, zmq.POLLIN)
        # Not the publisher's socket: its flusher thread may be sending on it. Subscription changes are read
        # by every publish and here, at most every 0.1 s.
        for sock in self._socket_callbacks:
            poller.register(sock, zmq.POLLIN)
        subscriptions_due = 0.0
        while not self.stopping:
            now = time.monotonic()
            next_due = min((t.due for t in self._timers), default=now + 0.2)
            local_subs = self._local_subscribers()
            # Rounded up: a poll that wakes before the timer is due would spin until it is. At least every
            # 0.1 s with a local subscriber: it looks for new publishers of this host then.
            timeout_ms = max(0, min(math.ceil((next_due - now) * 1000), 100 if local_subs else 200))
            if any(local.pending() for local in local_subs):
                timeout_ms = 0  # the rest of a pipe read: the pipe's descriptor no longer shows it
            events = dict(poller.poll(timeout_ms))
            if self.sub.sock in events:
                self._drain(self.sub)
            for local in local_subs:
                if local.pending() or any(self._polled.get(item) is local for item in events):
                    self._drain(local, until_empty=False)
            now = time.monotonic()
            if now >= subscriptions_due:
                subscriptions_due = now + 0.1
                self.pub.drain_subscriptions()
                for local in local_subs:
                    local.look()
            if self._socket_callbacks:
                self._run_socket_callbacks(events)
            self._run_timers()
        self._take_signal()

    def _local_subscriber(self, views: bool) -> Subscriber:
        local = self.view_sub if views else self.local_sub
        if local is not None:
            return local
        local = Subscriber(self._ctx, None, hwm=self._hwm, limits=self._limits, direct_dir=self.endpoints.direct_dir,
                           pipe=True, shm_views=views)
        if views:
            self.view_sub = local
        else:
            self.local_sub = local
        for item in local.pollables():
            self._polled[item] = local
            if self._poller is not None:  # a subscription made from a handler, while the loop polls
                self._poller.register(item, zmq.POLLIN)
        return local

    def _local_subscribers(self) -> list[Subscriber]:
        return [s for s in (self.local_sub, self.view_sub) if s is not None]

    def _subscribers(self) -> list[Subscriber]:
        return ([self.sub] if self.sub is not None else []) + self._local_subscribers()

    def _run_socket_callbacks(self, events: dict[Any, int]) -> None:
        for sock in [s for s in events if s in self._socket_callbacks]:
            callback = self._socket_callbacks.get(sock)
            if callback is None or self.stopping:
                continue
            try:
                callback()
            except ActorExit as exc:
                self.stop(str(exc), exc.code)
            except Exception as exc:  # noqa: BLE001 - a socket handler bug must not kill the actor
                self.counters.errors += 1
                self._burst.error(f"w:{getattr(callback, '__name__', '?')}:{type(exc).__name__}", "socket_handler_failed",
                                  exc_info=exc, handler=getattr(callback, "__name__", "?"), error=repr(exc))

    def _drain(self, sub: Subscriber, budget: int = 256, until_empty: bool = True) -> None:
        """Handle what has arrived at ``sub``, up to ``budget`` messages, so timers stay on time.

        ``until_empty`` False (a pipe subscriber): after a message that came through the pipe, only what ``sub``
        has read already (``pending()``). Its FIFO is read up to 64 KiB at a time, so a burst is pending after
        the first read; one more read that finds nothing costs a look at the link's ``EVENTS`` and an empty
        ``read`` of the FIFO (about 60 us of CPU a message on a paced 2-core machine, bench/README.md), and the
        loop's poll, which comes next anyway, shows whatever else waits: ``zmq_poll`` reads each socket's
        ``EVENTS`` and a FIFO is level-triggered. Messages over the link are read until none is left, as from
        the broker: one empty read is cheaper than a poll per message of a burst."""
        piped = sub.stats.piped
        for _ in range(budget):
            if self.stopping:
                return
            try:
                msg = sub.recv_nowait()
            except zmq.Again:
                return
            if msg is not None:
                self._dispatch(msg)
            if not until_empty and sub.stats.piped != piped and not sub.pending():
                return
            piped = sub.stats.piped

    def _handler_for(self, topic: str) -> Callable[[Message], None] | None:
        handler = self._exact.get(topic)
        if handler is None:
            for prefix, candidate in self._prefixed:
                if topic.startswith(prefix):
                    return candidate
        return handler

    def _dispatch(self, msg: Message) -> None:
        self.counters.received += 1
        if msg.topic == f"ctl.{self.name}":
            self._on_ctl(msg)
            return
        handler = self._handler_for(msg.topic)
        if handler is None:
            return
        t0 = time.perf_counter()
        try:
            handler(msg)
        except ActorExit as exc:
            self.stop(str(exc), exc.code)
        except (EnvelopeError, BodyError) as exc:
            # Bad input, not a fault of ours: dropped only, so that ``errors`` means a bug here.
            self.counters.dropped += 1
            self._burst.error(f"d:{msg.topic}", "message_dropped", topic=msg.topic, src=msg.header.src,
                              seq=msg.header.seq, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the actor
            self.counters.errors += 1
            self._burst.error(f"h:{msg.topic}:{type(exc).__name__}", "handler_failed", exc_info=exc, topic=msg.topic,
                              src=msg.header.src, seq=msg.header.seq, error=repr(exc))
        finally:
            self._latency_ms.append((time.perf_counter() - t0) * 1000.0)

    def _run_timers(self) -> None:
        now = time.monotonic()
        for timer in self._timers:
            if timer.due <= now and not self.stopping:
                # Schedule from the due time so the period does not drift, but
                # never queue up missed ticks after a long handler.
                timer.due = max(timer.due + timer.interval_s, now)
                try:
                    timer.callback()
                except ActorExit as exc:
                    self.stop(str(exc), exc.code)
                except Exception as exc:  # noqa: BLE001 - a timer bug must not kill the actor
                    self.counters.errors += 1
                    self._burst.error(f"t:{timer.callback.__name__}:{type(exc).__name__}", "timer_failed",
                                      exc_info=exc, timer=timer.callback.__name__, error=repr(exc))

    # -- commands ---------------------------------------------------------

    def _on_ctl(self, msg: Message) -> None:
        try:
            command = Command.from_body(msg.body)
        except BodyError as exc:
            self.counters.dropped += 1
            self._burst.error("ctl", "bad_command", seq=msg.header.seq, error=repr(exc))
            return
        try:
            if command.cmd == "stop":
                result: Any = "stopping"
                self.stop(f"ctl stop from {msg.header.src}")
            elif command.cmd == "ping":
                result = "pong"
            elif command.cmd == "stats":
                result = self._heartbeat().to_body()
            elif callable(getattr(self, f"ctl_{command.cmd}", None)):
                result = getattr(self, f"ctl_{command.cmd}")(**command.args)
            else:
                raise ValueError(f"unknown command {command.cmd!r}")
            reply = CommandReply(actor=self.name, cmd=command.cmd, ok=True, result=result)
        except Exception as exc:  # noqa: BLE001 - the caller gets the error as the reply
            self.counters.errors += 1
            reply = CommandReply(actor=self.name, cmd=command.cmd, ok=False, error=repr(exc))
        self.publish(reply, corr=msg.header.corr)

    # -- heartbeat --------------------------------------------------------

    def _heartbeat(self) -> Heartbeat:
        subscriptions: list[str] = []
        duplicates: list[dict[str, Any]] = []
        malformed = 0
        subs = self._subscribers()
        if subs:
            self.counters.gaps = sum(sub.stats.gaps for sub in subs)
            # A frame overwritten in shared memory before it was read is a drop like a malformed one.
            malformed = sum(sub.stats.malformed + sub.stats.shm_drops for sub in subs)
            every = [t for sub in subs for t in sub.subscriptions()]
            subscriptions = sorted({t for t in every if not t.endswith("*")}) + list(dict.fromkeys(
                t for t in every if t.endswith("*")))
            for sub in subs:  # the same two senders may be seen by both subscribers
                duplicates += [d for d in (d.to_body() for d in sub.duplicates()) if d not in duplicates]
        counters = self.counters.to_body()
        counters["dropped"] += malformed
        return Heartbeat(state=self.state, pid=os.getpid(), uptime=round(time.monotonic() - self._started, 3),
                         counters=counters, latency_ms=latency_summary(self._latency_ms),
                         rss=self._proc.memory_info().rss, kind=self.kind,
                         extra=self.heartbeat_extra(), topics=self.pub.topic_counts() if self.pub else {},
                         subscriptions=subscriptions, duplicates=duplicates)

    def _send_heartbeat(self) -> None:
        self.publish(self._heartbeat())

    # -- process-level plumbing --------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _start_watchdog(self) -> None:
        """Exit when the supervisor that started us is gone: no orphans.

        A thread, so that it also works while setup() loads a model or a
        handler hangs. It asks for a clean stop first and forces the exit if
        the loop does not end within a few seconds.
        """
        sup = os.environ.get(SUPERVISOR_PID_ENV)
        if not sup:
            return
        sup_pid = int(sup)

        def watch() -> None:
            while os.getppid() == sup_pid:
                time.sleep(0.25)
            # Our stdout/stderr are pipes to the dead supervisor: a log line
            # would raise BrokenPipeError, so point them at /dev/null first.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            self.stop("supervisor gone", code=0)
            time.sleep(3.0)
            os._exit(0)

        threading.Thread(target=watch, name="supervisor-watchdog", daemon=True).start()
