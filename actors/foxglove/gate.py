"""The gate: where viewers connect. It checks the token and keeps only the newest message per channel.

foxglove-sdk's server stays on 127.0.0.1 (a free port) and this gate listens
on the configured address: wss:// (TLS) when a certificate is given; with a
token, the token is checked before the WebSocket opens (``?token=TOKEN`` in
the URL, which the Foxglove app passes on, or ``Authorization: Bearer
TOKEN``; a missing or wrong one gets HTTP 401). Then frames are relayed with
the subprotocol the viewer asked for: viewer -> server unchanged; server ->
viewer through ``LatestOnly``: control messages (JSON, service replies) in
order, never dropped, and of the message data only the newest undelivered
message per subscription. The relay reads the SDK's server as fast as it
sends, so the SDK's queue never fills; a slow viewer stalls only its own
writer, and gets the latest frame, not a growing backlog. Its socket's send
buffer is kept small (``SEND_BUFFER_BYTES``) so that the kernel does not
hold seconds of frames either.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import ssl
import socket
import threading
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SEND_BUFFER_BYTES = 256 * 1024
"""Kernel send buffer of a viewer's connection: what may wait beyond the newest message per channel."""
MESSAGE_DATA = 0x01
"""Opcode of a server -> viewer binary message-data frame: subscription id (u32 LE), log time, payload."""

SUBPROTOCOLS = ["foxglove.sdk.v1"]
"""What foxglove-sdk's server speaks (it refuses the older foxglove.websocket.v1)."""


def token_of(path: str, headers: Any) -> str | None:
    """The token a request carries: ``?token=`` in its path, else an ``Authorization: Bearer`` header."""
    given = parse_qs(urlsplit(path).query).get("token")
    if given:
        return given[0]
    auth = headers.get("Authorization", "")
    return auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else None


class LatestOnly:
    """Frames from the server to one viewer: control in order, message data newest-only per subscription."""

    def __init__(self) -> None:
        self.control: deque[bytes | str] = deque()
        self.data: OrderedDict[int, bytes] = OrderedDict()
        self.replaced = 0
        """Messages replaced by a newer one of their subscription before the viewer took them."""
        self.ready = asyncio.Event()

    def put(self, frame: bytes | str) -> None:
        if isinstance(frame, bytes) and len(frame) >= 5 and frame[0] == MESSAGE_DATA:
            sub_id = int.from_bytes(frame[1:5], "little")
            if sub_id in self.data:
                self.replaced += 1
            self.data[sub_id] = frame
        else:
            self.control.append(frame)
        self.ready.set()

    def take(self) -> bytes | str | None:
        if self.control:
            return self.control.popleft()
        if self.data:
            return self.data.popitem(last=False)[1]
        return None


class Gate:
    def __init__(self, host: str, port: int, *, backend_port: int, token: str | None, tls_cert: Path | None,
                 tls_key: Path | None, log: Any) -> None:
        self.host, self.port, self.backend_port, self.token, self.log = host, port, backend_port, token, log
        self.ssl: ssl.SSLContext | None = None
        if tls_cert is not None and tls_key is not None:
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
            self.ssl.load_cert_chain(tls_cert, tls_key)
        self.refused = 0
        self._replaced_before = 0
        self._outboxes: set[LatestOnly] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="foxglove-gate", daemon=True)

    @property
    def viewers(self) -> int:
        return len(self._outboxes)

    @property
    def replaced(self) -> int:
        """Messages slow viewers never got because a newer one of the same channel replaced them."""
        return self._replaced_before + sum(o.replaced for o in list(self._outboxes))

    def start(self) -> "Gate":
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(5.0)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        try:
            server = await serve(self._relay, self.host, self.port, ssl=self.ssl, subprotocols=SUBPROTOCOLS,
                                 process_request=self._check, max_size=None, compression=None)
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it in setup
            self._error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1] if server.sockets else self.port
        self._ready.set()
        async with server:
            await self._stopped.wait()

    def _check(self, connection: ServerConnection, request: Any) -> Any:
        if self.token is None:
            return None
        given = token_of(request.path, request.headers)
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        self.refused += 1
        self.log.warning("viewer_refused", remote=str(connection.remote_address), reason="no token" if given is None
                         else "wrong token")
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "a token is needed: ?token=TOKEN\n")

    async def _relay(self, viewer: ServerConnection) -> None:
        protocols = [viewer.subprotocol] if viewer.subprotocol else SUBPROTOCOLS
        try:
            async with connect(f"ws://127.0.0.1:{self.backend_port}", subprotocols=protocols,  # type: ignore[arg-type]
                               max_size=None, compression=None) as server:
                sock = viewer.transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
                outbox = LatestOnly()

                async def upstream() -> None:
                    async for frame in viewer:
                        await server.send(frame)

                async def from_server() -> None:
                    async for frame in server:
                        outbox.put(frame)

                async def to_viewer() -> None:
                    while True:
                        await outbox.ready.wait()
                        outbox.ready.clear()
                        while (frame := outbox.take()) is not None:
                            await viewer.send(frame)

                self._outboxes.add(outbox)
                tasks = [asyncio.create_task(c()) for c in (upstream, from_server, to_viewer)]
                try:
                    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    for t in pending:
                        t.cancel()
                finally:
                    self._outboxes.discard(outbox)
                    self._replaced_before += outbox.replaced
        except (ConnectionClosed, OSError) as exc:
            self.log.info("viewer_relay_ended", remote=str(viewer.remote_address), reason=repr(exc))
