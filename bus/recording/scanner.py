"""Reading a recording: ``scan`` up to the damage, ``ScanReport`` of what was
lost, and ``recover`` of a ``NAME.mcap.active`` file left by a crash.

The scanner walks the file record by record over an mmap, so a crash-torn
or partly corrupt recording gives everything before the damage (and, past a
chunk with a bad CRC, everything after it). Damage never raises; only a file
that is not MCAP at all does (``RecordingError``).
"""

from __future__ import annotations

import io
import mmap
import os
import struct
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

from bus.envelope import EnvelopeError, Message, decode, unpack_frames
from bus.recording.mcapwriter import MAGIC, UNFINISHED, McapStreamWriter
from bus.recording.writer import (ACTIVE_SUFFIX, DISK_FULL_ERRNOS, FRAMES_LAYOUT, GAP_LAYOUT, GAP_TOPIC, LIBRARY,
                                  PROFILE)
from config.storage import fsync_dir


log = structlog.get_logger("recording")


class RecordingError(ValueError):
    """A file that is not a recording, or cannot be read at all; names the path."""


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


# ----------------------------------------------------------------------------- recovery


@dataclass
class Recovered:
    source: Path
    path: Path
    messages: int
    report: ScanReport


class RecoveryError(OSError):
    """A recovery that could not complete (disk full, a read or write error): its partial output
    is removed and the ``.active`` file left as it was; the message says which files and what next."""

    def __str__(self) -> str:
        return str(self.strerror)


def recover(active: Path | str) -> Recovered:
    """Turn a ``NAME.mcap.active`` left by a crash into a closed ``NAME.mcap``
    holding every message up to the last complete chunk. Atomic: the new
    file is written beside it and renamed; the ``.active`` file goes last.

    Raises RecoveryError (an OSError, same errno) when the new file cannot be
    written: it is removed then, and ``active`` is untouched."""
    active = Path(active)
    final = active.with_name(active.name[: -len(ACTIVE_SUFFIX)]) if active.name.endswith(ACTIVE_SUFFIX) else \
        active.with_name(active.name + ".recovered.mcap")
    tmp = final.with_name(f".{final.name}.{os.getpid()}.recovering")
    report = ScanReport(active)
    try:
        count = _write_recovered(active, tmp, report)
        os.replace(tmp, final)
    except BaseException as exc:
        removed = _remove_partial(tmp)
        if not isinstance(exc, OSError):
            raise
        cause = f"disk full ({exc})" if exc.errno in DISK_FULL_ERRNOS else str(exc)
        # The new file is about as big as the old one, less what the crash tore.
        then = (f"free about {_fmt_bytes(active.stat().st_size)} beside it, then "
                if exc.errno in DISK_FULL_ERRNOS else "")
        partial = "its partial output was removed" if removed else f"its partial output {tmp} could NOT be removed"
        raise RecoveryError(exc.errno, f"{active}: recovery into {final} stopped: {cause}; {partial} and "
                                       f"{active} is untouched: {then}run `sensorium info --recover {active}` "
                                       "again") from exc
    if active.name.endswith(ACTIVE_SUFFIX):
        active.unlink()
    fsync_dir(final.parent)
    return Recovered(active, final, count, report)


def _write_recovered(active: Path, tmp: Path, report: ScanReport) -> int:
    """Every readable record of ``active`` into a new, closed file ``tmp``; returns the record count."""
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
    return count


def _remove_partial(tmp: Path) -> bool:
    try:
        tmp.unlink(missing_ok=True)
    except OSError as exc:
        log.error("recovery_partial_not_removed", path=str(tmp), error=str(exc))
        return False
    return True


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"
