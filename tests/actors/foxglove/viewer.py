"""A minimal Foxglove WebSocket viewer (``foxglove.sdk.v1``), written from the protocol alone.

Text frames are JSON (``serverInfo``, ``advertise``, ``unadvertise``...);
binary frames start with an opcode: 0x01 message data = subscription id
(u32 LE), log time (u64 LE, ns), payload. Used by the live tests and the
bench: it reads as fast as it can, or (``read_delay_s``) like a slow viewer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import time
from collections import defaultdict, deque
from typing import Any

import websockets

SUBPROTOCOL = "foxglove.sdk.v1"
MESSAGE_DATA = 0x01
SERVICE_CALL_RESPONSE = 0x03
CLIENT_MESSAGE_DATA = 0x01
SERVICE_CALL_REQUEST = 0x02
_DATA_HEAD = struct.Struct("<BIQ")


class Viewer:
    def __init__(self, url: str, *, read_delay_s: float = 0.0, keep: int = 64, rcvbuf: int = 0,
                 **connect_kwargs: Any) -> None:
        """``rcvbuf``: a small kernel receive buffer (bytes), so that a slow reader's backlog shows where it is."""
        self.url = url
        self.rcvbuf = rcvbuf
        self.read_delay_s = read_delay_s
        self.connect_kwargs = connect_kwargs
        self.server_info: dict[str, Any] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        """Topic -> the advertised channel (id, encoding, schemaName, schema, schemaEncoding)."""
        self.services: dict[str, dict[str, Any]] = {}
        self.received: dict[str, deque[tuple[int, bytes]]] = defaultdict(lambda: deque(maxlen=keep))
        self.arrival_ns: dict[str, deque[tuple[int, int]]] = defaultdict(lambda: deque(maxlen=keep))
        """Topic -> (when this viewer read it, its log time), ns."""
        self.counts: dict[str, int] = defaultdict(int)
        self.status: list[dict[str, Any]] = []
        self.replies: dict[int, tuple[bool, bytes | str]] = {}
        """Service call id -> (ok, response payload or failure message)."""
        self._subs: dict[int, str] = {}
        self._changed = asyncio.Event()
        self._ws: Any = None
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> "Viewer":
        if self.rcvbuf:
            host, port = self.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.connect((host, int(port)))
            self.connect_kwargs["sock"] = sock
        self._ws = await websockets.connect(self.url, subprotocols=[SUBPROTOCOL], max_size=None,  # type: ignore[list-item]
                                            compression=None, **self.connect_kwargs)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._ws.close()

    @property
    def subprotocol(self) -> str | None:
        return self._ws.subprotocol

    async def _read(self) -> None:
        async for frame in self._ws:
            if isinstance(frame, bytes):
                if frame[0] == MESSAGE_DATA:
                    _, sub_id, log_time = _DATA_HEAD.unpack_from(frame, 0)
                    topic = self._subs.get(sub_id)
                    if topic is not None:
                        self.received[topic].append((log_time, frame[_DATA_HEAD.size:]))
                        self.arrival_ns[topic].append((time.time_ns(), log_time))
                        self.counts[topic] += 1
                elif frame[0] == SERVICE_CALL_RESPONSE:
                    _, call_id, enc_len = struct.unpack_from("<III", frame, 1)
                    self.replies[call_id] = (True, frame[13 + enc_len:])
                if self.read_delay_s:
                    await asyncio.sleep(self.read_delay_s)
            else:
                msg = json.loads(frame)
                op = msg.get("op")
                if op == "serverInfo":
                    self.server_info = msg
                elif op == "advertise":
                    for ch in msg["channels"]:
                        self.channels[ch["topic"]] = ch
                elif op == "unadvertise":
                    gone = set(msg["channelIds"])
                    self.channels = {t: c for t, c in self.channels.items() if c["id"] not in gone}
                elif op == "advertiseServices":
                    for svc in msg["services"]:
                        self.services[svc["name"]] = svc
                elif op == "serviceCallFailure":
                    self.replies[msg["callId"]] = (False, msg["message"])
                elif op == "status":
                    self.status.append(msg)
            self._changed.set()

    async def wait(self, predicate: Any, timeout_s: float, what: str) -> Any:
        async def until() -> Any:
            while True:
                found = predicate()
                if found:
                    return found
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(until(), timeout_s)
        except asyncio.TimeoutError:
            raise AssertionError(f"viewer: timed out after {timeout_s:g} s waiting for {what}; channels: "
                                 f"{sorted(self.channels)}, counts: {dict(self.counts)}, subscriptions: {self._subs}, "
                                 f"channel ids: {({t: c['id'] for t, c in self.channels.items()})}, "
                                 f"status: {self.status[-5:]}") from None

    async def subscribe(self, *topics: str, timeout_s: float = 30.0) -> None:
        await self.wait(lambda: all(t in self.channels for t in topics), timeout_s, f"channels {topics}")
        subs = []
        for topic in topics:
            sub_id = len(self._subs) + 1
            self._subs[sub_id] = topic
            subs.append({"id": sub_id, "channelId": self.channels[topic]["id"]})
        await self._ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))

    async def unsubscribe_all(self) -> None:
        await self._ws.send(json.dumps({"op": "unsubscribe", "subscriptionIds": list(self._subs)}))
        self._subs.clear()

    async def next_message(self, topic: str, timeout_s: float = 30.0, after: int = 0) -> tuple[int, bytes]:
        await self.wait(lambda: self.counts[topic] > after, timeout_s, f"a message on {topic}")
        return self.received[topic][-1]

    async def advertise(self, channel_id: int, topic: str) -> None:
        """Offer a JSON channel to publish on (the server must allow client publishing)."""
        await self._ws.send(json.dumps({"op": "advertise", "channels": [
            {"id": channel_id, "topic": topic, "encoding": "json", "schemaName": "test"}]}))

    async def publish(self, channel_id: int, body: dict[str, Any]) -> None:
        await self._ws.send(struct.pack("<BI", CLIENT_MESSAGE_DATA, channel_id) + json.dumps(body).encode())

    async def call(self, service: str, request: dict[str, Any], call_id: int, timeout_s: float = 30.0,
                   ) -> tuple[bool, bytes | str]:
        """Call a service with a JSON request: (ok, the response payload or the failure message)."""
        svc = await self.wait(lambda: self.services.get(service), timeout_s, f"service {service}")
        encoding = b"json"
        await self._ws.send(struct.pack("<BIII", SERVICE_CALL_REQUEST, svc["id"], call_id, len(encoding)) + encoding
                            + json.dumps(request).encode())
        return await self.wait(lambda: self.replies.get(call_id), timeout_s, f"the reply to call {call_id}")

    def schema(self, topic: str) -> tuple[str, str, bytes]:
        """(schema name, schema encoding, schema bytes) of an advertised channel."""
        ch = self.channels[topic]
        enc = ch.get("schemaEncoding", "")
        data = base64.b64decode(ch["schema"]) if enc == "protobuf" else ch["schema"].encode()
        return ch["schemaName"], enc, data
