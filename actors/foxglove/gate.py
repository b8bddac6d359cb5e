"""The token gate: the only way the live view is reached off loopback.

foxglove-sdk's server has no access control, so when a token is configured
it stays on 127.0.0.1 and this gate listens on the configured address
instead: wss:// (TLS) when a certificate is given, the token checked before
the WebSocket opens (``?token=TOKEN`` in the URL, which the Foxglove app
passes on, or ``Authorization: Bearer TOKEN``; a wrong one gets HTTP 401),
then every frame relayed both ways unchanged, with the subprotocol the
viewer asked for. A slow remote viewer stalls only its own relay: the SDK's
queue for that connection then drops its oldest messages.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SUBPROTOCOLS = ["foxglove.sdk.v1"]
"""What foxglove-sdk's server speaks (it refuses the older foxglove.websocket.v1)."""


def token_of(path: str, headers: Any) -> str | None:
    """The token a request carries: ``?token=`` in its path, else an ``Authorization: Bearer`` header."""
    given = parse_qs(urlsplit(path).query).get("token")
    if given:
        return given[0]
    auth = headers.get("Authorization", "")
    return auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else None


class TokenGate:
    def __init__(self, host: str, port: int, *, backend_port: int, token: str, tls_cert: Path | None,
                 tls_key: Path | None, log: Any) -> None:
        self.host, self.port, self.backend_port, self.token, self.log = host, port, backend_port, token, log
        self.ssl: ssl.SSLContext | None = None
        if tls_cert is not None and tls_key is not None:
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
            self.ssl.load_cert_chain(tls_cert, tls_key)
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="foxglove-gate", daemon=True)

    def start(self) -> "TokenGate":
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
                async def pipe(src: Any, dst: Any) -> None:
                    async for frame in src:
                        await dst.send(frame)

                tasks = [asyncio.create_task(pipe(viewer, server)), asyncio.create_task(pipe(server, viewer))]
                _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in pending:
                    t.cancel()
        except (ConnectionClosed, OSError) as exc:
            self.log.info("viewer_relay_ended", remote=str(viewer.remote_address), reason=repr(exc))
