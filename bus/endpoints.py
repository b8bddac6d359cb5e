"""Where the bus lives: the per-user runtime folder and the endpoint rules.

By default every socket is an ``ipc://`` socket in a folder only the user can
open (0700). ``tcp://`` on a loopback address is allowed. Binding any other
address is allowed only to a CURVE server (the bridge between hosts) whose
host keypair exists and whose allow-list of trusted keys is not empty
(``bus/security.py``); anything else is refused with one message
(DESIGN.md, "Security").
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from bus.direct import folder_for
from config.paths import Locations, default_endpoint
from config.schema import Config

if TYPE_CHECKING:
    from bus.security import KeyStore

IPC_PATH_MAX_BYTES = 100
"""A unix socket path must fit sun_path (108 bytes on Linux) with margin."""


class EndpointError(ValueError):
    """An endpoint that cannot or must not be used; the message says why."""


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or check that an existing one is ours and private."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise EndpointError(f"runtime folder {path} belongs to uid {st.st_uid}, not to this user ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def private_dir_problem(path: Path) -> tuple[str, str]:
    """How ``ensure_private_dir`` would find ``path``, looked at without changing anything.

    Returns (status, detail): ``ok``; ``warn`` for what a run fixes or what
    deserves a look (missing, so a run creates it; group/other bits, which a
    run clears); ``fail`` for what a run refuses or cannot use (another
    owner, not a folder, not writable). A symlink is named with its target.
    """
    path = Path(path)
    notes = []
    try:
        if path.is_symlink():
            notes.append(f"a symlink to {os.path.realpath(path)}")
        if not path.exists():
            parent = next((p for p in path.parents if p.exists()), None)
            if parent is None or not os.access(parent, os.W_OK | os.X_OK):
                return "fail", f"{path} does not exist and {parent} is not writable"
            return "warn", f"{path} does not exist yet: `sensorium run` creates it (mode 0700)"
        st = path.stat()
    except OSError as exc:
        return "fail", f"{path}: {exc}"
    if not stat.S_ISDIR(st.st_mode):
        return "fail", f"{path} is not a folder"
    if st.st_uid != os.getuid():
        return "fail", f"{path} belongs to uid {st.st_uid}, not to this user ({os.getuid()})"
    if not os.access(path, os.W_OK | os.X_OK):
        return "fail", f"{path} is not writable"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        notes.append(f"mode {oct(mode)}, not private (`sensorium run` sets {os.path.realpath(path)} to 0700)")
        return "warn", f"{path}: " + "; ".join(notes)
    return "ok", f"{path} writable, mode {oct(mode)}" + "".join(f", {n}" for n in notes)


@dataclass(frozen=True)
class Endpoints:
    frontend: str
    """Publishers connect here (the broker's XSUB)."""
    backend: str
    """Subscribers connect here (the broker's XPUB)."""
    control: str
    """The supervisor's control socket."""

    @classmethod
    def resolve(cls, runtime_dir: Path, frontend: str = "", backend: str = "", control: str = "") -> "Endpoints":
        """Empty values become ipc sockets in ``runtime_dir``."""
        return cls(
            frontend=frontend or default_endpoint(runtime_dir, "frontend"),
            backend=backend or default_endpoint(runtime_dir, "backend"),
            control=control or default_endpoint(runtime_dir, "control"),
        )

    def all(self) -> list[str]:
        return [self.frontend, self.backend, self.control]

    @property
    def direct_dir(self) -> Path | None:
        """Where this bus' publishers listen for direct subscribers of this host (bus/direct.py):
        ``FRONTEND.d`` beside the frontend's ipc socket; None on a tcp bus."""
        return folder_for(self.frontend)


@dataclass(frozen=True)
class RuntimePaths:
    runtime_dir: Path
    """Private folder (0700) of the ipc sockets and the resolved config."""
    log_dir: Path
    endpoints: Endpoints


def runtime_paths(config: Config) -> RuntimePaths:
    """Where the bus, the control socket and the logs of ``config`` live."""
    where = Locations.of(config.bus.runtime_dir, config.log.dir)
    endpoints = Endpoints.resolve(where.runtime_dir, config.bus.frontend, config.bus.backend, config.bus.control)
    return RuntimePaths(runtime_dir=where.runtime_dir, log_dir=where.log_dir, endpoints=endpoints)


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None


def check_endpoint(endpoint: str, *, binding: bool, curve_keys: "KeyStore | None" = None) -> None:
    """Raise EndpointError if ``endpoint`` may not be used; binding is stricter.

    ``curve_keys``: the caller binds a CURVE server with a ZAP authenticator
    over these keys; only then may a non-loopback tcp address be bound, and
    only when the keypair is usable and the trusted list is not empty.
    """
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if len(path.encode()) > IPC_PATH_MAX_BYTES:
            raise EndpointError(
                f"ipc path {path!r} is {len(path.encode())} bytes, over {IPC_PATH_MAX_BYTES}: "
                "set bus.runtime_dir to a shorter folder")
        return
    if endpoint.startswith("inproc://"):
        return
    if endpoint.startswith("tcp://"):
        host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
        if not binding or _is_loopback(host):
            return
        if curve_keys is None:
            raise EndpointError(
                f"refusing to bind {endpoint}: a non-loopback address is only for a bridge between hosts "
                "(CURVE-secured); the local bus uses ipc:// (the default) or tcp://127.0.0.1")
        problem = curve_keys.ready_for_network()
        if problem:
            raise EndpointError(
                f"refusing to bind {endpoint}: a non-loopback bind needs this host's CURVE keypair and a "
                f"non-empty list of trusted peer keys; {problem}")
        return
    raise EndpointError(f"unsupported endpoint {endpoint!r}: expected ipc://PATH or tcp://127.0.0.1:PORT")


def is_loopback(host: str) -> bool:
    """Whether a host (name or address) is this machine's loopback: what may listen without security."""
    return _is_loopback(host)


def _is_loopback(host: str) -> bool:
    """localhost, ::1, or any address of 127.0.0.0/8 in a notation inet_aton takes (127.1, 0x7f.0.0.1...)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not host or any(c.isspace() for c in host):  # glibc's inet_aton ignores what follows a space
        return False
    try:
        return socket.inet_aton(host)[0] == 127
    except OSError:
        return False
