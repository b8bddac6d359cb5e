"""Pipe links: local-form messages written straight into a direct subscriber's FIFO (docs/wire.md, section 15).

Over a direct link (bus/direct.py) a message still crosses four threads: the
publisher's, its ZeroMQ I/O thread, the subscriber's I/O thread and the
subscriber's own, two wake-ups on each side. For a frame in shared memory
the message is only its reference, ~150 bytes, and those hand-offs are most
of what a delivery costs: 4 readers of such records at 60/s, bare pyzmq
PUB -> SUB against a FIFO per reader (the reader in ``poll``), measured
85-115 against 30-50 us of CPU per delivery (publisher and readers) on this
project's 2-core VM.

A *pipe subscriber* (``Subscriber(..., direct_dir=..., pipe=True)``) makes
a FIFO ``PID-N-TOKEN.pipe`` (0600) in the direct-link folder and holds it open for
reading and writing (so it never reads an end of file and no open blocks).
It subscribes on its direct links to ``@p/NAME/TOPIC`` instead of
``@shm/TOPIC``. A publisher that reads such a subscription writes each
local-form message of a matching topic into the FIFO as one record, in one
non-blocking ``write`` of at most ``PIPE_BUF`` bytes, which the kernel keeps
whole however many publishers write. No I/O thread is woken on either side.

A pipe subscriber that also opted in to the batched form (``batched=True``)
subscribes to ``@p/NAME/@b/TOPIC``: its publishers write batches (envelope
version 2, bus/batched.py) into the pipe, as many messages to a record as
fit, so small messages neither wake an I/O thread nor cost a record each.

The rules (wire.md section 15 has the record layout):

* A full pipe drops the message for that reader, as ZeroMQ's high-water
  mark does; the reader sees the seq gap, the publisher counts it.
* A message whose record does not fit (arrays inline, a big body) goes over
  the link instead, with topic frame ``@p/NAME/TOPIC`` (a batch:
  ``@p/NAME/@b/TOPIC``; only that reader subscribed to it), and so does
  every later message of that topic for that
  pipe: a reader reads its pipe before its socket, so a topic moving from the
  pipe to the socket stays in order, while the other way round could not.
* A pipe that cannot be opened or written (its reader gone: ENXIO, EPIPE;
  a symbolic link; not a FIFO of this user) is given up: everything for it
  goes over the link, until the reader's unsubscription (its link closing)
  forgets it. The reader also subscribes to ``KEEP_PREFIX``, which no topic
  starts with, so a publisher keeps what it knows of the pipe while the
  reader's topics change.
* Order holds per publisher and topic. A piped message may arrive before a
  message of another topic that went earlier over a socket.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import re
import secrets
import select
import stat
import struct
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import structlog

from bus.burstlog import BurstLog
from bus.direct import private_folder  # the folder's rules live with the direct links
from bus.envelope import BATCH_MARKER

PIPE_MARKER = b"@p/"
"""Start of a pipe subscription (``@p/NAME/TOPIC``) and of the topic frame of a message that went over the link
instead of the pipe."""
PIPE_SUFFIX = ".pipe"
NAME_RE = re.compile(r"(\d{1,10})-(\d{1,6})-[0-9a-f]{16}\.pipe")
"""``PID-N-TOKEN.pipe``: the reading process, its N-th pipe and 16 random hex digits. A peer that reaches a
publisher's socket (a broker subscriber) but cannot list the folder (0700) cannot name a pipe to write into."""
KEEP_PREFIX = b"\xff"
"""A prefix no topic starts with: a pipe subscriber also subscribes ``@p/NAME/`` + this for as long as it lives, so
that its publishers keep what they know of its pipe (which topics went over the link) while its topics change."""
RECORD_MAX_BYTES = select.PIPE_BUF
"""A record is written in one ``write`` of at most this (4096 bytes on Linux), which the kernel never splits
or interleaves with another writer's."""
RECORD_HEAD = struct.Struct("<IHH")
"""A record's head: length of what follows the u32 (u16 lengths, three frames), topic frame length, header
frame length; then the topic, header and body frames of the local form."""
PIPE_BYTES = 1 << 20
"""The capacity a reader asks for (``F_SETPIPE_SZ``; the kernel caps it at /proc/sys/fs/pipe-max-size, 1 MiB
by default): ~7,000 frame records of slack before a slow reader loses any."""
READ_BYTES = 65_536
"""At most this much is read at once: below malloc's mmap threshold, so a read of one record does not map and
unmap a megabyte (a write and a read of one record: 0.8 us, against 12 us reading up to 1 MiB; warm)."""
IPC_PATH_MAX_BYTES = 100
"""As for sockets (bus/direct.py): the folder is shared, and so is its length budget."""

