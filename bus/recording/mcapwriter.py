"""A streaming MCAP writer that hands the message buffers to the file uncopied.

The ``mcap`` package's ``Writer`` copies every message about five times on
its way to the disk (the message record, the chunk buffer, the chunk record,
the compressed copy, the file buffer). For camera frames (0.9 MB each, 30 a
second) those copies, not the disk, bounded the recorder (0.31x a raw append,
bench/README.md). This writer produces the same MCAP layout
(https://mcap.dev/spec, the records of ``mcap.records``) with one copy of a
large buffer, the kernel's:

* A chunk is streamed. The small pieces of its records (message record
  headers, msgpack framing, short frames: a few hundred bytes) are copied
  into a ``bytearray``; a large frame buffer (``LARGE_BYTES`` and more) goes
  to ``os.writev`` as it arrives, uncopied, together with the small bytes
  before it. The chunk CRC is computed over the same buffers; the message index is
  kept as (log_time, offset) pairs per channel.
* The CRC is ISA-L's (``isal.isal_zlib.crc32``: the same CRC-32 as
  ``zlib.crc32``, vectorised: ~80 GB/s on cached data against zlib's
  ~4 GB/s here, where zlib's alone cost a quarter of the time of the write).
  It runs right after a buffer's write, which has just pulled the buffer
  into the CPU cache: 35 us per 0.9 MB frame instead of 77 us from memory.
* A chunk record's header (length, time range, size, CRC) is known only
  when the chunk closes. The first write of a chunk puts a placeholder
  header whose length is ``UNFINISHED`` (2^64-1: past the end of any file);
  closing the chunk writes the rest of it, overwrites the placeholder in
  place (``os.pwrite``, 49 bytes), then writes the message indexes. A chunk
  that closes before any large buffer came is written whole, in one
  ``writev``. A crash inside a chunk leaves the placeholder, which
  ``bus.recording.scan`` reads as "file ends inside an unfinished chunk":
  every chunk before it is intact.
* The summary (channels, statistics, chunk indexes, metadata indexes,
  summary offsets) and the footer (with the summary CRC) are written by
  ``finish()``; they are small and built with the ``mcap`` package's record
  classes, so their layout has one implementation.

Chunks are uncompressed by default; ``lz4``/``zstd`` stay available: then
the chunk is held in memory (references to the large buffers), joined and
compressed when it closes (copies, as before). The data-section CRC is 0
("not computed", the ``mcap`` writer's default): it would be a second CRC
pass over every byte.

A failed write (disk full) leaves the writer refusing any further write,
``finish()`` included: a summary after a torn chunk would describe bytes
that are not there. The file then ends at the last complete record plus the
torn piece, which ``bus.recording.recover`` cuts off.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Any, BinaryIO, Sequence

from isal.isal_zlib import crc32
from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import Channel, ChunkIndex, DataEnd, Header, Metadata, MetadataIndex, Statistics, SummaryOffset

MAGIC = bytes([137, 77, 67, 65, 80, 48, 13, 10])
COMPRESSIONS = ("", "lz4", "zstd")
LARGE_BYTES = 16 << 10
"""Buffers this big or bigger go to the file as they are; smaller ones are copied
into the chunk's small bytes (fewer iovecs, fewer crc32 calls)."""
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
UNFINISHED = (1 << 64) - 1
"""The record length of a chunk's placeholder header: the chunk was still being written."""

_MESSAGE_HEAD = struct.Struct("<BQHIQQ")  # opcode, record length, channel id, sequence, log time, publish time
_MESSAGE_FIXED = 2 + 4 + 8 + 8
_CHUNK_HEAD = struct.Struct("<BQQQQII")  # opcode, record length, start, end, uncompressed size, crc, len(compression)
_U64 = struct.Struct("<Q")
_FOOTER_HEAD = struct.Struct("<BQQQ")  # opcode, record length (20), summary start, summary offset start


def _record(rec: Any) -> bytes:
    out = RecordBuilder()
    rec.write(out)
    return out.end()


def writev_all(fd: int, bufs: Sequence[Any]) -> int:
    """Write every buffer, in order, with as few ``writev`` calls as the
    kernel allows (IOV_MAX buffers each; short writes resumed). Returns the bytes written."""
    pending = list(bufs)
    total = 0
    i = 0
    while i < len(pending):
        batch = pending[i:i + IOV_MAX]
        done = os.writev(fd, batch)
        total += done
        for b in batch:
            n = len(b)
            if done >= n:
                done -= n
                i += 1
            else:
                pending[i] = memoryview(b)[done:]
                break
    return total


