"""Direct links between processes of one host (docs/wire.md, section 14).

Through the broker every message is six thread hand-offs (publisher -> its
I/O thread -> broker I/O -> proxy -> broker I/O -> subscriber's I/O thread
-> subscriber); peers such as zenoh, iceoryx or DDS let a local reader take
messages from the writer itself. A *direct link* does that on the bus:

* A publisher made with a ``direct_dir`` binds its XPUB socket, besides
  connecting it to the broker, to ``ipc://DIRECT_DIR/PID-N.pub``. Nothing
  goes there until a subscriber connects and subscribes. A bus's folder is
  ``FRONTEND.d`` beside its frontend socket (``folder_for``).
* A *direct subscriber* (``Subscriber(ctx, None, ..., direct_dir=...)``)
  connects to every live publisher endpoint in that folder instead of to
  the broker, finding new ones at most ``DISCOVER_EVERY_NS`` after they
  appear while it reads (``LIST_EVERY_NS`` on a filesystem that caches
  attributes), and lets go of the ones that went away once it has read what
  they sent. It lists the folder when the folder's mtime moved (or cannot be
  trusted: ``SETTLED_NS``), and every ``LIST_EVERY_NS`` for publishers killed
  in place.

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
import time
from pathlib import Path

import structlog
import zmq

from bus.burstlog import BurstLog
from bus.shm import owned_names, pid_alive

FOLDER_SUFFIX = ".d"
"""The direct-link folder of a bus: its frontend socket's path and this."""
ENDPOINT_SUFFIX = ".pub"
_NAME_RE = re.compile(r"(\d{1,10})-(\d{1,6})\.pub")
"""``PID-N.pub``: the publishing process and its N-th direct endpoint."""
_FILE_RE = re.compile(r"(\d{1,10})-\d{1,6}(?:\.pub|-[0-9a-f]{16}\.pipe)")
"""The files of a process in the folder: its direct endpoints and its pipes (``PID-N-TOKEN.pipe``, bus/pipes.py)."""
DISCOVER_EVERY_NS = 100_000_000
"""How often a reading direct subscriber looks for new publishers, ns."""
LET_GO_AFTER_NS = 1_000_000_000
"""A link whose publisher went away is kept this long at least, and until nothing is waiting to be read: a
disconnect throws away what the link still holds (what the publisher sent before it closed)."""
LIST_EVERY_NS = 1_000_000_000
"""How often a reading direct subscriber lists the folder even when it looks unchanged: a publisher killed
with SIGKILL leaves its endpoint file, and only a listing's liveness check notices it, ns."""
SETTLED_NS = 100_000_000
"""A folder whose last change is this old is trusted to be unchanged while its mtime stays the same. File
times come from the kernel's coarse clock, one tick up to 10 ms, so two changes within a tick leave one mtime;
a listing made within this of the folder's last change is done again at the next look (git's "racy" index
entries). An mtime of whole seconds (ext3, small ext4 inodes, FAT) is never trusted: such a folder is listed
at every look, as before. Where a filesystem caches attributes (NFS), a new publisher may wait for the listing
of every ``LIST_EVERY_NS``."""
IPC_PATH_MAX_BYTES = 100
"""A unix socket path must fit sun_path (108 bytes on Linux) with margin (as bus/endpoints.py)."""

log = structlog.get_logger("bus")

_numbers = itertools.count()


def folder_for(frontend: str) -> Path | None:
    """The direct-link folder of the bus whose publishers connect to ``frontend``: ``FRONTEND.d`` beside
    its ipc socket file; None when that is no absolute path (a tcp bus, an abstract or relative ipc name:
    no folder every process finds alike)."""
    if not frontend.startswith("ipc://"):
        return None
    path = frontend[len("ipc://"):]
    if not path.startswith("/"):
        return None
    return Path(path + FOLDER_SUFFIX)


def owner_pid(name: str) -> int | None:
    m = _FILE_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def private_folder(folder: Path) -> None:
    """Make ``folder`` (0700) in an existing one: the bus's runtime folder is made private by whoever
    starts the bus, never here with the umask's mode."""
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"direct-link folder {folder} belongs to uid {st.st_uid}, not to this user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(folder, 0o700)


def bind(sock: zmq.Socket, folder: Path) -> Path:
    """Bind a publisher's socket to a new endpoint of this process in ``folder``; returns the socket file.
    Raises ValueError when the path would not fit a unix socket, OSError when the folder is unusable."""
    folder = Path(folder)
    path = folder / f"{os.getpid()}-{next(_numbers)}{ENDPOINT_SUFFIX}"
    if len(str(path).encode()) > IPC_PATH_MAX_BYTES:
        raise ValueError(f"direct endpoint {path} is over {IPC_PATH_MAX_BYTES} bytes: use a shorter folder")
    private_folder(folder)
    path.unlink(missing_ok=True)  # a dead process of the same pid left it
    sock.bind(f"ipc://{path}")
    return path


