"""The streaming MCAP writer (bus/recording/mcapwriter.py), checked by the ``mcap`` package's readers.

Every record of a file written by ``RecordingWriter`` is read back with
``mcap``: the stream reader with CRC validation (every record, every chunk
CRC), the seeking reader through the summary (channels, statistics, chunk
indexes, metadata indexes, time and topic seeking), and each message index
entry resolved to the message it points at. The footer's summary CRC and the
summary offsets are recomputed here from the bytes.
"""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from mcap.data_stream import ReadDataStream
from mcap.reader import make_reader
from mcap.records import Chunk, DataEnd, Footer, Message as McapMessage, MessageIndex, SummaryOffset
from mcap.stream_reader import StreamReader, breakup_chunk, get_chunk_data_stream

from bus.envelope import pack_frames
from bus.recording import GAP_TOPIC, RecordingWriter, ScanReport, recover, scan
from bus.recording.mcapwriter import IOV_MAX, LARGE_BYTES, writev_all
from tests.support import received

FOOTER_BYTES = 1 + 8 + 8 + 8 + 4



def write_mixed(path: Path, compression: str = "none", chunk_bytes: int = 200_000) -> list[tuple]:
    """Camera frames (above LARGE_BYTES: written by reference), IMU samples (small:
    copied), a seq gap; flushes mid-way. Returns (topic, log_time, publish_time, seq, data) per message."""
    w = RecordingWriter(path, compression=compression, chunk_bytes=chunk_bytes, fsync=False)
    written = []
    t = 1_700_000_000_000_000_000
    for i in range(40):
        items = [("camera.frame", "cam", i if i < 20 else i + 3,
                  {"image": np.full((120, 160, 3), i, np.uint8), "frame_id": i})]
        items += [("sensor.imu", "imu", 4 * i + k, {"acc": np.full((1, 3), k, np.float32)}) for k in range(4)]
        for topic, src, seq, body in items:
            t += 1_000_000
            msg = received(topic, seq, body, src)
            w.write(msg, t)
            written.append((topic, t, msg.header.ts, seq, pack_frames(msg.frames)))
        if i % 7 == 6:
            w.flush()
    w.close()
    assert LARGE_BYTES < 120 * 160 * 3  # the frames took the by-reference path
    return written


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_every_record_crc_and_index_reads_back_through_the_mcap_readers(tmp_path, compression):
    path = tmp_path / f"m-{compression}.mcap"
    written = write_mixed(path, compression)
    messages = written
    raw = path.read_bytes()

    # 1. Every record in file order, chunk CRCs validated (the chunks opened, then as they are).
    inner = list(StreamReader(io.BytesIO(raw), validate_crcs=True).records)
    assert sum(isinstance(r, McapMessage) for r in inner) == len(messages) + 1  # + the gap record
    records = list(StreamReader(io.BytesIO(raw), emit_chunks=True).records)
    chunks = [r for r in records if isinstance(r, Chunk)]
    assert len(chunks) > 3 and all(c.uncompressed_crc != 0 for c in chunks)
    assert all(c.compression == ("" if compression == "none" else compression) for c in chunks)
    assert isinstance(records[-1], Footer) and any(isinstance(r, DataEnd) for r in records)

    # 2. The seeking reader: messages in order, bit-identical, CRCs validated.
    with open(path, "rb") as f:
        reader = make_reader(f, validate_crcs=True)
        summary = reader.get_summary()
        got = [(c.topic, m.log_time, m.publish_time, m.sequence, m.data) for _s, c, m in reader.iter_messages()]
        gaps = [m for _s, c, m in reader.iter_messages(topics=[GAP_TOPIC])]
        got = [g for g in got if g[0] != GAP_TOPIC]
        assert got == messages
        assert len(gaps) == 1

        # Seeking by time and topic uses the chunk indexes.
        t_lo, t_hi = messages[50][1], messages[120][1]
        window = [(c.topic, m.log_time) for _s, c, m in reader.iter_messages(starting_at=t_lo, ending_before=t_hi)
                  if c.topic != GAP_TOPIC]
        assert window == [(w[0], w[1]) for w in messages if t_lo <= w[1] < t_hi]
        cams = [m.sequence for _s, _c, m in reader.iter_messages(topics=["camera.frame"])]
        assert cams == [w[3] for w in messages if w[0] == "camera.frame"]
        backwards = [m.log_time for _s, _c, m in reader.iter_messages(reverse=True)]
        assert backwards == sorted(backwards, reverse=True) and len(backwards) == len(messages) + 1
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        assert "sensorium.recording" in meta

    # 3. The summary says what is in the file.
    st = summary.statistics
    by_topic = {c.topic: cid for cid, c in summary.channels.items()}
    assert set(by_topic) == {"camera.frame", "sensor.imu", GAP_TOPIC}
    assert st.message_count == len(messages) + 1 and st.chunk_count == len(chunks) == len(summary.chunk_indexes)
    assert st.channel_message_counts[by_topic["camera.frame"]] == 40
    assert st.channel_message_counts[by_topic["sensor.imu"]] == 160
    assert st.message_start_time == messages[0][1] and st.message_end_time == messages[-1][1]
    assert st.metadata_count == len(summary.metadata_indexes) == 1
    md = summary.metadata_indexes[0]
    assert raw[md.offset] == 0x0C and md.offset + md.length <= summary.chunk_indexes[0].chunk_start_offset

    # 4. Each chunk index points at its chunk; each message index entry at a message with that log time.
    indexed = 0
    for ci in summary.chunk_indexes:
        assert raw[ci.chunk_start_offset] == 0x06
        length = struct.unpack_from("<Q", raw, ci.chunk_start_offset + 1)[0]
        assert ci.chunk_length == 9 + length
        chunk = Chunk.read(ReadDataStream(io.BytesIO(raw[ci.chunk_start_offset + 9:ci.chunk_start_offset + 9 + length])))
        assert (chunk.message_start_time, chunk.message_end_time) == (ci.message_start_time, ci.message_end_time)
        assert len(chunk.data) == ci.compressed_size and chunk.uncompressed_size == ci.uncompressed_size
        data, _n = get_chunk_data_stream(chunk, validate_crc=True)
        body = data.read(chunk.uncompressed_size)
        assert zlib.crc32(body) == chunk.uncompressed_crc
        in_chunk = [r for r in breakup_chunk(chunk, validate_crc=True) if isinstance(r, McapMessage)]
        end_of_chunk = ci.chunk_start_offset + ci.chunk_length
        assert set(ci.message_index_offsets) == {m.channel_id for m in in_chunk}
        at = end_of_chunk
        for cid, offset in sorted(ci.message_index_offsets.items(), key=lambda kv: kv[1]):
            assert offset == at and raw[offset] == 0x07
            rec_len = struct.unpack_from("<Q", raw, offset + 1)[0]
            index = MessageIndex.read(ReadDataStream(io.BytesIO(raw[offset + 9:offset + 9 + rec_len])))
            assert index.channel_id == cid
            assert len(index.records) == sum(m.channel_id == cid for m in in_chunk)
            for log_time, pos in index.records:
                assert body[pos] == 0x05
                n = struct.unpack_from("<Q", body, pos + 1)[0]
                m = McapMessage.read(ReadDataStream(io.BytesIO(body[pos + 9:pos + 9 + n])), n)
                assert m.channel_id == cid and m.log_time == log_time
                indexed += 1
            at += 9 + rec_len
        assert ci.message_index_length == at - end_of_chunk
    assert indexed == len(messages) + 1

    # 5. Footer: summary CRC and summary offsets, recomputed from the bytes.
    footer_at = len(raw) - 8 - FOOTER_BYTES
    assert raw[-8:] == raw[:8]
    op, _len, summary_start, offsets_start, summary_crc = struct.unpack_from("<BQQQI", raw, footer_at)
    assert op == 0x02
    assert summary_crc == zlib.crc32(raw[summary_start:footer_at + 1 + 8 + 8 + 8])
    pos, groups = offsets_start, {}
    while pos < footer_at:
        n = struct.unpack_from("<Q", raw, pos + 1)[0]
        so = SummaryOffset.read(ReadDataStream(io.BytesIO(raw[pos + 9:pos + 9 + n])))
        groups[so.group_opcode] = so
        pos += 9 + n
    assert set(groups) == {0x04, 0x0B, 0x08, 0x0D}  # channels, statistics, chunk indexes, metadata indexes
    for opcode, so in groups.items():
        p, end = so.group_start, so.group_start + so.group_length
        while p < end:
            assert raw[p] == opcode
            p += 9 + struct.unpack_from("<Q", raw, p + 1)[0]
        assert p == end

    # 6. Our own scanner agrees.
    assert [(r.topic, r.data) for r in scan(path) if r.kind == "message"] == [(w[0], w[4]) for w in messages]


