"""Recordings: bus messages in MCAP files that survive a crash.

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

Writing (``bus/recording/mcapwriter.py``): our own streaming MCAP writer,
not the ``mcap`` package's, which copied every frame about five times: large
frame buffers go to ``os.writev`` uncopied as they arrive, the chunk CRC is
computed over the same buffers, and the chunk's header is completed in place
when it closes.

Crash safety: a file being written is named ``NAME.mcap.active``. Every
``flush_s`` (default 1 s) the open chunk is closed, completed and fsynced,
so a crash loses at most that much (a chunk still open at the crash has a
placeholder header and is read as unfinished). A clean close writes the summary and
footer, fsyncs, and renames the file to ``NAME.mcap``. At the next start,
``recover()`` turns a left-over ``.active`` file into a closed ``NAME.mcap``
holding every message up to the last complete chunk.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import queue
import shutil
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import msgpack
import structlog
from isal.isal_zlib import crc32
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Message as McapMessage, Metadata

from bus.burstlog import BurstLog
from bus.envelope import EnvelopeError, Message, decode, frame_parts, unpack_frames
from bus.recording.mcapwriter import MAGIC, UNFINISHED, McapStreamWriter
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


class RecordingError(ValueError):
    """A file that is not a recording, or cannot be read at all; names the path."""


# ----------------------------------------------------------------------------- writing


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
        # Unbuffered: the writer hands whole chunks to os.writev, a buffer would only add a copy.
        self._file = open(self.active_path, "xb", buffering=0)
        self._mcap = McapStreamWriter(self._file, chunk_bytes=chunk_bytes, compression=COMPRESSIONS[compression],
                                      profile=PROFILE, library=LIBRARY)
        self._mcap.add_metadata("sensorium.recording", {"started_ns": str(time.time_ns()), **(meta or {})})
        self._channels: dict[str, int] = {}
        self._gap_channel: int | None = None
        self._last_seq: dict[tuple[str, str], int] = {}
        self.messages = 0
        self.gaps = 0
        self.missed = 0
        self.bytes = 0
        self.opened_at = time.monotonic()
        self.closed = False
        self.flush()  # the header is on disk before the first message

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
        key = (header.src, msg.topic)
        last = self._last_seq.get(key)
        if last is not None and header.seq > last + 1:
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

    def close(self) -> Path:
        """Summary, footer, fsync, rename to the final name; returns it."""
        if self.closed:
            return self.path
        self.closed = True
        try:
            self._mcap.finish()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        os.replace(self.active_path, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abandon(self) -> None:
        """Close the file handle without finishing (after a write error); the
        ``.active`` file stays for ``recover()``."""
        self.closed = True
        try:
            self._file.close()
        except OSError:
            pass


# ----------------------------------------------------------------------------- reading


@dataclass
class Record:
    """One stored message: a bus message (``kind == "message"``) or a gap record."""

    topic: str
    log_time_ns: int
    publish_time_ns: int
    sequence: int
    data: bytes
    kind: str = "message"

    def frames(self) -> list[Any]:
        """The wire frames (raises EnvelopeError on bad framing)."""
        return unpack_frames(self.data, self.topic)

    def decode(self) -> Message:
        """The message as a subscriber would have received it (raises EnvelopeError)."""
        return decode(self.frames())

    def gap(self) -> dict[str, Any]:
        return msgpack.unpackb(self.data, raw=False)


@dataclass
class Damage:
    offset: int
    """Byte offset of the damaged record."""
    reason: str
    messages_lost: int | None = None
    """Messages known to be lost (from the chunk's index), None when unknown."""
    t_start_ns: int | None = None
    t_end_ns: int | None = None


@dataclass
class ScanReport:
    path: Path
    size: int = 0
    complete: bool = False
    """A footer was found: the file was closed properly."""
    messages: int = 0
    """Messages read (gap records included)."""
    chunks: int = 0
    damage: list[Damage] = field(default_factory=list)
    good_until: int = 0
    """Offset after the last record read intact."""
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def bytes_lost(self) -> int:
        return self.size - self.good_until if not self.complete else 0

    def describe(self) -> list[str]:
        """What was lost, in words (empty when the file is intact)."""
        lines = []
        for d in self.damage:
            what = f"{d.messages_lost} message(s)" if d.messages_lost is not None else "an unknown number of messages"
            span = ""
            if d.t_start_ns is not None and d.t_end_ns is not None:
                span = f" recorded between {_fmt_ns(d.t_start_ns)} and {_fmt_ns(d.t_end_ns)}"
            elif d.t_start_ns is not None:
                span = f" recorded from {_fmt_ns(d.t_start_ns)} on"
            lines.append(f"{self.path}: offset {d.offset}: {d.reason}; lost {what}{span}")
        if not self.complete and not any("ends" in d.reason or "unreadable" in d.reason for d in self.damage):
            lines.append(f"{self.path}: no footer (the writer did not close it); read {self.messages} message(s), "
                         f"up to offset {self.good_until} of {self.size}")
        return lines


def _fmt_ns(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns % 1_000_000_000 // 1_000_000:03d}Z"


_KNOWN_OPCODES = {int(op) for op in Opcode}
_CHUNK_HEAD = struct.Struct("<QQQI")  # start, end, uncompressed size, uncompressed crc


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "lz4":
        import lz4.frame  # noqa: PLC0415 - only files written with lz4 need it

        return lz4.frame.decompress(data)
    if compression == "zstd":
        import zstandard  # noqa: PLC0415 - only files written with zstd need it

        return zstandard.decompress(data, size)
    raise ValueError(f"unknown compression {compression!r}")


def scan(path: Path | str, report: ScanReport | None = None, topics: Callable[[str], bool] | None = None,
         ) -> Iterator[Record]:
    """Every record of a recording in file order, read up to the damage.

    Damage never raises: a chunk whose CRC or compression is bad is skipped
    (the framing around it is intact), and a torn or unreadable record ends
    the scan; ``report`` (fill-in) says what was lost. Raises RecordingError
    only when the file is not an MCAP file at all.
    """
    path = Path(path)
    report = report if report is not None else ScanReport(path)
    report.path = path
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        report.size = size
        if size < len(MAGIC):
            raise RecordingError(f"{path}: {size} bytes, too short for an MCAP file")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        if buf[:8] != MAGIC:
            raise RecordingError(f"{path}: not an MCAP file (bad magic)")
        channels: dict[int, Channel] = {}
        pos = 8
        report.good_until = pos
        lost_chunk: Damage | None = None
        while pos < size:
            if pos + 9 > size:
                report.damage.append(Damage(pos, f"file ends inside a record header ({size - pos} bytes left)"))
                break
            opcode, length = buf[pos], int.from_bytes(buf[pos + 1:pos + 9], "little")
            if opcode not in _KNOWN_OPCODES:
                report.damage.append(Damage(pos, f"unreadable record (opcode 0x{opcode:02x}): framing lost"))
                break
            end = pos + 9 + length
            if end > size:
                if opcode == Opcode.CHUNK and length == UNFINISHED:
                    d = Damage(pos, f"file ends inside an unfinished chunk ({size - pos - 9} bytes of it written, "
                                    "its header never completed)")
                else:
                    d = Damage(pos, f"file ends inside a {Opcode(opcode).name.lower()} record "
                                    f"({size - pos - 9} of {length} bytes)")
                if opcode == Opcode.CHUNK and size - pos - 9 >= 16:
                    d.t_start_ns, d.t_end_ns = struct.unpack_from("<QQ", buf, pos + 9)
                    if length == UNFINISHED:
                        d.t_end_ns = None  # the placeholder knew only when the chunk began
                report.damage.append(d)
                break
            content = buf[pos + 9:end]
            if opcode == Opcode.MESSAGE_INDEX and lost_chunk is not None:
                n = int.from_bytes(content[2:6], "little") // 16
                lost_chunk.messages_lost = (lost_chunk.messages_lost or 0) + n
            elif opcode != Opcode.MESSAGE_INDEX:
                lost_chunk = None
            if opcode == Opcode.CHUNK:
                try:
                    records = _chunk_records(content)
                except Exception as exc:  # noqa: BLE001 - any failure of one chunk is damage, not a crash
                    start, stop = struct.unpack_from("<QQ", content, 0) if len(content) >= 16 else (None, None)
                    lost_chunk = Damage(pos, f"bad chunk ({exc})", t_start_ns=start, t_end_ns=stop)
                    report.damage.append(lost_chunk)
                    records = []
                else:
                    report.chunks += 1
                for rec in records:
                    yield from _emit(rec, channels, report, topics)
            elif opcode in (Opcode.CHANNEL, Opcode.MESSAGE, Opcode.METADATA):
                try:
                    stream = ReadDataStream(io.BytesIO(content))
                    rec = (Channel.read(stream) if opcode == Opcode.CHANNEL else
                           McapMessage.read(stream, length) if opcode == Opcode.MESSAGE else Metadata.read(stream))
                except Exception as exc:  # noqa: BLE001
                    report.damage.append(Damage(pos, f"bad {Opcode(opcode).name.lower()} record ({exc})"))
                else:
                    if isinstance(rec, Metadata):
                        report.metadata[rec.name] = dict(rec.metadata)
                    else:
                        yield from _emit(rec, channels, report, topics)
            elif opcode == Opcode.FOOTER:
                report.complete = True
                report.good_until = size
                break
            pos = end
            report.good_until = pos
    finally:
        buf.close()


def _chunk_records(content: bytes) -> list[Any]:
    start, stop, usize, crc = _CHUNK_HEAD.unpack_from(content, 0)
    p = _CHUNK_HEAD.size
    clen = int.from_bytes(content[p:p + 4], "little")
    compression = bytes(content[p + 4:p + 4 + clen]).decode("utf-8")
    p += 4 + clen
    dlen = int.from_bytes(content[p:p + 8], "little")
    p += 8
    if p + dlen > len(content):
        raise ValueError(f"data of {dlen} bytes runs past the record")
    data = _decompress(compression, bytes(content[p:p + dlen]), usize)
    if len(data) != usize:
        raise ValueError(f"{len(data)} bytes after decompression, header says {usize}")
    if crc and (actual := crc32(data)) != crc:
        raise ValueError(f"crc 0x{actual:08x} does not match 0x{crc:08x}")
    records: list[Any] = []
    stream = ReadDataStream(io.BytesIO(data))
    while stream.count < len(data):
        opcode = stream.read1()
        length = stream.read8()
        if opcode == Opcode.CHANNEL:
            records.append(Channel.read(stream))
        elif opcode == Opcode.MESSAGE:
            records.append(McapMessage.read(stream, length))
        else:
            stream.read(length)
    return records


def _emit(rec: Any, channels: dict[int, Channel], report: ScanReport,
          topics: Callable[[str], bool] | None) -> Iterator[Record]:
    if isinstance(rec, Channel):
        channels[rec.id] = rec
        return
    channel = channels.get(rec.channel_id)
    if channel is not None:
        topic, kind = channel.topic, "gap" if channel.metadata.get("layout") == GAP_LAYOUT else "message"
    else:
        # Its channel was defined in a lost chunk: a message names its topic itself, a gap record is a map.
        try:
            topic, kind = bytes(unpack_frames(rec.data)[0]).decode("utf-8"), "message"
        except EnvelopeError:
            try:
                msgpack.unpackb(rec.data, raw=False)["missed"]
                topic, kind = GAP_TOPIC, "gap"
            except (ValueError, TypeError, KeyError, msgpack.UnpackException):
                report.damage.append(Damage(report.good_until, f"message on unknown channel {rec.channel_id}", 1))
                return
    report.messages += 1
    if topics is not None and not topics(topic):
        return
    yield Record(topic, rec.log_time, rec.publish_time, rec.sequence, rec.data, kind)


# ----------------------------------------------------------------------------- recovery and retention


@dataclass
class Recovered:
    source: Path
    path: Path
    messages: int
    report: ScanReport


def recover(active: Path | str) -> Recovered:
    """Turn a ``NAME.mcap.active`` left by a crash into a closed ``NAME.mcap``
    holding every message up to the last complete chunk. Atomic: the new
    file is written beside it and renamed; the ``.active`` file goes last."""
    active = Path(active)
    final = active.with_name(active.name[: -len(ACTIVE_SUFFIX)]) if active.name.endswith(ACTIVE_SUFFIX) else \
        active.with_name(active.name + ".recovered.mcap")
    tmp = final.with_name(f".{final.name}.{os.getpid()}.recovering")
    report = ScanReport(active)
    count = 0
    with open(tmp, "wb", buffering=0) as f:
        out = McapStreamWriter(f, profile=PROFILE, library=LIBRARY)
        chans: dict[tuple[str, str], int] = {}
        try:
            for rec in scan(active, report):
                layout = GAP_LAYOUT if rec.kind == "gap" else FRAMES_LAYOUT
                cid = chans.get((rec.topic, layout))
                if cid is None:
                    meta = {"layout": layout} if rec.kind == "gap" else {"layout": layout, "envelope": "1"}
                    cid = chans[(rec.topic, layout)] = out.register_channel(rec.topic, "msgpack", meta)
                out.add_message(cid, rec.log_time_ns, rec.publish_time_ns, rec.sequence, [rec.data], len(rec.data))
                count += 1
        except RecordingError:
            pass  # not even an MCAP header: an empty recording says so below
        for name, meta in report.metadata.items():
            out.add_metadata(name, meta)
        lost = report.describe()
        out.add_metadata("sensorium.recovery", {
            "source": active.name, "recovered_ns": str(time.time_ns()), "messages": str(count),
            "bytes_lost": str(report.bytes_lost), "damage": "\n".join(lost) or "none"})
        out.finish()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    if active.name.endswith(ACTIVE_SUFFIX):
        active.unlink()
    fsync_dir(final.parent)
    return Recovered(active, final, count, report)


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


# ----------------------------------------------------------------------------- a recording session


@dataclass
class SessionEvent:
    event: str
    """``opened``, ``closed``, ``recovered``, ``removed``, ``stopped`` (disk full or write error)."""
    path: str = ""
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


class RecordingSession:
    """Writes messages on its own thread: rotation, the flush bound, disk full.

    ``submit()`` is called from the receiving thread and never blocks: it
    queues the message (bounded by ``queue_bytes``; beyond it the message is
    dropped, counted, and shows as a seq gap in the file). The writer thread
    closes the chunk and fsyncs at least every ``flush_s``, rotates files by
    size (``max_file_bytes``) and age (``max_file_s``), and on a full disk
    (or ``min_free_bytes`` reached) closes the file cleanly and stops; the
    events it reports (``events()``) tell the owner what to publish.
    """

    def __init__(self, next_path: Callable[[], Path], *, flush_s: float = 1.0, max_file_bytes: int = 0,
                 max_file_s: float = 0.0, compression: str = "none", chunk_bytes: int = 1 << 20,
                 fsync: bool = True, queue_bytes: int = 512 << 20, min_free_bytes: int = 0,
                 meta: dict[str, str] | None = None,
                 retention: Callable[[Path], list[Path]] | None = None) -> None:
        self._next_path = next_path
        self.flush_s = flush_s
        self.max_file_bytes = max_file_bytes
        self.max_file_s = max_file_s
        self.compression = compression
        self.chunk_bytes = chunk_bytes
        self.fsync = fsync
        self.queue_bytes = queue_bytes
        self.min_free_bytes = min_free_bytes
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
            if self._queued + msg.nbytes > self.queue_bytes:
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
        writer = RecordingWriter(path, compression=self.compression, chunk_bytes=self.chunk_bytes,
                                 fsync=self.fsync, meta=self.meta)
        self.stats.files += 1
        self._event("opened", path)
        return writer

    def _close_writer(self) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        self._closed_gaps += writer.gaps
        path = writer.close()
        self.stats.gaps = self._closed_gaps
        self._event("closed", path, messages=writer.messages, bytes=path.stat().st_size, gaps=writer.gaps)
        if self._retention is not None:
            for removed in self._retention(path):
                self._event("removed", removed)

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_s
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
                    next_flush = now + self.flush_s
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
        if self.min_free_bytes:
            free = shutil.disk_usage(writer.path.parent).free
            if free < self.min_free_bytes:
                raise OSError(errno.ENOSPC, f"{free} bytes free, below min_free_bytes={self.min_free_bytes}",
                              str(writer.path.parent))
        if ((self.max_file_bytes and writer.size() >= self.max_file_bytes)
                or (self.max_file_s and now - writer.opened_at >= self.max_file_s)):
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
        reason = f"{'disk full' if full else 'write error'}: {exc}"
        writer, self.writer = self.writer, None
        kept = ""
        if writer is not None:
            try:
                kept = str(writer.close())
            except OSError:
                # No room even for the summary: the .active file keeps every
                # flushed chunk and is recovered at the next start.
                writer.abandon()
                kept = str(writer.active_path)
        self._event("stopped", kept, reason=reason, disk_full=full, errno=exc.errno)
        self._drain_after_stop()
        self.stats.reason = reason
        self.stats.state = "stopped"