log = structlog.get_logger("bus")

_numbers = itertools.count()


def encode_record(frames: Sequence[Any]) -> bytes | None:
    """The pipe record of a local-form message of three frames (topic, header, body); None when it has array
    frames or would be over ``RECORD_MAX_BYTES``."""
    if len(frames) != 3:
        return None
    topic, head, body = frames
    n_topic, n_head = len(topic), len(head)
    n = RECORD_HEAD.size + n_topic + n_head + len(body)
    if n > RECORD_MAX_BYTES or n_topic > 0xFFFF or n_head > 0xFFFF:
        return None
    return b"".join((RECORD_HEAD.pack(n - 4, n_topic, n_head), topic, head, body))


class RecordError(ValueError):
    """Bytes in a pipe that are no record (another process of this user wrote into it); ``records``: the whole
    records read before them."""

    def __init__(self, reason: str, records: list[tuple[bytes, bytes, bytes]]) -> None:
        super().__init__(reason)
        self.records = records


def decode_records(data: bytes) -> tuple[list[tuple[bytes, bytes, bytes]], bytes]:
    """The whole records at the start of ``data`` as (topic, header, body) frames, and the bytes after them (a
    record's start, which a read may split when it is shorter than the pipe). Raises RecordError on a length
    out of bounds (nothing after it can be trusted), with the records before it."""
    out = []
    pos, end = 0, len(data)
    unpack = RECORD_HEAD.unpack_from
    while end - pos >= RECORD_HEAD.size:
        n, n_topic, n_head = unpack(data, pos)
        if not RECORD_HEAD.size - 4 + n_topic + n_head <= n <= RECORD_MAX_BYTES - 4:
            raise RecordError(f"pipe record of {n} bytes with frames of {n_topic} and {n_head}: out of bounds", out)
        if end - pos - 4 < n:
            break
        a = pos + RECORD_HEAD.size
        b = a + n_topic
        c = b + n_head
        pos += 4 + n
        out.append((data[a:b], data[b:c], data[c:pos]))
    return out, data[pos:]


def parse_subscription(sub: bytes) -> tuple[str, bytes] | None:
    """(pipe name, topic prefix) of a pipe subscription ``@p/NAME/PREFIX``; None when it is none or its name is
    not a pipe's (which could otherwise name any path)."""
    if sub[:3] != PIPE_MARKER:
        return None
    name, sep, prefix = sub[3:].partition(b"/")
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not sep or NAME_RE.fullmatch(text) is None:
        return None
    return text, prefix


