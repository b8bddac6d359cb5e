"""The broker: an XSUB/XPUB proxy that every publisher and subscriber meets at.

It runs libzmq's steerable proxy on its own thread (no GIL held while
forwarding), and beside it the last-value cache of the latched topics
(``bus/latched.py``) on another thread: the proxy's XPUB is
``ZMQ_XPUB_VERBOSE``, so every subscription, a repeated one too, reaches the
cache, which answers with the values it matches. Non-latched traffic never
reaches Python. Both sides have explicit high-water marks; a frame larger than
``max_message_bytes`` makes libzmq drop the sending peer's connection, so a
broken sender cannot make the broker allocate without bound. The proxy counts
the frames and bytes it moves (``stats()``); messages dropped at a full queue
are counted by the subscribers as seq gaps (see ``bus.pubsub``).
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import structlog
import zmq

from bus.endpoints import check_endpoint, ipc_path
from bus.latched import LatchedCache
from bus.pubsub import DEFAULT_HWM

log = structlog.get_logger("broker")

_STAT_NAMES = ("frontend_frames_in", "frontend_bytes_in", "frontend_frames_out", "frontend_bytes_out",
               "backend_frames_in", "backend_bytes_in", "backend_frames_out", "backend_bytes_out")


class Broker:
    def __init__(self, frontend: str, backend: str, *, hwm: int = DEFAULT_HWM,
                 max_message_bytes: int = 64 * 1024 * 1024, ctx: zmq.Context | None = None,
                 latched: bool = True) -> None:
        """``latched``: run the last-value cache of the latched topics (off: a bare proxy)."""
        self.frontend = frontend
        self.backend = backend
        self.hwm = hwm
        self.max_message_bytes = max_message_bytes
        self.ctx = ctx or zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._ctl_addr = f"inproc://broker-ctl-{id(self)}"
        self._ctl: zmq.Socket | None = None
        self._lock = threading.Lock()
        self.latched = latched
        self.cache: LatchedCache | None = None

    def start(self) -> "Broker":
        """Bind both sides (raising EndpointError or ZMQError here, in the caller) and start forwarding."""
        check_endpoint(self.frontend, binding=True)
        check_endpoint(self.backend, binding=True)
        xsub = self.ctx.socket(zmq.XSUB)
        xpub = self.ctx.socket(zmq.XPUB)
        for sock in (xsub, xpub):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, self.hwm)
            sock.setsockopt(zmq.RCVHWM, self.hwm)
        xsub.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        # Pass every subscription upstream, not only the first to a prefix: the cache answers each newcomer.
        xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
        try:
            for sock, endpoint in ((xsub, self.frontend), (xpub, self.backend)):
                _remove_stale_ipc(endpoint)
                sock.bind(endpoint)
        except zmq.ZMQError:
            xsub.close()
            xpub.close()
            raise
        proxy_ctl = self.ctx.socket(zmq.PAIR)
        proxy_ctl.bind(self._ctl_addr)
        self._ctl = self.ctx.socket(zmq.PAIR)
        self._ctl.setsockopt(zmq.LINGER, 0)
        self._ctl.connect(self._ctl_addr)

        def run() -> None:
            try:
                zmq.proxy_steerable(xsub, xpub, None, proxy_ctl)
            except zmq.ContextTerminated:
                pass
            finally:
                for sock in (xsub, xpub, proxy_ctl):
                    sock.close(linger=0)

        self._thread = threading.Thread(target=run, name="broker", daemon=True)
        self._thread.start()
        if self.latched:
            try:
                self.cache = LatchedCache(self.ctx, self.frontend, self.backend, hwm=self.hwm,
                                          max_message_bytes=self.max_message_bytes).start()
            except RuntimeError:
                self.stop()
                raise
        log.info("broker_started", frontend=self.frontend, backend=self.backend, hwm=self.hwm,
                 latched=sorted(self.cache.cache.topics) if self.cache else [])
        return self

    def stats(self, timeout_ms: int = 1000) -> dict[str, int]:
        """Frames and bytes moved so far by each side of the proxy; the cache's ``latched_*`` figures."""
        if self._ctl is None:
            return {}
        with self._lock:
            self._ctl.send(b"STATISTICS")
            if not self._ctl.poll(timeout_ms):
                return {}
            parts = self._ctl.recv_multipart()
        stats = {name: struct.unpack("=Q", part)[0] for name, part in zip(_STAT_NAMES, parts)}
        if self.cache is not None:
            stats.update(self.cache.counters())
        return stats

    def stop(self) -> None:
        if self.cache is not None:
            self.cache.stop()
            self.cache = None
        if self._ctl is None:
            return
        with self._lock:
            self._ctl.send(b"TERMINATE")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._ctl.close()
        self._ctl = None
        for endpoint in (self.frontend, self.backend):
            _remove_stale_ipc(endpoint)
        log.info("broker_stopped")

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remove_stale_ipc(endpoint: str) -> None:
    path: Path | None = ipc_path(endpoint)
    if path is not None and path.is_socket():
        path.unlink()
