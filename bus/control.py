"""The supervisor's control protocol: one msgpack map per request and reply.

Requests are ``{"cmd": "status" | "start" | "stop" | "restart", "actor": NAME,
"wait_s": S}`` (``wait_s``, optional: answer within S seconds whatever the
state then); replies are ``{"ok": bool, ...}`` with ``error`` when not ok. A
start or restart is ok only once the actor is running: one that ends failed,
exited or in backoff is an error naming the state (``running`` says which). The server side
is a ROUTER socket so that slow commands (stop) can be answered later.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import zmq


class ControlError(RuntimeError):
    """The supervisor could not be reached or refused the command."""


def pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(data, raw=False, max_str_len=1 << 20, max_bin_len=0, max_array_len=10_000,
                              max_map_len=10_000, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ControlError(f"malformed control message: {exc}") from exc
    if not isinstance(obj, dict):
        raise ControlError("malformed control message: not a map")
    return obj


def request(endpoint: str, cmd: str, timeout_s: float = 5.0, **args: Any) -> dict[str, Any]:
    """Send one command and wait for its reply; raises ControlError on timeout or refusal."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(pack({"cmd": cmd, **args}))
        if not sock.poll(int(timeout_s * 1000)):
            raise ControlError(f"no answer from the supervisor at {endpoint} within {timeout_s:g} s "
                               "(is `sensorium run` running with the same config?)")
        reply = unpack(sock.recv())
    finally:
        sock.close()
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "command refused")))
    return reply


def running_supervisor(endpoint: str) -> dict[str, Any] | None:
    """The status of a supervisor already serving ``endpoint``, or None (nothing answers within 1 s)."""
    if endpoint.startswith("ipc://") and not os.path.exists(endpoint[len("ipc://"):]):
        return None
    try:
        return request(endpoint, "status", timeout_s=1.0)
    except ControlError:
        return None