class PipeIn:
    """A pipe subscriber's FIFO in ``folder``: made at once, removed at ``close``. Read from one thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.name = f"{os.getpid()}-{next(_numbers)}-{secrets.token_hex(8)}{PIPE_SUFFIX}"
        self.name_raw = self.name.encode()
        self.path = self.folder / self.name
        if len(str(self.path).encode()) > IPC_PATH_MAX_BYTES:
            raise ValueError(f"pipe {self.path} is over {IPC_PATH_MAX_BYTES} bytes: use a shorter folder")
        private_folder(self.folder)
        self.path.unlink(missing_ok=True)  # a dead process of the same pid left it
        os.mkfifo(self.path, 0o600)
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.path.unlink(missing_ok=True)
            raise
        try:
            self.capacity = fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # above the kernel's cap for this user: the default (64 KiB) stays
            self.capacity = fcntl.fcntl(self.fd, fcntl.F_GETPIPE_SZ)
        self._rest = b""
        self.records: deque[tuple[bytes, bytes, bytes]] = deque()
        """Records read and not handed out yet, oldest first."""
        self.malformed = 0
        """Reads that held bytes which were no record (their rest is thrown away)."""

    def subscription(self, prefix: bytes, batched: bool = False) -> bytes:
        """The subscription that asks publishers to write ``prefix``'s local form (``batched``: its batched form)
        into this pipe."""
        return PIPE_MARKER + self.name_raw + b"/" + (BATCH_MARKER if batched else b"") + prefix

    def keep_subscription(self) -> bytes:
        """The subscription that keeps this pipe known to publishers while its topics change (``KEEP_PREFIX``)."""
        return self.subscription(KEEP_PREFIX)

    def fill(self) -> bool:
        """Read what is in the pipe (without waiting) into ``records``; True if any record is there. Raises
        RecordError on bytes that are no record (counted): the records before them are kept, the rest of that
        read is thrown away. Writes are whole, so a read that empties the pipe ends on a record's end, and the
        stream is in step again from the next one."""
        try:
            data = os.read(self.fd, READ_BYTES)
        except BlockingIOError:
            return bool(self.records)
        if self._rest:
            data = self._rest + data
        try:
            got, self._rest = decode_records(data)
        except RecordError as exc:
            self.records.extend(exc.records)
            self._rest = b""
            self.malformed += 1
            raise
        self.records.extend(got)
        return bool(self.records)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)


@dataclass
class PipeOut:
    """A subscriber's pipe as a publisher sees it."""

    name: str
    prefixes: set[bytes] = field(default_factory=set)
    """Topic prefixes whose local form goes into this pipe."""
    batch_prefixes: set[bytes] = field(default_factory=set)
    """Topic prefixes whose batched form goes into this pipe (subscribed as ``@p/NAME/@b/PREFIX``)."""
    fd: int = -1
    """Open for writing once the first record went (-1: not yet, or given up)."""
    given_up: str = ""
    """Why nothing goes into this pipe any more (everything for it goes over the link); '' while it works."""
    on_socket: set[str] = field(default_factory=set)
    """Topics that went over the link once: they stay there (order per topic)."""

    def wants(self, plain_topic: bytes) -> bool:
        return any(plain_topic.startswith(p) for p in self.prefixes)

    def wants_batches(self, plain_topic: bytes) -> bool:
        return any(plain_topic.startswith(p) for p in self.batch_prefixes)

    def socket_topic(self, topic_frame: bytes) -> bytes:
        """The topic frame of a message for this pipe that goes over the link: ``@p/NAME/`` and the topic frame
        it would have had (``TOPIC`` of the local form, ``@b/TOPIC`` of a batch)."""
        return PIPE_MARKER + self.name.encode() + b"/" + topic_frame


