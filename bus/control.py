"""The supervisor's control protocol: one msgpack map per request and reply.

Requests are ``{"cmd": "status" | "start" | "stop" | "restart", "actor": NAME, "token": TOKEN,
"wait_s": S}`` (``actor`` for every command but status; ``token`` when the control endpoint
is tcp; ``wait_s``, optional: answer within S seconds whatever the state then); replies are
``{"ok": bool, ...}`` with ``error`` when not ok. A start or restart is ok only once the actor
is running: one that ends failed, exited or in backoff is an error naming the state
(``running`` says which). The
server side is a ROUTER socket so that slow commands (stop) can be answered
later. ``parse_request`` checks a request against that schema before anything
uses it: a request of the wrong shape is answered with an error, never acted on.

Who may send a request: on ipc (the default) the socket lives in the 0700
runtime folder, so only its owner can connect. A tcp endpoint (loopback only)
is open to every local user, so there every request must carry the token the
supervisor writes, mode 0600, to ``RUNTIME_DIR/control.token`` when it binds
(a fresh one per run); the CLI reads it from there.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection

import msgpack
import zmq

COMMANDS = ("status", "start", "stop", "restart")
TOKEN_FILE = "control.token"
MAX_REQUEST_BYTES = 64 * 1024
"""Largest control request accepted (the ROUTER drops a peer that sends more)."""
_FIELDS = {"cmd", "actor", "token", "wait_s"}


class ControlError(RuntimeError):
    """The supervisor could not be reached or refused the command."""


@dataclass(frozen=True)
class Request:
    """A control request that passed ``parse_request``."""

    cmd: str
    """One of COMMANDS."""
    actor: str | None
    """The configured actor it is about; None for status."""
    wait_s: float | None = None
    """Answer within this many seconds whatever the state then (the caller's own time-out); None: the
    supervisor's deadline."""


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


def check_token(request: dict[str, Any], token: str | None) -> None:
    """Raise ControlError unless ``request`` carries ``token`` (None: no token needed, the ipc case)."""
    if token is None:
        return
    given = request.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        raise ControlError(f"refused: {'wrong' if isinstance(given, str) else 'no'} control token (a tcp control "
                           f"endpoint needs the token in the runtime folder's {TOKEN_FILE})")


def parse_request(request: dict[str, Any], actors: Collection[str]) -> Request:
    """The request checked against the schema; raises ControlError saying what is wrong."""
    unknown = [k for k in request if k not in _FIELDS]
    if unknown:
        raise ControlError(f"unknown request field(s) {', '.join(repr(k) for k in unknown)[:200]}; "
                           f"expected {', '.join(sorted(_FIELDS))}")
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise ControlError(f"unknown command {cmd!r:.100}; expected {', '.join(COMMANDS)}")
    actor = request.get("actor")
    wait_s = request.get("wait_s")
    if wait_s is not None and (type(wait_s) not in (int, float) or not 0 <= wait_s <= 86_400):
        raise ControlError(f"wait_s must be a number of seconds in 0..86400, got {wait_s!r:.100}")
    if cmd == "status":
        if actor is not None:
            raise ControlError("status takes no actor")
        return Request(cmd, None)
    if not isinstance(actor, str):
        raise ControlError(f"{cmd} needs 'actor', the name of a configured actor (a string), got {actor!r:.100}")
    if actor not in actors:
        raise ControlError(f"no actor named {actor!r:.100}; actors: {', '.join(actors)}")
    return Request(cmd, actor, None if wait_s is None else float(wait_s))


# -- the token file --------------------------------------------------------

def needs_token(endpoint: str) -> bool:
    """tcp is reachable by every local user; ipc sits in the 0700 runtime folder."""
    return endpoint.startswith("tcp://")


def write_token(runtime_dir: Path) -> str:
    """A fresh token in ``runtime_dir/control.token``, created 0600 (never readable by others, not even briefly)."""
    token = secrets.token_urlsafe(32)
    path = Path(runtime_dir) / TOKEN_FILE
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def read_token(endpoint: str, runtime_dir: Path) -> str | None:
    """The token a client sends to ``endpoint``: None for ipc; for tcp the supervisor's token file."""
    if not needs_token(endpoint):
        return None
    path = Path(runtime_dir) / TOKEN_FILE
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ControlError(f"the control endpoint {endpoint} needs the token in {path}, which cannot be read: "
                           f"{exc.strerror or exc} (is `sensorium run` running with the same config?)") from None


def remove_token(runtime_dir: Path) -> None:
    try:
        (Path(runtime_dir) / TOKEN_FILE).unlink()
    except FileNotFoundError:
        pass


# -- the client --------------------------------------------------------------

def request(endpoint: str, cmd: str, timeout_s: float = 5.0, *, token: str | None = None,
            **args: Any) -> dict[str, Any]:
    """Send one command and wait for its reply; raises ControlError on timeout or refusal."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    payload = {"cmd": cmd, **args}
    if token is not None:
        payload["token"] = token
    try:
        sock.connect(endpoint)
        sock.send(pack(payload))
        if not sock.poll(int(timeout_s * 1000)):
            raise ControlError(f"no answer from the supervisor at {endpoint} within {timeout_s:g} s "
                               "(is `sensorium run` running with the same config?)")
        reply = unpack(sock.recv())
    finally:
        sock.close()
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "command refused")))
    return reply


def running_supervisor(endpoint: str, runtime_dir: Path) -> dict[str, Any] | None:
    """The status of a supervisor already serving ``endpoint``, or None (nothing answers within 1 s)."""
    if endpoint.startswith("ipc://") and not os.path.exists(endpoint[len("ipc://"):]):
        return None
    try:
        token = read_token(endpoint, runtime_dir)
    except ControlError:
        token = None  # no token file: no supervisor of ours serves this tcp endpoint
    try:
        return request(endpoint, "status", timeout_s=1.0, token=token)
    except ControlError:
        return None