def endpoints(folder: Path, sockets_only: bool = False) -> list[str]:
    """Names of the direct endpoints in ``folder`` owned by this user (``sockets_only``: that are sockets,
    what a subscriber may connect to). A folder not made yet has none; another failure to list it raises
    OSError."""
    return owned_names(folder, lambda name: _NAME_RE.fullmatch(name) is not None, sockets_only)


def _files(folder: Path) -> list[str]:
    """Names of the endpoints and pipes in ``folder`` owned by this user."""
    return owned_names(folder, lambda name: _FILE_RE.fullmatch(name) is not None)


def remove_endpoints_of(pid: int, folder: Path) -> list[str]:
    """Remove the direct endpoints and pipes of process ``pid`` (which has exited); returns their names."""
    removed = []
    for name in _files(folder):
        if owner_pid(name) == pid:
            (Path(folder) / name).unlink(missing_ok=True)
            removed.append(name)
    return removed


def sweep_dead(folder: Path) -> list[str]:
    """Remove the direct endpoints and pipes whose process no longer exists; returns their names."""
    removed = []
    for name in _files(folder):
        pid = owner_pid(name)
        if pid is not None and not pid_alive(pid):
            (Path(folder) / name).unlink(missing_ok=True)
            removed.append(name)
    return removed


class DirectLinks:
    """A direct subscriber's links: which publisher endpoints of ``folder`` its socket is connected to.
    Used from the thread that reads the socket."""

    def __init__(self, sock: zmq.Socket, folder: Path) -> None:
        self.sock = sock
        self.folder = Path(folder)
        self.connected: dict[str, str] = {}
        """Endpoint file name -> the ipc endpoint the socket is connected to."""
        self.gone_since_ns: dict[str, int] = {}
        """Connected names whose publisher went away (file removed, process gone) -> when that was seen."""
        self.errors = 0
        """Listings and disconnects that failed (logged once per burst)."""
        self.listings = 0
        """Listings of the folder made (``scan``): a look that finds it settled and unchanged makes none."""
        self._due_ns = 0
        self._list_due_ns = 0
        self._settled: tuple[int, int] | None = None
        """(inode, mtime ns) of the folder at the last listing, when that change was ``SETTLED_NS`` old."""
        self._burst = BurstLog(log)

    def maybe_scan(self, now_ns: int) -> bool:
        """Look for changes when ``DISCOVER_EVERY_NS`` passed since the last look; True if a link changed.

        A look is a ``stat`` of the folder (~20 us after a quiet spell); the listing, with a liveness check
        per link (~110 us, ~200 us for 12 publishers, which a paced reader paid every 100 ms), only when the
        folder changed, a link is being let go, or ``LIST_EVERY_NS`` passed."""
        if now_ns < self._due_ns:
            return False
        self._due_ns = now_ns + DISCOVER_EVERY_NS
        if self._settled is not None and now_ns < self._list_due_ns and not self.gone_since_ns:
            try:
                st = os.stat(self.folder)
            except OSError:
                pass  # the listing says why
            else:
                if (st.st_ino, st.st_mtime_ns) == self._settled:
                    return False
        return self.scan(now_ns)

    def scan(self, now_ns: int | None = None) -> bool:
        """List the folder: connect to new live publishers, let go of the ones gone; True if any link changed."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        self._settled = None
        self._list_due_ns = now_ns + LIST_EVERY_NS
        self.listings += 1
        try:
            st = os.stat(self.folder)  # before the listing: a change after it moves the mtime on
        except OSError:  # not made yet (no publisher so far), or unreadable: the listing says which
            pass
        else:
            if st.st_mtime_ns % 1_000_000_000 and time.time_ns() - st.st_mtime_ns >= SETTLED_NS:
                self._settled = (st.st_ino, st.st_mtime_ns)
        try:
            names = set(endpoints(self.folder, sockets_only=True))
        except OSError as exc:
            self._settled = None
            self.errors += 1
            self._burst.warning("direct_list", "direct_folder_unreadable", folder=str(self.folder), error=str(exc),
                                errors_total=self.errors)
            return False
        changed = False
        for name in self.connected:
            pid = owner_pid(name)
            if name not in self.gone_since_ns and (name not in names or pid is None or not pid_alive(pid)):
                self.gone_since_ns[name] = now_ns
        if self.gone_since_ns:
            changed = self._let_go(now_ns)
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

    def _let_go(self, now_ns: int) -> bool:
        """Disconnect the links gone for ``LET_GO_AFTER_NS`` when nothing waits to be read (a disconnect
        would discard it; the socket does not say which link a waiting message came by)."""
        due = [n for n, t in self.gone_since_ns.items() if now_ns - t >= LET_GO_AFTER_NS]
        if not due or self.sock.get(zmq.EVENTS) & zmq.POLLIN:
            return False
        for name in due:
            del self.gone_since_ns[name]
            endpoint = self.connected.pop(name)
            try:
                self.sock.disconnect(endpoint)
            except zmq.ZMQError as exc:
                self.errors += 1
                self._burst.warning("direct_disconnect", "direct_disconnect_failed", endpoint=endpoint,
                                    error=str(exc), errors_total=self.errors)
        return True
