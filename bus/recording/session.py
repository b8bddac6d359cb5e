"""A recording session: messages written on their own thread, into files that
rotate by size and age, with retention, and a clean stop when the disk fills.

``RecordingSession`` is what the recorder actor and ``sensorium record`` run;
``SessionSettings`` is its whole configuration (the actor builds it from its
``RecorderSettings``). ``recordings`` and ``apply_retention`` manage the
closed files of one folder.
"""

from __future__ import annotations

import errno
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import structlog

from bus.burstlog import BurstLog
from bus.envelope import Message
from bus.recording.writer import COMPRESSIONS, DISK_FULL_ERRNOS, RecordingWriter, WrittenFile

log = structlog.get_logger("recording")


@dataclass(frozen=True)
class SessionSettings:
    """How a ``RecordingSession`` writes, rotates and stops. 0 means "no limit" where a limit is named."""

    flush_s: float = 1.0
    """Close the open chunk and fsync at least this often, seconds: a crash loses at most this much."""
    max_file_bytes: int = 0
    """Rotate to a new file once the current one is this big, bytes (checked at each flush); 0: never."""
    max_file_s: float = 0.0
    """Rotate to a new file once the current one is this old, seconds (checked at each flush); 0: never."""
    compression: str = "none"
    """Chunk compression, a key of ``COMPRESSIONS``: ``none``, ``lz4`` or ``zstd``."""
    chunk_bytes: int = 1 << 20
    """A chunk closes once it holds this many bytes of records, bytes (and at every flush)."""
    fsync: bool = True
    """fsync at each flush and at close; False: survives a process crash, not a power cut."""
    queue_bytes: int = 512 << 20
    """Messages waiting for the writer thread, bytes; beyond it they are dropped (and show as gaps)."""
    min_free_bytes: int = 0
    """Stop (file closed) when the disk has less free space than this at a flush, bytes; 0: only a
    failed write (disk full) stops."""

    def __post_init__(self) -> None:
        # Checked here, not on the writer thread, where a bad value would only show as a stopped session.
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression {self.compression!r}, expected one of {sorted(COMPRESSIONS)}")
        if self.flush_s <= 0:
            raise ValueError(f"flush_s={self.flush_s}: must be > 0 seconds")