class PipeWriters:
    """A publisher's pipes, from the pipe subscriptions it read; ``folder`` is where its direct endpoint is (None:
    it has none, and every pipe is given up). Used under the publisher's lock."""

    def __init__(self, folder: Path | None, src: str) -> None:
        self.folder = folder
        self.src = src
        self.pipes: dict[str, PipeOut] = {}
        self.written = 0
        """Messages written into pipes (a batch record: each of its messages)."""
        self.drops = 0
        """Messages a full pipe did not take (that reader sees a seq gap)."""
        self.on_socket = 0
        """Messages for a pipe that went over the link instead (too big for a record, a pipe given up)."""
        self._burst = BurstLog(log)

    def note(self, sub: bytes, subscribed: bool) -> bool:
        """Take in a (un)subscription read from the socket; True when it changed which pipes want what."""
        parsed = parse_subscription(sub)
        if parsed is None:
            return False
        name, prefix = parsed
        pipe = self.pipes.get(name)
        if pipe is None and not subscribed:
            return False
        if pipe is None:
            pipe = self.pipes[name] = PipeOut(name)
        prefixes = pipe.prefixes
        if prefix[:len(BATCH_MARKER)] == BATCH_MARKER:
            prefixes, prefix = pipe.batch_prefixes, prefix[len(BATCH_MARKER):]
        if subscribed:
            prefixes.add(prefix)
            return True
        prefixes.discard(prefix)
        if not pipe.prefixes and not pipe.batch_prefixes:
            self._close(pipe)
            del self.pipes[name]
        return True

    def matching(self, plain_topic: bytes) -> tuple[PipeOut, ...]:
        """The pipes that want the local form of the topic."""
        return tuple(p for p in self.pipes.values() if p.wants(plain_topic))

    def matching_batches(self, plain_topic: bytes) -> tuple[PipeOut, ...]:
        """The pipes that want the batched form of the topic."""
        return tuple(p for p in self.pipes.values() if p.wants_batches(plain_topic))

    def write(self, pipes: Sequence[PipeOut], topic: str, frames: Sequence[Any] | None,
              messages: int = 1) -> list[PipeOut]:
        """Write ``frames`` of ``topic`` (a local-form message; or a batch of ``messages`` as topic, batch, b"";
        None: frames that make no record) into each of ``pipes``; returns the pipes they must go to over the
        link instead (``written`` counts the messages the others took, ``drops`` those a full pipe did not,
        ``on_socket`` those sent away)."""
        record = encode_record(frames) if frames is not None else None
        later: list[PipeOut] = []
        for pipe in pipes:
            if record is None or pipe.given_up or topic in pipe.on_socket:
                pipe.on_socket.add(topic)
                later.append(pipe)
                continue
            if pipe.fd < 0 and not self._open(pipe):
                pipe.on_socket.add(topic)
                later.append(pipe)
                continue
            try:
                os.write(pipe.fd, record)
            except BlockingIOError:
                self.drops += messages
                self._burst.warning("pipe_full", "pipe_full_message_dropped", src=self.src, pipe=pipe.name,
                                    topic=topic, drops_total=self.drops)
                continue
            except OSError as exc:  # EPIPE: its reader is gone
                self._give_up(pipe, f"write failed: {exc}")
                pipe.on_socket.add(topic)
                later.append(pipe)
                continue
            self.written += messages
        self.on_socket += len(later) * messages
        return later

    def _open(self, pipe: PipeOut) -> bool:
        if self.folder is None:
            self._give_up(pipe, "this publisher has no direct endpoint")
            return False
        path = self.folder / pipe.name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY)
        except OSError as exc:  # ENXIO: nobody reads it; ENOENT: removed; ELOOP: a symlink
            self._give_up(pipe, f"cannot open {path}: {errno.errorcode.get(exc.errno, exc.errno)}")
            return False
        st = os.fstat(fd)
        if not stat.S_ISFIFO(st.st_mode) or st.st_uid != os.getuid():
            os.close(fd)
            self._give_up(pipe, f"{path} is no FIFO of this user")
            return False
        pipe.fd = fd
        return True

    def _give_up(self, pipe: PipeOut, reason: str) -> None:
        self._close(pipe)
        pipe.given_up = reason
        log.warning("pipe_given_up", src=self.src, pipe=pipe.name, reason=reason,
                    detail="its messages go over the direct link")

    @staticmethod
    def _close(pipe: PipeOut) -> None:
        if pipe.fd >= 0:
            os.close(pipe.fd)
            pipe.fd = -1

    def close(self) -> None:
        for pipe in self.pipes.values():
            self._close(pipe)
        self.pipes.clear()
