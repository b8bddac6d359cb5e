"""Bus-side command-line tools: ``tap`` prints messages, ``inject`` publishes them.

Both speak only to the broker's endpoints, so they work from any terminal or
script while ``sensorium run`` is up.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import time
from typing import Any, Callable, Iterable, TextIO

import numpy as np
import zmq

from bus.envelope import Message
from bus.pubsub import Publisher, Subscriber
from bus.topics import validate_topic


def message_to_json(msg: Message, full: bool = False) -> str:
    """One JSON line: topic, src, seq, ts, corr and body; arrays summarised unless ``full``."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            if full:
                return obj.tolist()
            return {"dtype": str(obj.dtype), "shape": list(obj.shape)}
        if isinstance(obj, (bytes, bytearray, memoryview)):
            data = bytes(obj)
            return {"base64": base64.b64encode(data).decode()} if full else {"bytes": len(data)}
        if isinstance(obj, np.generic):
            return obj.item()
        return repr(obj)

    record = {"topic": msg.topic, "src": msg.header.src, "seq": msg.header.seq, "ts": msg.header.ts,
              "body": msg.body}
    if msg.header.corr is not None:
        record["corr"] = msg.header.corr
    return json.dumps(record, default=default, separators=(",", ":"), allow_nan=True)


def tap(ctx: zmq.Context, frontend: str, backend: str, prefixes: Iterable[str], *, count: int | None = None,
        full: bool = False, out: TextIO = sys.stdout, timeout_s: float | None = None,
        on_listening: Callable[[], None] = lambda: None) -> int:
    """Print matching messages as JSON lines until ``count`` are printed or the timeout.

    ``on_listening`` is called once the broker holds the subscriptions, so a
    script knows from when on nothing is missed. Returns the number printed.
    """
    sub = Subscriber(ctx, backend, prefixes=list(prefixes) or [""])
    printed = 0
    end = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        if sub.wait_subscribed(frontend, 10.0 if timeout_s is None else min(timeout_s, 10.0)):
            on_listening()
        while count is None or printed < count:
            if end is not None and time.monotonic() >= end:
                break
            msg = sub.recv(timeout_ms=200)
            if msg is None or msg.topic.startswith("sys.sync."):
                continue
            out.write(message_to_json(msg, full) + "\n")
            out.flush()
            printed += 1
    finally:
        sub.close()
    return printed


def parse_json_body(text: str) -> dict[str, Any]:
    """The body argument of ``inject``: a JSON object."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"body must be a JSON object, got {type(body).__name__}")
    return body


def inject(ctx: zmq.Context, frontend: str, topic: str, body: dict[str, Any], *, repeat: int = 1,
           rate_hz: float = 0.0, wait_s: float = 2.0, src: str | None = None) -> tuple[int, bool]:
    """Publish ``body`` on ``topic`` ``repeat`` times at ``rate_hz`` (0: as fast as possible).

    Waits up to ``wait_s`` for a subscriber first, because a message published
    before any subscription reaches the new socket is lost (ZeroMQ's slow
    joiner). Returns (messages sent, whether a subscriber was seen).
    """
    validate_topic(topic)
    pub = Publisher(ctx, frontend, src or f"inject@{socket.gethostname()}-{os.getpid()}", linger_ms=5000)
    try:
        listened = pub.wait_for_subscriber(topic, wait_s)
        period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        start = time.monotonic()
        for i in range(repeat):
            if period:
                delay = start + i * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pub.publish(topic, body)
        return repeat, listened
    finally:
        pub.close()
