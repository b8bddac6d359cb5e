"""Writing one recording file: the file layout, ``RecordingWriter``.

File layout (docs/architecture.md, "Recordings"):

* MCAP (https://mcap.dev), profile ``sensorium``: chunked, each chunk
  CRC-checked, with message indexes and a summary, so standard tools
  (``mcap info``, Foxglove, the ``mcap`` Python reader) open it.
* One channel per bus topic, ``message_encoding = "msgpack"``, no schema
  (self-describing), channel metadata ``{"layout": "sensorium-frames/1",
  "envelope": "1"}``. A message's data is its exact wire frames: one
  msgpack array of bins ``[topic, header, body, array0, ...]``
  (``bus.envelope.pack_frames``), so a replay is bit-faithful, arrays
  included, and a message stays readable even if the chunk that defined its
  channel is lost. ``log_time`` is when the recorder received it, ``publish_time``
  the header's ``ts``, ``sequence`` the header's ``seq`` (mod 2^32).
* Channel ``recorder.gap`` (metadata ``{"layout": "sensorium-gap/1"}``):
  one msgpack map per seq gap seen while recording: ``topic``, ``src``,
  ``after_seq``, ``next_seq``, ``missed``.
* Metadata record ``sensorium.recording``: who recorded what, from when.
  A recovered file also has ``sensorium.recovery`` saying what was lost.

The bytes go through our own streaming MCAP writer
(``bus/recording/mcapwriter.py``), not the ``mcap`` package's, which copied
every frame about five times.

Crash safety: a file being written is named ``NAME.mcap.active``. Every
flush (the session's ``flush_s``, default 1 s) the open chunk is closed,
completed and fsynced, so a crash loses at most that much (a chunk still
open at the crash has a placeholder header and is read as unfinished). A
clean close writes the summary and footer, fsyncs, and renames the file to
``NAME.mcap``; ``bus.recording.scanner.recover`` turns a left-over
``.active`` file into a closed ``NAME.mcap``.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import structlog

from bus.envelope import Message, frame_parts
from bus.pubsub import MAX_GAP
from bus.recording.mcapwriter import McapStreamWriter
from config.storage import fsync_dir

log = structlog.get_logger("recording")

PROFILE = "sensorium"
LIBRARY = "sensorium-recorder/1"
FRAMES_LAYOUT = "sensorium-frames/1"
GAP_LAYOUT = "sensorium-gap/1"
GAP_TOPIC = "recorder.gap"
ACTIVE_SUFFIX = ".active"
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
"""Write errors that mean "no room": the recording stops cleanly, nothing else is harmed."""

COMPRESSIONS = {"none": "", "lz4": "lz4", "zstd": "zstd"}
"""Chunk compression by setting name -> MCAP compression name."""


@dataclass(frozen=True)
class WrittenFile:
    """A recording file a writer is done with, as it is on disk."""

    path: Path
    """Its name on disk: ``NAME.mcap`` when closed, ``NAME.mcap.active`` when it could not be closed."""
    closed: bool
    """Summary and footer written, renamed to ``NAME.mcap``: any MCAP reader opens it. False: the
    ``.active`` file needs ``recover()``."""
    messages: int
    """Records written to it: messages and gap records."""
    kept: int
    """Of ``messages``, those in complete chunks: what ``recover()`` keeps at least (all when closed)."""

    def describe(self) -> str:
        """The file's name and state in one line, with what to do about a ``.active`` file."""
        if self.closed:
            return f"{self.path} (closed)"
        final = self.path.name.removesuffix(ACTIVE_SUFFIX)
        return (f"{self.path} (NOT closed: it holds at least {self.kept} of the {self.messages} message(s) "
                f"written, those in complete chunks; `sensorium info --recover {self.path}` makes it a "
                f"closed {final}, given about its size free beside it)")