class McapStreamWriter:
    """Writes one MCAP file through a raw (unbuffered) binary file.

    Not thread-safe. ``tell()`` is the number of bytes written so far.
    """

    def __init__(self, file: BinaryIO, *, chunk_bytes: int = 1 << 20, compression: str = "",
                 profile: str = "", library: str = "") -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r}: expected one of {COMPRESSIONS}")
        self._file = file
        self._fd = file.fileno()
        self._pos = file.tell()
        self.chunk_bytes = chunk_bytes
        self.compression = compression
        self._failed: OSError | None = None
        self._channels: dict[int, Channel] = {}
        self._channel_counts: dict[int, int] = {}
        self._metadata_index: list[MetadataIndex] = []
        self._chunk_index: list[tuple[int, int, int, int, dict[int, int], int, int, int]] = []
        """(start, end, offset, length, message index offsets, message index length, stored size, size)."""
        self.message_count = 0
        self._t_first = self._t_last = 0
        self._new_chunk()
        self._write([MAGIC, _record(Header(profile, library))])

    # -- the open chunk
    def _new_chunk(self) -> None:
        self._small = bytearray()
        """The chunk's bytes not written yet (its small pieces since the last large buffer)."""
        self._held: list[Any] = []
        """Compressed chunks only: the chunk's records, held until it closes."""
        self._size = 0
        """Bytes of records in the open chunk, written or not."""
        self._crc = 0
        """CRC of the chunk's bytes written (or held) so far: not of ``_small``."""
        self._chunk_at: int | None = None
        """File offset of the open chunk's placeholder header, once part of the chunk is on disk."""
        self._index: dict[int, list[int]] = {}
        """Channel id -> flat [log_time, offset, log_time, offset, ...], offsets within the chunk's records."""
        self._messages = 0
        self._t_start = self._t_end = 0

    def _chunk_head(self, stored_size: int, size: int, crc: int) -> bytes:
        """A chunk record up to its records; ``stored_size``: their size on disk (UNFINISHED: a placeholder)."""
        comp = self.compression.encode()
        length = UNFINISHED if stored_size == UNFINISHED else 8 + 8 + 8 + 4 + 4 + len(comp) + 8 + stored_size
        return (_CHUNK_HEAD.pack(Opcode.CHUNK, length, self._t_start, self._t_end, size, crc, len(comp))
                + comp + _U64.pack(stored_size))

    def _take_small(self) -> bytearray:
        small, self._small = self._small, bytearray()
        if small:
            self._crc = crc32(small, self._crc)
        return small

    def _large(self, part: Any) -> None:
        """A large buffer of the open chunk: written now, after the small bytes before it (or held, compressed)."""
        small = self._take_small()
        if self.compression:
            self._crc = crc32(part, self._crc)
            self._held += (small, part)
            return
        bufs: list[Any] = [small, part]
        if self._chunk_at is None:
            self._chunk_at = self._pos
            bufs.insert(0, self._chunk_head(UNFINISHED, 0, 0))
        self._write(bufs)
        # After the write, not before: the kernel's copy has just pulled the buffer into the CPU cache,
        # where the CRC runs ~10x faster than from memory (measured: bench/README.md, recorder).
        self._crc = crc32(part, self._crc)

    def register_channel(self, topic: str, message_encoding: str, metadata: dict[str, str]) -> int:
        """A new channel (no schema); its record goes into the open chunk, as the
        ``mcap`` writer does, so a reader meets it before its first message."""
        cid = len(self._channels) + 1
        channel = Channel(id=cid, topic=topic, message_encoding=message_encoding, metadata=metadata, schema_id=0)
        self._channels[cid] = channel
        self._channel_counts[cid] = 0
        data = _record(channel)
        self._small += data
        self._size += len(data)
        return cid

    def add_message(self, channel_id: int, log_time: int, publish_time: int, sequence: int,
                    parts: Sequence[Any], size: int) -> None:
        """One message whose data is the concatenation of ``parts`` (``size`` bytes
        in all); large parts go to the file as they are, never copied here."""
        if channel_id not in self._channels:
            raise ValueError(f"message on unregistered channel {channel_id}")
        # Packed before any state changes: a value that does not fit (a negative time) must not leave
        # the chunk's index and sizes counting a message that was never written.
        try:
            head = _MESSAGE_HEAD.pack(Opcode.MESSAGE, _MESSAGE_FIXED + size, channel_id, sequence, log_time,
                                      publish_time)
        except struct.error as exc:
            raise ValueError(f"message on channel {channel_id} (sequence {sequence}, log time {log_time}) "
                             f"cannot be stored: {exc}") from None
        if self._messages == 0:
            self._t_start = self._t_end = log_time
        elif log_time < self._t_start:
            self._t_start = log_time
        elif log_time > self._t_end:
            self._t_end = log_time
        entries = self._index.get(channel_id)
        if entries is None:
            entries = self._index[channel_id] = []
        entries += (log_time, self._size)
        self._size += _MESSAGE_HEAD.size + size
        self._messages += 1
        self._channel_counts[channel_id] += 1
        small = self._small
        small += head
        for part in parts:
            if len(part) < LARGE_BYTES:
                small += part
            else:
                self._large(part)
                small = self._small
        if self._size >= self.chunk_bytes:
            self.close_chunk()

    def close_chunk(self) -> None:
        """Write the open chunk's end, its real header and its message indexes
        (nothing when it holds no message: a channel record waits for the next)."""
        if self._messages == 0:
            return
        size = self._size
        rest: list[Any] = [self._take_small()]
        stored_size = size
        if self.compression:
            rest = [_compress(self.compression, b"".join([*self._held, *rest]))]
            stored_size = len(rest[0])
        head = self._chunk_head(stored_size, size, self._crc)
        chunk_offset = self._pos if self._chunk_at is None else self._chunk_at
        chunk_length = len(head) + stored_size
        index_offsets: dict[int, int] = {}
        indexes = []
        at = chunk_offset + chunk_length
        for cid, flat in self._index.items():
            n = len(flat) // 2
            rec = struct.pack(f"<BQHI{2 * n}Q", Opcode.MESSAGE_INDEX, 2 + 4 + 16 * n, cid, 16 * n, *flat)
            index_offsets[cid] = at
            at += len(rec)
            indexes.append(rec)
        if self._chunk_at is None:
            self._write([head, *rest, *indexes])  # the whole chunk at once
        else:
            self._write(rest)  # the streamed chunk's last bytes, its real header, its indexes
            self._write_at(self._chunk_at, head)
            self._write(indexes)
        self._chunk_index.append((self._t_start, self._t_end, chunk_offset, chunk_length, index_offsets,
                                  at - chunk_offset - chunk_length, stored_size, size))
        if self.message_count == 0:
            self._t_first, self._t_last = self._t_start, self._t_end
        else:
            self._t_first, self._t_last = min(self._t_first, self._t_start), max(self._t_last, self._t_end)
        self.message_count += self._messages
        self._new_chunk()

    # -- records outside chunks
    def add_metadata(self, name: str, metadata: dict[str, str]) -> None:
        """A metadata record (after the open chunk, closed first), indexed in the summary."""
        self.close_chunk()
        data = _record(Metadata(name=name, metadata=metadata))
        self._metadata_index.append(MetadataIndex(offset=self._pos, length=len(data), name=name))
        self._write([data])

    def tell(self) -> int:
        """Bytes written to the file so far."""
        return self._pos

    def _write(self, bufs: Sequence[Any]) -> None:
        if self._failed is not None:
            raise OSError(self._failed.errno, f"an earlier write failed ({self._failed}); the file ends torn "
                                              f"at offset {self._pos} and is left for recovery")
        try:
            self._pos += writev_all(self._fd, bufs)
        except OSError as exc:
            self._failed = exc
            raise

    def _write_at(self, offset: int, data: bytes) -> None:
        if self._failed is not None:
            raise OSError(self._failed.errno, f"an earlier write failed ({self._failed})")
        try:
            done = os.pwrite(self._fd, data, offset)
            if done != len(data):
                raise OSError(errno.EIO, f"short write at offset {offset}: {done} of {len(data)} bytes")
        except OSError as exc:
            self._failed = exc
            raise

    def finish(self) -> None:
        """Write the open chunk, the data end, the summary and the footer. The
        file is not closed (nor fsynced)."""
        self.close_chunk()
        self._write([_record(DataEnd(data_section_crc=0))])
        summary_start = self._pos
        out = RecordBuilder()
        offsets: list[SummaryOffset] = []

        def group(opcode: int, records: Sequence[Any]) -> None:
            if not records:
                return
            start = out.count
            for rec in records:
                rec.write(out)
            offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + start,
                                         group_length=out.count - start))

        group(Opcode.CHANNEL, list(self._channels.values()))
        group(Opcode.STATISTICS, [Statistics(
            message_count=self.message_count, schema_count=0, channel_count=len(self._channels),
            attachment_count=0, metadata_count=len(self._metadata_index), chunk_count=len(self._chunk_index),
            message_start_time=self._t_first, message_end_time=self._t_last,
            channel_message_counts=dict(self._channel_counts))])
        group(Opcode.CHUNK_INDEX, [ChunkIndex(
            message_start_time=t0, message_end_time=t1, chunk_start_offset=offset, chunk_length=length,
            message_index_offsets=index_offsets, message_index_length=index_length,
            compression=self.compression, compressed_size=stored, uncompressed_size=size)
            for t0, t1, offset, length, index_offsets, index_length, stored, size in self._chunk_index])
        group(Opcode.METADATA_INDEX, self._metadata_index)
        summary_offset_start = summary_start + out.count
        for rec in offsets:
            rec.write(out)
        summary = out.end()
        footer_head = _FOOTER_HEAD.pack(Opcode.FOOTER, 8 + 8 + 4, summary_start, summary_offset_start)
        summary_crc = crc32(footer_head, crc32(summary))
        self._write([summary, footer_head, struct.pack("<I", summary_crc), MAGIC])


def _compress(compression: str, data: bytes) -> bytes:
    if compression == "lz4":
        import lz4.frame  # noqa: PLC0415 - only asked-for compression needs it

        return lz4.frame.compress(data)
    import zstandard  # noqa: PLC0415

    return zstandard.compress(data)


__all__ = ["COMPRESSIONS", "IOV_MAX", "LARGE_BYTES", "MAGIC", "McapStreamWriter", "UNFINISHED", "writev_all"]
