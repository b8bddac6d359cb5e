"""Direct links between processes of one host (docs/wire.md, section 14).

Through the broker every message is six thread hand-offs (publisher -> its
I/O thread -> broker I/O -> proxy -> broker I/O -> subscriber's I/O thread
-> subscriber); peers such as zenoh, iceoryx or DDS let a local reader take
messages from the writer itself. A *direct link* does that on the bus:

* A publisher made with a ``direct_dir`` binds its XPUB socket, besides
  connecting it to the broker, to ``ipc://DIRECT_DIR/PID-N.pub``. Nothing
  goes there until a subscriber connects and subscribes.
* A *direct subscriber* (``Subscriber(direct_dir=...)``) connects to every
  live publisher endpoint in that folder instead of to the broker, finding
  new ones at most ``DISCOVER_EVERY_NS`` after they appear (while it waits
  for messages), and disconnects from the ones that went away.

ZeroMQ routes each message per connection by its subscriptions, so a
message reaches a direct subscriber once, over its link, whatever the
broker forwards to others. What such a subscriber does not hear: senders
without a direct endpoint (outside tools that speak the documented frames
to the broker, other hosts through a bridge that has none) and the broker's
latched cache. It is for high-rate local streams, as the local and batched
forms are.

The folder is private (0700, like every ipc socket of the bus). A publisher
killed with SIGKILL leaves its socket file: a subscriber skips files whose
process is gone, the supervisor removes an exited actor's endpoints and
sweeps those of dead processes at start, as for shared-memory segments.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
from pathlib import Path

import structlog
import zmq

from bus.shm import pid_alive

DIRECT_FOLDER = "d"
"""The direct-link folder of a bus, beside its ipc sockets."""
ENDPOINT_SUFFIX = ".pub"
_NAME_RE = re.compile(r"(\d{1,10})-(\d{1,6})\.pub")
"""``PID-N.pub``: the publishing process and its N-th direct endpoint."""
DISCOVER_EVERY_NS = 100_000_000
"""How often a waiting direct subscriber looks for new publishers, ns."""
IPC_PATH_MAX_BYTES = 100
"""A unix socket path must fit sun_path (108 bytes on Linux) with margin (as bus/endpoints.py)."""

log = structlog.get_logger("bus")

_numbers = itertools.count()


def folder_for(frontend: str) -> Path | None:
    """The direct-link folder of the bus whose publishers connect to ``frontend``: ``d`` beside its ipc
    socket; None when the bus is not on ipc (a tcp bus has no shared folder to meet in)."""
    if not frontend.startswith("ipc://"):
        return None
    return Path(frontend[len("ipc://"):]).parent / DIRECT_FOLDER


def owner_pid(name: str) -> int | None:
    m = _NAME_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"direct-link folder {folder} belongs to uid {st.st_uid}, not to this user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(folder, 0o700)


def bind(sock: zmq.Socket, folder: Path) -> Path:
    """Bind a publisher's socket to a new endpoint of this process in ``folder``; returns the socket file.
    Raises ValueError when the path would not fit a unix socket, OSError when the folder is unusable."""
    folder = Path(folder)
    _private_folder(folder)
    path = folder / f"{os.getpid()}-{next(_numbers)}{ENDPOINT_SUFFIX}"
    if len(str(path).encode()) > IPC_PATH_MAX_BYTES:
        raise ValueError(f"direct endpoint {path} is over {IPC_PATH_MAX_BYTES} bytes: use a shorter folder")
    path.unlink(missing_ok=True)  # a dead process of the same pid left it
    sock.bind(f"ipc://{path}")
    return path


def endpoints(folder: Path) -> list[str]:
    """Names of the direct endpoints in ``folder`` owned by this user."""
    uid = os.getuid()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    out = []
    for e in entries:
        if _NAME_RE.fullmatch(e.name):
            try:
                if e.stat(follow_symlinks=False).st_uid == uid:
                    out.append(e.name)
            except FileNotFoundError:
                continue
    return out


def remove_endpoints_of(pid: int, folder: Path) -> list[str]:
    """Remove the direct endpoints of process ``pid`` (which has exited); returns their names."""
    removed = []
    for name in endpoints(folder):
        if owner_pid(name) == pid:
            (Path(folder) / name).unlink(missing_ok=True)
            removed.append(name)
    return removed


def sweep_dead(folder: Path) -> list[str]:
    """Remove the direct endpoints whose process no longer exists; returns their names."""
    removed = []
    for name in endpoints(folder):
        pid = owner_pid(name)
        if pid is not None and not pid_alive(pid):
            (Path(folder) / name).unlink(missing_ok=True)
            removed.append(name)
    return removed


class DirectLinks:
    """A direct subscriber's links: which publisher endpoints of ``folder`` its socket is connected to."""

    def __init__(self, sock: zmq.Socket, folder: Path) -> None:
        self.sock = sock
        self.folder = Path(folder)
        self.connected: dict[str, str] = {}
        """Endpoint file name -> the ipc endpoint the socket is connected to."""
        self._due_ns = 0

    def maybe_scan(self, now_ns: int) -> bool:
        """``scan()`` when ``DISCOVER_EVERY_NS`` passed since the last one; True if a link changed."""
        if now_ns < self._due_ns:
            return False
        self._due_ns = now_ns + DISCOVER_EVERY_NS
        return self.scan()

    def scan(self) -> bool:
        """Connect to new live publishers of the folder, disconnect from the ones gone; True if any changed.
        A listing is a few microseconds for tens of endpoints, so it is not cached."""
        names = set(endpoints(self.folder))
        changed = False
        for name in [n for n in self.connected if n not in names]:
            endpoint = self.connected.pop(name)
            try:
                self.sock.disconnect(endpoint)
            except zmq.ZMQError as exc:  # already gone from the socket: nothing to undo
                log.debug("direct_disconnect_failed", endpoint=endpoint, error=str(exc))
            changed = True
        for name in names:
            if name in self.connected:
                continue
            pid = owner_pid(name)
            if pid is None or not pid_alive(pid):  # left by a killed publisher: nobody would answer
                continue
            endpoint = f"ipc://{self.folder / name}"
            self.sock.connect(endpoint)
            self.connected[name] = endpoint
            changed = True
        return changed