def test_writev_all_batches_beyond_iov_max_and_keeps_order(tmp_path):
    bufs = [bytes([i % 251]) * (1 + i % 7) for i in range(IOV_MAX * 2 + 17)]
    bufs[5] = memoryview(b"x" * 100_000)[10:]
    path = tmp_path / "v.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        n = writev_all(fd, bufs)
    finally:
        os.close(fd)
    expected = b"".join(bytes(b) for b in bufs)
    assert n == len(expected) and path.read_bytes() == expected


def test_a_failed_write_refuses_the_summary_and_recovery_keeps_the_complete_chunks(tmp_path):
    """After a write error the writer writes nothing more (no summary after a torn chunk)."""
    path = tmp_path / "f.mcap"
    w = RecordingWriter(path, chunk_bytes=50_000, fsync=False)
    for i in range(5):
        w.write(received("camera.frame", i, {"image": np.full((120, 160, 3), i, np.uint8)}, "cam"), 1 + i)
    kept = w.size()
    # The kernel refuses the next write: the writer's descriptor now points at a read-only open file.
    readonly = os.open(w.active_path, os.O_RDONLY)
    os.dup2(readonly, w._file.fileno())
    os.close(readonly)
    with pytest.raises(OSError):
        w.write(received("camera.frame", 5, {"image": np.zeros((120, 160, 3), np.uint8)}, "cam"), 6)
    with pytest.raises(OSError, match="earlier write failed"):
        w.close()
    w.abandon()
    active = path.with_name(path.name + ".active")
    assert active.stat().st_size == kept

    assert recover(active).messages == 5


