"""The console's WebSocket protocol: requests, errors, who may connect, rate limits. Pure, no I/O.

A request is one JSON object per text frame: ``{"id": ANY, "cmd": NAME, "args": {...}, "token": T}``
(``id`` is echoed in the reply; ``args`` and ``token`` are optional). A reply is
``{"id": ..., "ok": true, "result": ...}`` or ``{"id": ..., "error": {"code": C, "message": M}}``.
Everything the server sends unasked carries ``"type"`` (``message``, ``job``, ``record``, ``practice``).
docs/api.md has one example of each.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Number = (int, float)


class ApiError(Exception):
    """A request that is refused: the reply is ``{"error": {"code", "message"}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_reply(self, req_id: Any = None) -> dict[str, Any]:
        return {"id": req_id, "error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class Arg:
    types: tuple[type, ...]
    required: bool = False
    what: str = ""


def _a(types: Any, required: bool = False, what: str = "") -> Arg:
    return Arg(types if isinstance(types, tuple) else (types,), required, what)


COMMANDS: dict[str, dict[str, Arg]] = {
    "info": {},
    "auth": {},
    "actors": {},
    "alerts": {},
    "subscribe": {"topic": _a(str, True, "an exact topic or a prefix ending in '.'"),
                  "max_hz": _a(Number, False, "messages per second, at most the server's max_rate_hz")},
    "unsubscribe": {"topic": _a(str, True, "a topic given to subscribe")},
    "publish": {"topic": _a(str, True, "a topic under a configured publish prefix"),
                "body": _a(dict, True, "the message body, a JSON object")},
    "ctl": {"actor": _a(str, True, "an actor name"), "command": _a(str, True, "stop, ping, stats or the kind's"),
            "args": _a(dict, False, "the command's arguments"), "timeout_s": _a(Number, False, "0.1..60")},
    "supervisor": {"command": _a(str, True, "status, start, stop or restart"),
                   "actor": _a(str, False, "an actor name (all but status)")},
    "models.list": {},
    "models.history": {"signal": _a(str, True, "a head's signal or backbone")},
    "models.promote": {"signal": _a(str, True, "a head's signal or backbone"),
                       "version": _a((str, int), True, "1, v1 (shipped) or u1 (yours)")},
    "models.rollback": {"signal": _a(str, True, "a head's signal or backbone")},
    "models.cleanup": {"keep": _a(int, False, "versions kept per model, >= 1")},
    "models.train": {"signal": _a(str, True, "the head to train"), "data": _a(str, True, "a dataset folder"),
                     "epochs": _a(int, False, "1..1000"), "extend": _a(bool, False, "start from the active head")},
    "jobs.list": {},
    "jobs.get": {"job": _a(str, True, "a job id")},
    "jobs.cancel": {"job": _a(str, True, "a job id")},
    "gestures.list": {},
    "gestures.delete": {"name": _a(str, True, "a gesture name")},
    "gestures.export": {"names": _a(list, False, "gesture names (default: all)")},
    "gestures.train": {},
    "record.start": {"name": _a(str, True, "the gesture to record"), "target": _a(int, False, "samples, 1..50"),
                     "fresh": _a(bool, False, "drop a paused session of that name"),
                     "countdown_s": _a(Number, False, "seconds before each 'go', 0..10")},
    "record.status": {},
    "record.cancel": {},
    "practice.start": {"gesture": _a(str, True, "the gesture to perform")},
    "practice.stop": {},
    "practice.history": {"gesture": _a(str, False, "one gesture (default: all)")},
}
"""Every command and its arguments (name -> Arg)."""

DESTRUCTIVE = frozenset({"models.promote", "models.rollback", "models.cleanup", "gestures.delete"})
"""Commands that need the token whatever the address (plus ``supervisor`` stop and ``ctl`` stop)."""


def is_destructive(cmd: str, args: dict[str, Any]) -> bool:
    if cmd in DESTRUCTIVE:
        return True
    return cmd in ("supervisor", "ctl") and args.get("command") == "stop"


@dataclass(frozen=True)
class Request:
    id: Any
    cmd: str
    args: dict[str, Any]
    token: str | None = None


def parse_request(data: str | bytes, max_bytes: int) -> Request:
    """One text frame as a Request; ApiError saying what is wrong (the id is recovered when possible)."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise ApiError("too_large", f"request of {size} bytes; the most is {max_bytes}")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ApiError("bad_request", f"a request is a JSON object, got {type(obj).__name__}")
    req_id = obj.get("id")
    unknown = sorted(set(obj) - {"id", "cmd", "args", "token"})
    if unknown:
        raise ApiError("bad_request", f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; "
                       "expected id, cmd, args, token")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise ApiError("unknown_command", f"unknown command {cmd!r:.80}; expected one of {', '.join(COMMANDS)}")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ApiError("bad_args", f"{cmd}: args must be a JSON object, got {type(args).__name__}")
    token = obj.get("token")
    if token is not None and not isinstance(token, str):
        raise ApiError("bad_request", "token must be a string")
    check_args(cmd, args)
    return Request(req_id, cmd, args, token)


def check_args(cmd: str, args: dict[str, Any]) -> None:
    spec = COMMANDS[cmd]
    unknown = sorted(set(args) - set(spec))
    if unknown:
        raise ApiError("bad_args", f"{cmd}: unknown argument(s) {', '.join(map(repr, unknown))[:200]}; "
                       f"expected {', '.join(spec) or 'none'}")
    for name, arg in spec.items():
        if name not in args:
            if arg.required:
                raise ApiError("bad_args", f"{cmd}: missing argument {name!r} ({arg.what})")
            continue
        value = args[name]
        ok = isinstance(value, arg.types) and not (isinstance(value, bool) and bool not in arg.types)
        if not ok:
            want = " or ".join(t.__name__ for t in arg.types)
            raise ApiError("bad_args", f"{cmd}: {name} must be {want} ({arg.what}), got {type(value).__name__}")


def wanted_topic(topic: str, prefix: str) -> bool:
    """Whether a subscription ``prefix`` (an exact topic, or a prefix ending in '.', '' : all) takes ``topic``."""
    return topic == prefix or (prefix.endswith(".") or prefix == "") and topic.startswith(prefix)


def may_publish(topic: str, prefixes: list[str]) -> bool:
    return any(wanted_topic(topic, p) for p in prefixes)


# -- who may connect ------------------------------------------------------------

def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(netloc: str) -> tuple[str, int | None]:
    """``host:port`` of a Host header or an origin's netloc (IPv6 in brackets)."""
    try:
        parts = urlsplit("//" + netloc)
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


def origin_allowed(origin: str | None, host_header: str, scheme: str, allowed: list[str]) -> bool:
    """Whether a WebSocket upgrade with this Origin may proceed.

    No Origin: not a browser (a browser always sends one with a WebSocket), allowed. The console's
    own origin (the Host the request came to, same scheme) and ``allowed`` are allowed; everything
    else (another site a user happens to open, ``null``) is refused.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in (a.rstrip("/").lower() for a in allowed):
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme != scheme or not parts.hostname:
        return False
    default = 443 if scheme == "https" else 80
    host, port = split_host(host_header)
    return parts.hostname == host and (parts.port or default) == (port or default)


def host_allowed(host_header: str, loopback: bool) -> bool:
    """On loopback the Host must be a loopback name (a DNS-rebinding page sends its own name)."""
    if not loopback:
        return True
    host, _ = split_host(host_header)
    return is_loopback_host(host)


def token_matches(given: str | None, token: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), token.encode())


# -- rates ------------------------------------------------------------------------

@dataclass
class TokenBucket:
    """``rate`` requests per second, bursts of ``burst``: ``take()`` False means refuse this one."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def next_send_at(last_sent: float | None, max_hz: float, now: float) -> float:
    """When the latest value of a topic may go to a client that was last sent one at ``last_sent``."""
    if last_sent is None:
        return now
    return max(now, last_sent + 1.0 / max_hz)