def recordings(folder: Path | str, prefix: str) -> list[Path]:
    """Closed recordings ``PREFIX*.mcap`` in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(prefix) and p.name.endswith(".mcap") and p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def apply_retention(folder: Path | str, prefix: str, *, max_age_s: float = 0.0, max_total_bytes: int = 0,
                    keep: Path | None = None) -> list[Path]:
    """Delete the oldest closed recordings beyond ``max_total_bytes`` (all
    of them together) or older than ``max_age_s`` (0: no limit); never ``keep``."""
    removed = []
    files = [p for p in recordings(folder, prefix) if p != keep]
    now = time.time()
    total = sum(p.stat().st_size for p in files) + (keep.stat().st_size if keep and keep.exists() else 0)
    for p in files:
        size = p.stat().st_size
        too_old = max_age_s > 0 and now - p.stat().st_mtime > max_age_s
        too_much = max_total_bytes > 0 and total > max_total_bytes
        if too_old or too_much:
            p.unlink(missing_ok=True)
            total -= size
            removed.append(p)
    return removed


@dataclass
class SessionEvent:
    event: str
    """``opened``, ``closed``, ``recovered``, ``removed``, ``stopped`` (disk full or write error)."""
    path: str = ""
    """The file, by its name on disk; for ``stopped`` the file left (``NAME.mcap.active`` when it could
    not be closed: ``detail["closed"]`` is False), '' when none could be started."""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class SessionStats:
    messages: int = 0
    bytes: int = 0
    gaps: int = 0
    dropped: int = 0
    """Messages not recorded: the queue was full, or recording had stopped."""
    unstorable: int = 0
    """Messages MCAP cannot hold (a field out of its range): skipped, counted, logged; recording goes on."""
    files: int = 0
    queued_bytes: int = 0
    state: str = "recording"
    """``recording``, ``stopped`` (disk full / write error) or ``closed``."""
    reason: str = ""
    last_file: WrittenFile | None = None
    """The file the session was last done with (closed at a rotation or the end, or left ``.active``
    by a stop), as it is on disk; None while the first is being written, or when none could be started."""


class RecordingSession:
    """Writes messages on its own thread: rotation, the flush bound, disk full.

    ``submit()`` is called from the receiving thread and never blocks: it
    queues the message (bounded by ``settings.queue_bytes``; beyond it the
    message is dropped, counted, and shows as a seq gap in the file). The
    writer thread closes the chunk and fsyncs at least every ``flush_s``,
    rotates files by size (``max_file_bytes``) and age (``max_file_s``), and
    on a full disk (or ``min_free_bytes`` reached) closes the file cleanly
    and stops; the events it reports (``events()``) tell the owner what to publish.
    """

    def __init__(self, next_path: Callable[[], Path], settings: SessionSettings = SessionSettings(), *,
                 meta: dict[str, str] | None = None,
                 retention: Callable[[Path], list[Path]] | None = None) -> None:
        """``next_path``: the name of the next file (called at the start and at each rotation);
        ``meta``: extra fields of each file's ``sensorium.recording`` metadata; ``retention``: called
        with each file just closed, returns the files it removed."""
        self._next_path = next_path
        self.settings = settings
        self.meta = meta or {}
        self._retention = retention
        self.stats = SessionStats()
        self._burst = BurstLog(log)
        self._closed_gaps = 0
        self._queue: queue.SimpleQueue[tuple[Message, int] | None] = queue.SimpleQueue()
        self._queued = 0
        self._lock = threading.Lock()
        self._events: list[SessionEvent] = []
        self._stopped = threading.Event()
        self.writer: RecordingWriter | None = None
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    # -- the receiving side
    def submit(self, msg: Message, log_time_ns: int) -> bool:
        if self._stopped.is_set():
            self.stats.dropped += 1
            return False
        with self._lock:
            if self._queued + msg.nbytes > self.settings.queue_bytes:
                self.stats.dropped += 1
                return False
            self._queued += msg.nbytes
        self._queue.put((msg, log_time_ns))
        return True

    def events(self) -> list[SessionEvent]:
        with self._lock:
            out, self._events = self._events, []
        return out

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, close the file properly, end the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    @property
    def current_path(self) -> Path | None:
        return self.writer.path if self.writer is not None and not self.writer.closed else None

    # -- the writer thread
    def _event(self, event: str, path: Path | str = "", **detail: Any) -> None:
        with self._lock:
            self._events.append(SessionEvent(event, str(path), detail))

    def _open(self) -> RecordingWriter:
        path = self._next_path()
        s = self.settings
        writer = RecordingWriter(path, compression=s.compression, chunk_bytes=s.chunk_bytes, fsync=s.fsync,
                                 meta=self.meta)
        self.stats.files += 1
        self._event("opened", path)
        return writer

    def _close_writer(self) -> None:
        writer = self.writer
        if writer is None:
            return
        path = writer.close()  # raises with self.writer still set: _stop_on_error names the .active file left
        self.writer = None
        self._closed_gaps += writer.gaps
        self.stats.gaps = self._closed_gaps
        self.stats.last_file = writer.written()
        self._event("closed", path, messages=writer.messages, bytes=path.stat().st_size, gaps=writer.gaps)
        if self._retention is not None:
            for removed in self._retention(path):
                self._event("removed", removed)

    def _run(self) -> None:
        next_flush = time.monotonic() + self.settings.flush_s
        try:
            self.writer = self._open()
            while True:
                try:
                    item = self._queue.get(timeout=max(next_flush - time.monotonic(), 0.0))
                except queue.Empty:
                    item = ()
                if item is None:
                    break
                if item:
                    msg, log_time = item
                    with self._lock:
                        self._queued -= msg.nbytes
                    self.stats.queued_bytes = self._queued
                    if self.writer is None:
                        self.writer = self._open()
                    try:
                        self.writer.write(msg, log_time)
                    except ValueError as exc:  # refused before a byte was written: the file is intact
                        self.stats.unstorable += 1
                        self._burst.error("unstorable", "message_not_recorded", topic=msg.topic,
                                          src=msg.header.src, seq=msg.header.seq, reason=str(exc),
                                          unstorable_total=self.stats.unstorable)
                        continue
                    self.stats.messages += 1
                    self.stats.bytes += msg.nbytes
                now = time.monotonic()
                if now >= next_flush:
                    next_flush = now + self.settings.flush_s
                    self._flush_and_rotate(now)
            self._drain_after_stop()
            self._close_writer()
            self.stats.state = "closed"
        except OSError as exc:
            self._stop_on_error(exc)
        except Exception as exc:  # noqa: BLE001 - a writer bug stops recording, never the process
            self._stop_on_error(OSError(errno.EIO, f"{type(exc).__name__}: {exc}"))

    def _flush_and_rotate(self, now: float) -> None:
        writer = self.writer
        if writer is None:
            return
        writer.flush()
        self.stats.gaps = writer.gaps + self._closed_gaps
        s = self.settings
        if s.min_free_bytes:
            free = shutil.disk_usage(writer.path.parent).free
            if free < s.min_free_bytes:
                raise OSError(errno.ENOSPC, f"{free} bytes free, below min_free_bytes={s.min_free_bytes}",
                              str(writer.path.parent))
        if ((s.max_file_bytes and writer.size() >= s.max_file_bytes)
                or (s.max_file_s and now - writer.opened_at >= s.max_file_s)):
            self._close_writer()
            self.writer = self._open()

    def _drain_after_stop(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item:
                self.stats.dropped += 1

    def _stop_on_error(self, exc: OSError) -> None:
        """Disk full or a write error: keep what is on disk, stop recording, harm nothing else."""
        self._stopped.set()
        full = exc.errno in DISK_FULL_ERRNOS
        writer, self.writer = self.writer, None
        where = f" ({writer.active_path})" if writer is not None and exc.filename is None else ""
        reason = f"{'disk full' if full else 'write error'}: {exc}{where}"
        close_error = ""
        if writer is not None:
            if not writer.closed:
                try:
                    writer.close()
                except OSError as close_exc:
                    # No room even for the summary: the .active file keeps every flushed chunk and is
                    # recovered at the next start (the event below says which file, and why).
                    close_error = str(close_exc)
            self._closed_gaps += writer.gaps
            self.stats.gaps = self._closed_gaps
            self.stats.last_file = writer.written()
        left = self.stats.last_file if writer is not None else None
        self._event("stopped", left.path if left else "", reason=reason, disk_full=full, errno=exc.errno,
                    closed=left.closed if left else False, close_error=close_error,
                    file=left.describe() if left else "none: the file could not be started")
        self._drain_after_stop()
        self.stats.reason = reason
        self.stats.state = "stopped"
