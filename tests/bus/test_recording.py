"""Recording files: write, read back, damage, recovery, rotation, retention, disk full.

Real files on disk, read back with our scanner and with the ``mcap`` package's reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from mcap.reader import make_reader

from bus.envelope import EnvelopeError, decode, pack_frames, peek_version, unpack_frames
from bus.recording import (ACTIVE_SUFFIX, RecordingError, RecordingSession, RecordingWriter, ScanReport,
                           SessionSettings, apply_retention, recover, recordings, scan)
from tests.support import ROOT, clean_env, wait_until
from tests.support import received as support_received


def received(topic: str, seq: int, body: dict, src: str = "cam") -> object:
    """A message as a Subscriber with keep_frames delivers it (with a corr, so headers vary in layout)."""
    return support_received(topic, seq, body, src, corr=f"c{seq}")


def frame_body(i: int) -> dict:
    return {"image": np.full((48, 64, 3), i % 256, np.uint8), "frame_id": i, "t": np.arange(3, dtype=np.float64) + i}


def write_file(path: Path, n: int, flush_every: int = 10, close: bool = True) -> RecordingWriter:
    w = RecordingWriter(path)
    for i in range(n):
        w.write(received("camera.frame", i, frame_body(i)), time.time_ns())
        w.write(received("sensor.imu", i, {"acc": np.ones((4, 3), np.float32) * i, "quality": 1.0}, "imu"),
                time.time_ns())
        if (i + 1) % flush_every == 0:
            w.flush()
    if close:
        w.close()
    return w


def test_frames_round_trip_bit_for_bit():
    msg = received("camera.frame", 3, frame_body(3))
    stored = pack_frames(msg.frames)
    assert msgpack.unpackb(stored) == [bytes(f) for f in msg.frames]  # plain msgpack: an array of bins
    back = unpack_frames(stored, "camera.frame")
    assert [bytes(f) for f in back] == [bytes(f) for f in msg.frames]
    assert peek_version(back) == 1
    with pytest.raises(EnvelopeError):
        unpack_frames(stored[:-5])
    with pytest.raises(EnvelopeError, match="not the channel"):
        unpack_frames(stored, "sensor.imu")


def test_written_file_reads_back_in_order_and_opens_with_the_mcap_reader(tmp_path):
    path = tmp_path / "a.mcap"
    write_file(path, 25)
    assert not (tmp_path / f"a.mcap{ACTIVE_SUFFIX}").exists()
    report = ScanReport(path)
    recs = list(scan(path, report))
    assert report.complete and not report.damage and report.describe() == []
    assert [r.topic for r in recs] == ["camera.frame", "sensor.imu"] * 25
    for i, r in enumerate(recs[::2]):
        m = r.decode()
        assert m.header.seq == i and m.header.src == "cam" and m.header.corr == f"c{i}"
        assert np.array_equal(m.body["image"], frame_body(i)["image"]) and m.body["frame_id"] == i
        assert r.publish_time_ns == m.header.ts and r.sequence == i
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary.statistics.message_count == 50
        topics = {c.topic: c for c in summary.channels.values()}
        assert set(topics) == {"camera.frame", "sensor.imu"}
        assert topics["camera.frame"].message_encoding == "msgpack"
        assert reader.get_header().profile == "sensorium"
        datas = [m.data for _s, _c, m in reader.iter_messages(topics=["camera.frame"])]
    assert datas == [r.data for r in recs[::2]]


def test_seq_gaps_become_gap_records(tmp_path):
    path = tmp_path / "g.mcap"
    w = RecordingWriter(path)
    for seq in (0, 1, 5, 6, 0, 1):  # 3 lost, then a restarted sender (a reset, not a gap)
        w.write(received("sensor.imu", seq, {"x": seq}), time.time_ns())
    w.close()
    gaps = [r.gap() for r in scan(path) if r.kind == "gap"]
    assert gaps == [{"topic": "sensor.imu", "src": "cam", "after_seq": 1, "next_seq": 5, "missed": 3}]


def test_truncated_file_is_read_up_to_the_damage_and_recovered(tmp_path):
    path = tmp_path / "t.mcap"
    write_file(path, 40, flush_every=10)  # chunks of 20 messages
    data = path.read_bytes()
    torn = tmp_path / f"torn.mcap{ACTIVE_SUFFIX}"
    torn.write_bytes(data[: int(len(data) * 0.6)])
    report = ScanReport(torn)
    recs = list(scan(torn, report))
    assert not report.complete and 0 < len(recs) < 80 and len(recs) % 20 == 0  # whole chunks only
    lines = report.describe()
    assert lines and "file ends inside" in lines[0] and str(torn) in lines[0]

    done = recover(torn)
    assert not torn.exists() and done.path == tmp_path / "torn.mcap" and done.messages == len(recs)
    with open(done.path, "rb") as f:
        reader = make_reader(f)
        assert reader.get_summary().statistics.message_count == len(recs)
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
    assert "file ends inside" in meta["sensorium.recovery"]["damage"]
    assert [r.data for r in scan(done.path) if r.kind == "message"] == [r.data for r in recs]


def test_a_corrupt_chunk_is_skipped_and_counted_the_rest_is_read(tmp_path):
    path = tmp_path / "c.mcap"
    write_file(path, 30, flush_every=10)  # 3 chunks of 20 messages
    data = bytearray(path.read_bytes())
    first_image = data.find(bytes([0]) * 9216)  # inside the first chunk: frame 0's image
    data[first_image + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    report = ScanReport(path)
    recs = list(scan(path, report))
    assert report.complete and len(recs) == 40
    assert len(report.damage) == 1 and "crc" in report.damage[0].reason and report.damage[0].messages_lost == 20
    assert "lost 20 message(s)" in report.describe()[0]


def test_not_a_recording_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.mcap"
    bad.write_bytes(b"hello world, not mcap")
    with pytest.raises(RecordingError, match="not an MCAP file"):
        list(scan(bad))


def test_session_rotates_by_size_and_applies_retention(tmp_path):
    n = iter(range(1000))

    def next_path() -> Path:
        return tmp_path / f"rec-{next(n):04d}.mcap"

    session = RecordingSession(next_path, SessionSettings(flush_s=0.05, max_file_bytes=100_000, fsync=False),
                               retention=lambda keep: apply_retention(tmp_path, "rec-", max_total_bytes=350_000,
                                                                      keep=keep))
    for i in range(60):
        assert session.submit(received("camera.frame", i, frame_body(i)), time.time_ns())
        time.sleep(0.01)
    session.close()
    files = recordings(tmp_path, "rec-")
    assert session.stats.state == "closed" and session.stats.files >= 3
    assert len(files) < session.stats.files  # the oldest were removed
    assert sum(p.stat().st_size for p in files) <= 350_000 + 200_000
    seqs = [r.decode().header.seq for p in files for r in scan(p)]
    assert seqs == list(range(seqs[0], 60))  # the newest files hold the tail, in order, without holes


def test_disk_full_stops_the_session_cleanly(tmp_path):
    session = RecordingSession(lambda: tmp_path / "full.mcap",  # "less free than 2^62": the disk counts as full
                               SessionSettings(flush_s=0.05, fsync=False, min_free_bytes=1 << 62))
    session.submit(received("sensor.imu", 0, {"x": 0}), time.time_ns())
    wait_until(lambda: session.stats.state == "stopped", what="the session to stop")
    events = session.events()
    stopped = [e for e in events if e.event == "stopped"]
    assert stopped and stopped[0].detail["disk_full"] and "disk full" in session.stats.reason
    assert not session.submit(received("sensor.imu", 1, {"x": 1}), time.time_ns())
    session.close()
    report = ScanReport(tmp_path / "full.mcap")
    assert len(list(scan(tmp_path / "full.mcap", report))) == 1 and report.complete


def test_a_real_write_error_efbig_stops_recording_and_keeps_what_was_flushed(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past a size (EFBIG), like a full disk.

    Chunks close by size (3 messages of 30 kB each), not only by time: with
    the 50 ms flush alone, a fast machine put more than the 300 kB limit in
    the first chunk and nothing was kept."""
    script = f"""
import resource, signal, time, numpy as np, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.bus.test_recording import received
from bus.recording import RecordingSession, SessionSettings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
s = RecordingSession(lambda: __import__('pathlib').Path({str(tmp_path / 'big.mcap')!r}),
                     SessionSettings(flush_s=0.05, fsync=False, chunk_bytes=64_000))
for i in range(100):
    s.submit(received('camera.frame', i, {{'image': np.zeros((100, 100, 3), np.uint8)}}), time.time_ns())
    time.sleep(0.005)
s.close()
print(s.stats.state, s.stats.reason, [e.event for e in s.events()])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=clean_env(),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stopped disk full") and "'stopped'" in done.stdout
    kept = tmp_path / f"big.mcap{ACTIVE_SUFFIX}"
    assert kept.exists() and os.path.getsize(kept) <= 300_000  # no room for the summary: left to recover
    recovered = recover(kept)
    assert 0 < recovered.messages < 100


def test_a_message_mcap_cannot_hold_is_skipped_and_counted_and_the_file_stays_whole(tmp_path):
    """A negative time does not fit MCAP's uint64: that one message is refused before any byte of
    it is written, counted, and the recording goes on (it once left a chunk counting a message that
    was not there, and the whole file failed its CRC)."""
    session = RecordingSession(lambda: tmp_path / "odd.mcap", SessionSettings(flush_s=0.05, fsync=False))
    odd = received("sensor.imu", 1, {"x": 1})
    odd.header = odd.header._replace(ts=-1)  # only code can build this: the decoder refuses ts < 0
    for msg in (received("sensor.imu", 0, {"x": 0}), odd, received("sensor.imu", 2, {"x": 2})):
        assert session.submit(msg, time.time_ns())
    session.close()
    assert session.stats.unstorable == 1 and session.stats.messages == 2 and session.stats.state == "closed"
    report = ScanReport(tmp_path / "odd.mcap")
    assert [r.decode().header.seq for r in scan(tmp_path / "odd.mcap", report)] == [0, 2] and report.complete
    with open(tmp_path / "odd.mcap", "rb") as f:
        assert len(list(make_reader(f, validate_crcs=True).iter_messages())) >= 2


def test_the_decoder_refuses_a_negative_timestamp():
    head = msgpack.packb({"v": 1, "src": "t", "seq": 0, "ts": -5})
    with pytest.raises(EnvelopeError, match="ts"):
        decode([b"test.x", head, msgpack.packb({})])