class RecordingWriter:
    """One MCAP file being written: channels per topic, gap records, flush and close.

    Not thread-safe: one thread writes (``RecordingSession`` runs it on its own).
    """

    def __init__(self, path: Path | str, *, compression: str = "none", chunk_bytes: int = 1 << 20,
                 fsync: bool = True, meta: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.active_path = self.path.with_name(self.path.name + ACTIVE_SUFFIX)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if compression not in COMPRESSIONS:
            raise ValueError(f"{self.path}: compression {compression!r}, expected one of {sorted(COMPRESSIONS)}")
        self._channels: dict[str, int] = {}
        self._gap_channel: int | None = None
        self._last_seq: dict[tuple[tuple[str, str, str], str], int] = {}
        self.messages = 0
        self.gaps = 0
        self.missed = 0
        self.bytes = 0
        self.opened_at = time.monotonic()
        self.closed = False
        """No more writes: closed properly, or abandoned after a write error."""
        self.finished = False
        """Summary and footer written, fsynced, and the file renamed to ``path``."""
        # Unbuffered: the writer hands whole chunks to os.writev, a buffer would only add a copy.
        self._file = open(self.active_path, "xb", buffering=0)
        try:
            self._mcap = McapStreamWriter(self._file, chunk_bytes=chunk_bytes,
                                          compression=COMPRESSIONS[compression], profile=PROFILE, library=LIBRARY)
            self._mcap.add_metadata("sensorium.recording", {"started_ns": str(time.time_ns()), **(meta or {})})
            self.flush()  # the header is on disk before the first message
        except BaseException as exc:
            # Not even the header fits (disk full): a file without a message is no recording, and an
            # empty .active would only be "recovered" into an empty file at the next start.
            self.closed = True
            self._file.close()
            try:
                self.active_path.unlink(missing_ok=True)
            except OSError as unlink_exc:
                log.warning("recording_unlink_failed", path=str(self.active_path), error=str(unlink_exc))
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = str(self.active_path)
            raise

    def _channel(self, topic: str) -> int:
        cid = self._channels.get(topic)
        if cid is None:
            cid = self._channels[topic] = self._mcap.register_channel(
                topic, "msgpack", {"layout": FRAMES_LAYOUT, "envelope": "1"})
        return cid

    def write(self, msg: Message, log_time_ns: int) -> None:
        """Append one received message (``msg.frames`` must hold its wire frames)."""
        if msg.frames is None:
            raise ValueError(f"{msg.topic} seq {msg.header.seq}: message received without its frames")
        header = msg.header
        key = (header.sender, msg.topic)  # per sender (host, src, iid): a restart is no gap
        last = self._last_seq.get(key)
        if last is not None and last + 1 < header.seq <= last + 1 + MAX_GAP:  # a longer jump: no loss (bus.pubsub)
            self._write_gap(msg.topic, header.src, last, header.seq, log_time_ns)
        self._last_seq[key] = header.seq
        parts, size = frame_parts(msg.frames)  # the frames themselves, uncopied, behind their msgpack framing
        self._mcap.add_message(self._channel(msg.topic), log_time_ns, header.ts, header.seq & 0xFFFFFFFF, parts, size)
        self.messages += 1
        self.bytes += size

    def _write_gap(self, topic: str, src: str, after: int, nxt: int, log_time_ns: int) -> None:
        if self._gap_channel is None:
            self._gap_channel = self._mcap.register_channel(GAP_TOPIC, "msgpack", {"layout": GAP_LAYOUT})
        missed = nxt - after - 1
        data = msgpack.packb({"topic": topic, "src": src, "after_seq": after, "next_seq": nxt, "missed": missed})
        self._mcap.add_message(self._gap_channel, log_time_ns, log_time_ns, 0, [data], len(data))
        self.gaps += 1
        self.missed += missed

    def flush(self) -> None:
        """Close the open chunk and put everything on disk (fsync unless disabled)."""
        self._mcap.close_chunk()
        if self.fsync:
            os.fsync(self._file.fileno())

    def size(self) -> int:
        return self._mcap.tell()

    @property
    def kept_messages(self) -> int:
        """Records (messages and gap records) in complete chunks: what survives a crash now."""
        return self._mcap.message_count

    def written(self) -> WrittenFile:
        """The file as it is on disk now (meant for after ``close()`` or ``abandon()``)."""
        total = self.messages + self.gaps
        if self.finished:
            return WrittenFile(self.path, True, total, total)
        return WrittenFile(self.active_path, False, total, self.kept_messages)

    def close(self) -> Path:
        """Summary, footer, fsync, rename to the final name; returns it.

        When that fails (no room for the summary), the file is abandoned: it stays
        ``NAME.mcap.active`` for ``recover()``, and the error is raised.
        """
        if self.finished:
            return self.path
        if self.closed:
            raise OSError(errno.EBADF, "abandoned after a write error, left for recovery", str(self.active_path))
        try:
            self._mcap.finish()
            os.fsync(self._file.fileno())
        except BaseException:
            self.abandon()
            raise
        self.closed = True
        self._file.close()
        os.replace(self.active_path, self.path)
        self.finished = True
        fsync_dir(self.path.parent)
        return self.path

    def abandon(self) -> None:
        """Close the file handle without finishing (after a write error); the
        ``.active`` file stays for ``recover()``."""
        self.closed = True
        try:
            self._file.close()
        except OSError as exc:
            # Every flushed chunk is on disk already; only the handle's release failed. Not raised:
            # the caller is handling the write error that got here, which says more.
            log.warning("recording_abandon_close_failed", path=str(self.active_path), error=str(exc))