def test_a_chunk_left_open_by_a_crash_is_unfinished_and_recovery_keeps_the_closed_ones(tmp_path):
    """A streamed chunk is on disk before it closes, behind a placeholder header."""
    path = tmp_path / "open.mcap"
    w = RecordingWriter(path, chunk_bytes=10 << 20, fsync=False)
    for i in range(6):
        if i == 3:
            w.flush()  # chunk 1 (3 frames) closed; frames 3-5 are streamed into chunk 2, never closed
        w.write(received("camera.frame", i, {"image": np.full((120, 160, 3), i, np.uint8)}, "cam"), 10 + i)
    w.abandon()  # the process dies here: no chunk close, no summary
    active = path.with_name(path.name + ".active")
    raw = active.read_bytes()
    assert len(raw) > 6 * 120 * 160 * 3  # all six frames reached the file
    report = ScanReport(active)
    got = [r.decode().header.seq for r in scan(active, report)]
    assert got == [0, 1, 2] and not report.complete
    assert len(report.damage) == 1 and "unfinished chunk" in report.damage[0].reason
    assert report.damage[0].t_start_ns == 13 and "recorded from" in report.describe()[0]
    done = recover(active)
    assert done.messages == 3
    with open(done.path, "rb") as f:
        reader = make_reader(f, validate_crcs=True)
        assert [m.sequence for _s, _c, m in reader.iter_messages()] == [0, 1, 2]
