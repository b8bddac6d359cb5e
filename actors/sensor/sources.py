"""Where IMU readings come from: one class per source kind.

Every source offers ``start()``, ``poll() -> list[Readings]`` (what arrived
since the last call), ``stop()``, and a queue of ``StateChange`` events the
actor publishes on ``sensor.state`` (``ConnectionState``). Network sources
receive on their own thread and hand readings over through a deque.

* ``HttpPushSource``: the Sensor Logger push receiver (aiohttp on an
  asyncio loop in one thread, with limits and timeouts that evict slow
  clients). A malformed push gets HTTP 4xx with the reason as JSON, and is
  counted.
* ``UdpSource``: JSON lines in datagrams.
* ``TcpSource``: a client: connects to a JSON-lines server and reconnects
  with exponential backoff (``config.backoff.BackoffPolicy``, the
  supervisor's own) when refused or dropped.
* ``ReplaySource``: a JSON-lines file played back in real time (or faster).
* ``SyntheticSource``: ``synthetic.ScriptedStream``, scripted gestures.

A server that cannot bind (port in use) and a replay file that is missing
retry under the same backoff.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import structlog
from aiohttp import web

from actors.lib.imu.readings import EntryParser, FormatError, Readings
from actors.lib.imu.synthetic import ScriptedStream
from bus.burstlog import BurstLog
from bus.bodies.imu import ConnectionState
from config.backoff import BackoffPolicy
from config.paths import resolve_path

log = structlog.get_logger("sensor")


@dataclass(frozen=True)
class StateChange:
    state: ConnectionState
    previous: ConnectionState | None
    reason: str = ""
    attempt: int = 0
    delay_s: float = 0.0
    address: str = ""


class Source:
    kind = ""

    def __init__(self, parser: EntryParser, stale_after_s: float) -> None:
        self.parser = parser
        self.stale_after_s = stale_after_s
        self.state: ConnectionState | None = None
        self.address = ""
        self.device = ""
        self.changes: deque[StateChange] = deque()
        self.counts: Counter[str] = Counter()
        """Source-level counters: readings, rejected pushes, bad lines..."""
        self._lock = threading.Lock()
        self._inbox: deque[Readings] = deque()
        self._last_data = time.monotonic()

    def set_state(self, state: ConnectionState, reason: str = "", attempt: int = 0, delay_s: float = 0.0) -> None:
        with self._lock:
            if state == self.state and not reason:
                return
            self.changes.append(StateChange(state, self.state, reason, attempt, delay_s, self.address))
            self.state = state

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def deliver(self, readings: list[Readings]) -> None:
        """Called by the receiving thread (or poll) with parsed readings."""
        if not readings:
            return
        self._inbox.extend(readings)
        self._last_data = time.monotonic()
        self.count("readings", sum(len(r) for r in readings))
        if self.state != ConnectionState.STREAMING:
            self.set_state(ConnectionState.STREAMING)

    def start(self) -> None:
        raise NotImplementedError

    def poll(self) -> list[Readings]:
        out = []
        while self._inbox:
            out.append(self._inbox.popleft())
        if self.state == ConnectionState.STREAMING and time.monotonic() - self._last_data > self.stale_after_s:
            self.set_state(ConnectionState.STALE, f"no readings for {self.stale_after_s:g} s")
        return out

    def stop(self) -> None:
        self.set_state(ConnectionState.STOPPED)


class ThreadedSource(Source):
    """A source that receives on its own thread and retries failures with backoff."""

    def __init__(self, parser: EntryParser, stale_after_s: float, backoff: BackoffPolicy) -> None:
        super().__init__(parser, stale_after_s)
        self.backoff = backoff
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source-{self.kind}", daemon=True)
        self._rng = random.Random()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._interrupt()
        self._thread.join(timeout=5.0)
        super().stop()

    def _interrupt(self) -> None:
        """Make a blocking _session() return soon (the stop flag is set)."""

    def _session(self) -> str:
        """Bind or connect and receive until stopped or cut off; returns why it
        ended, raises OSError when it could not start."""
        raise NotImplementedError

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            self.set_state(ConnectionState.CONNECTING)
            began = time.monotonic()
            try:
                reason = self._session()
            except OSError as exc:
                reason = f"{type(exc).__name__}: {exc.strerror or exc}"
            if self._stopping.is_set():
                return
            if time.monotonic() - began >= self.backoff.reset_after_s:
                attempt = 0   # it ran healthy for a while: a fresh streak
            attempt += 1
            delay = self.backoff.delay_s(attempt, self._rng)
            self.count("failures")
            log.warning("source_backoff", source=self.kind, reason=reason, attempt=attempt, delay_s=round(delay, 3))
            self.set_state(ConnectionState.BACKOFF, reason, attempt, round(delay, 3))
            self._stopping.wait(delay)


def read_token_file(path: str) -> str:
    """The token in ``path`` (whitespace stripped); ValueError when it is empty or readable by others."""
    file = resolve_path(path)
    try:
        mode = file.stat().st_mode & 0o077
        token = file.read_text().strip()
    except OSError as exc:
        raise ValueError(f"http.token_file {file}: {exc.strerror or exc}") from None
    if mode:
        raise ValueError(f"http.token_file {file} is readable by other users: chmod 600 it")
    if len(token) < 16:
        raise ValueError(f"http.token_file {file}: the token is shorter than 16 characters")
    return token


def token_matches(request: "web.Request", token: str) -> bool:
    """The request carries ``token`` as ``?token=`` or ``Authorization: Bearer`` (compared in constant time)."""
    given = request.query.get("token", "")
    auth = request.headers.get("Authorization", "")
    if not given and auth.startswith("Bearer "):
        given = auth[len("Bearer "):].strip()
    return hmac.compare_digest(given.encode(), token.encode())


class HttpPushSource(ThreadedSource):
    """The Sensor Logger push receiver: an aiohttp server on its own asyncio loop, in the source's thread.

    One thread whatever the number of clients (asyncio), and nothing a
    client sends can hold it: a request head is limited in line length,
    field length and count (aiohttp's parser; a malformed head, an invalid
    ``Content-Length`` included, gets 400); a connection that has not sent a
    complete request head ``idle_timeout_s`` after connecting, or sits idle
    that long between requests, is closed (slow clients are evicted); a
    body over ``max_body_bytes`` gets 413, and one that does not arrive in
    full within ``body_timeout_s`` (a ``Content-Length`` larger than what is
    sent) gets 408 and the connection is closed. A body that is not a
    Sensor Logger push (not JSON, numbers too large for a float, nesting
    too deep, the wrong shape) gets 400 with the reason as JSON. Every
    rejection is counted (``rejected``, and ``rejected_<code>``) and logged
    once per burst. With ``token_file`` set (required off loopback), a push
    without that token (``?token=`` or ``Authorization: Bearer``) gets 401.
    """

    kind = "http"

    def __init__(self, parser: EntryParser, stale_after_s: float, backoff: BackoffPolicy, settings: Any) -> None:
        super().__init__(parser, stale_after_s, backoff)
        self.s = settings
        self.token = read_token_file(settings.token_file) if settings.token_file else None
        self.last_rejection = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._burst = BurstLog(log)

    def _session(self) -> str:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            return loop.run_until_complete(self._serve())
        finally:
            self._loop = None
            loop.close()

    async def _serve(self) -> str:
        self._stopped = asyncio.Event()
        if self._stopping.is_set():
            return "stopped"
        app = web.Application(client_max_size=self.s.max_body_bytes, handler_args={
            "max_line_size": self.s.max_header_bytes, "max_field_size": self.s.max_header_bytes,
            "max_headers": self.s.max_headers})
        app.router.add_route("*", "/{tail:.*}", self._on_request)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.s.idle_timeout_s,
                               handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.s.host, self.s.port, backlog=self.s.backlog, reuse_address=True)
            await site.start()  # OSError (port in use): the caller backs off and tries again
            host, port = runner.addresses[0][:2]
            self.address = f"{host}:{port}"
            self.set_state(ConnectionState.LISTENING)
            await self._stopped.wait()
        finally:
            self._stopped = None
            await runner.cleanup()
        return "server stopped"

    async def _on_request(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        if request.path != self.s.path:
            return self._answer(404, {"error": f"no such path {request.path!r}; post to {self.s.path!r}"})
        if self.token is not None and not token_matches(request, self.token):
            return self.reject(request, 401, "no valid token: add ?token=... to the push URL", close=True)
        length = request.content_length
        if length is not None and length > self.s.max_body_bytes:
            return self.reject(request, 413, f"body of {length} bytes exceeds {self.s.max_body_bytes}", close=True)
        try:
            async with asyncio.timeout(self.s.body_timeout_s):
                body = await request.read()
        except TimeoutError:
            return self.reject(request, 408, f"body not complete within {self.s.body_timeout_s:g} s "
                               f"(Content-Length {length})", close=True)
        except web.HTTPRequestEntityTooLarge:
            return self.reject(request, 413, f"body exceeds {self.s.max_body_bytes} bytes", close=True)
        try:
            device, readings = self.parser.parse_push(body)
        except FormatError as exc:
            return self.reject(request, 400, str(exc))
        self.device = device or self.device
        self.count("pushes")
        self.deliver(readings)
        return self._answer(200, {"ok": True, "readings": sum(len(r) for r in readings)})

    @staticmethod
    def _answer(code: int, doc: dict[str, Any], close: bool = False) -> web.Response:
        response = web.json_response(doc, status=code)
        if close:
            response.force_close()
        return response

    def reject(self, request: web.Request, code: int, reason: str, close: bool = False) -> web.Response:
        self.count("rejected")
        self.count(f"rejected_{code}")
        self.last_rejection = reason
        self._burst.error(f"push_rejected_{code}", "push_rejected", code=code, reason=reason[:200],
                          client=request.remote or "")
        return self._answer(code, {"error": reason}, close)

    def _interrupt(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None:
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:
                pass  # the loop closed in between: the session has ended already


class UdpSource(ThreadedSource):
    kind = "udp"

    def __init__(self, parser: EntryParser, stale_after_s: float, backoff: BackoffPolicy, settings: Any) -> None:
        super().__init__(parser, stale_after_s, backoff)
        self.s = settings

    def _session(self) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.s.host, self.s.port))
            sock.settimeout(0.2)
            host, port = sock.getsockname()[:2]
            self.address = f"{host}:{port}"
            self.set_state(ConnectionState.LISTENING)
            while not self._stopping.is_set():
                try:
                    data, _peer = sock.recvfrom(65536)
                except socket.timeout:
                    continue
                self._take_lines(data)
        return "stopped"

    def _take_lines(self, data: bytes) -> None:
        readings, bad = self.parser.parse_lines(data.decode("utf-8", errors="replace"), self.kind)
        if bad:
            self.count("bad_lines", len(bad))
            log.warning("bad_lines", source=self.kind, count=len(bad), first=bad[0])
        self.deliver(readings)


class TcpSource(UdpSource):
    """A client of a JSON-lines server: reconnects with backoff when refused or cut off."""

    kind = "tcp"

    def _session(self) -> str:
        self.address = f"{self.s.host}:{self.s.port}"
        with socket.create_connection((self.s.host, self.s.port), timeout=self.s.connect_timeout_s) as sock:
            sock.settimeout(0.2)
            self.set_state(ConnectionState.CONNECTED)
            pending = b""
            while not self._stopping.is_set():
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return "connection closed by the peer"
                pending += data
                complete, _, pending = pending.rpartition(b"\n")
                if complete:
                    self._take_lines(complete)
        return "stopped"


class ReplaySource(Source):
    """A JSON-lines file played back at ``speed`` x real time; loops when asked."""

    kind = "replay"

    def __init__(self, parser: EntryParser, stale_after_s: float, backoff: BackoffPolicy, settings: Any,
                 path: Path) -> None:
        super().__init__(parser, stale_after_s)
        self.s = settings
        self.path = path
        self.address = str(path)
        self.backoff = backoff
        self._rng = random.Random()
        self._attempt = 0
        self._next_try = 0.0
        self._chunks: list[Readings] = []
        self._times: np.ndarray = np.zeros(0)
        self._next = 0
        self._offset = 0.0
        self._started = 0.0
        self._span = 0.0

    def start(self) -> None:
        self.set_state(ConnectionState.CONNECTING)

    def _open(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            self._attempt += 1
            delay = self.backoff.delay_s(self._attempt, self._rng)
            self._next_try = time.monotonic() + delay
            self.set_state(ConnectionState.BACKOFF, f"{self.path}: {exc.strerror}", self._attempt, round(delay, 3))
            return
        chunks, bad = self.parser.parse_lines(text, str(self.path.name))
        if bad:
            self.count("bad_lines", len(bad))
            log.warning("bad_lines", source=self.kind, count=len(bad), first=bad[0])
        chunks = [c for c in chunks if len(c) and np.isfinite(c.t).all()]
        if not chunks:
            self._next_try = float("inf")
            self.set_state(ConnectionState.ENDED, f"{self.path}: no readings")
            return
        self._chunks = chunks
        self._times = np.array([c.t[0] for c in chunks])
        self._span = float(max(c.t[-1] for c in chunks) - self._times.min()) + 0.01
        self._base = float(self._times.min())
        self._started = time.monotonic()
        self.set_state(ConnectionState.LISTENING)

    def poll(self) -> list[Readings]:
        if not self._chunks:
            if time.monotonic() >= self._next_try and self.state != ConnectionState.ENDED:
                self._open()
            return super().poll()
        elapsed = (time.monotonic() - self._started) * self.s.speed
        due: list[Readings] = []
        ended = False
        while not ended:
            if self._next >= len(self._chunks):
                if not self.s.loop:
                    ended = True
                    break
                self._next = 0
                self._offset += self._span
            c = self._chunks[self._next]
            if c.t[0] - self._base + self._offset > elapsed:
                break
            due.append(Readings(c.t + self._offset, c.acc, c.gyro))
            self._next += 1
        self.deliver(due)
        if ended and self.state != ConnectionState.ENDED:
            self.set_state(ConnectionState.ENDED, "end of file")
        return super().poll()


class SyntheticSource(Source):
    """Scripted gestures with noise, on the wall clock (Unix seconds)."""

    kind = "synthetic"

    def __init__(self, parser: EntryParser, stale_after_s: float, settings: Any, rate_hz: float) -> None:
        super().__init__(parser, stale_after_s)
        self.s = settings
        self.rate_hz = rate_hz
        self.address = f"script of {len(settings.script)} gestures"
        self.stream: ScriptedStream | None = None

    def start(self) -> None:
        self.stream = ScriptedStream(self.s.script, rate_hz=self.rate_hz, pause_s=tuple(self.s.pause_s),
                                     seed=self.s.seed, t0=time.time(), shuffle=self.s.shuffle)
        self.set_state(ConnectionState.STREAMING)

    def poll(self) -> list[Readings]:
        assert self.stream is not None
        t, acc, gyro = self.stream.read_until(time.time())
        if len(t):
            self.deliver([Readings(t, acc.astype(np.float64), gyro.astype(np.float64))])
        return super().poll()


def make_source(settings: Any, resolve: Callable[[str], Path]) -> Source:
    """The source ``settings.source`` names, configured from ``config.schema.SensorSettings``."""
    parser = EntryParser(settings.acc_names, settings.gyro_names)
    backoff = BackoffPolicy.from_settings(settings.reconnect)
    kind = settings.source
    if kind == "synthetic":
        return SyntheticSource(parser, settings.stale_after_s, settings.synthetic, settings.rate_hz)
    if kind == "http":
        return HttpPushSource(parser, settings.stale_after_s, backoff, settings.http)
    if kind == "udp":
        return UdpSource(parser, settings.stale_after_s, backoff, settings.udp)
    if kind == "tcp":
        return TcpSource(parser, settings.stale_after_s, backoff, settings.tcp)
    if kind == "replay":
        if not settings.replay.path:
            raise ValueError("sensor source 'replay' needs settings.replay.path")
        return ReplaySource(parser, settings.stale_after_s, backoff, settings.replay, resolve(settings.replay.path))
    raise ValueError(f"unknown sensor source {kind!r}")
