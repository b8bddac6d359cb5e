"""The recorder actor under a real supervisor: kill -9 and recovery, disk full."""

from __future__ import annotations

import os
import signal
import time

import pytest
from mcap.reader import make_reader

from bus.recording import ACTIVE_SUFFIX, ScanReport, scan
from tests.support import wait_until

pytestmark = pytest.mark.slow

FLUSH_S = 0.5


def config(ipc_dir, extra: str = "") -> str:
    return f"""
[actors."probe@w"]
settings = {{ tick_hz = 50.0 }}
[actors.recorder]
backoff = {{ initial_s = 0.2, jitter = 0.0 }}
settings = {{ dir = "{ipc_dir}/rec", prefixes = ["probe."], flush_s = {FLUSH_S}, min_free_bytes = 0 {extra} }}
"""


def test_kill_9_then_restart_recovers_everything_up_to_the_flush_bound(supervisor_factory, collector_factory,
                                                                        ipc_dir):
    sup = supervisor_factory(config(ipc_dir))
    status = sup.wait_running("recorder", "probe@w")
    events = collector_factory(sup, ["sys.actor", "probe.tick"])
    pid = next(a["pid"] for a in status["actors"] if a["name"] == "recorder")
    folder = ipc_dir / "rec"
    active = wait_until(lambda: next(iter(folder.glob(f"*.mcap{ACTIVE_SUFFIX}")), None), what="the active file")
    first = events.wait_for(lambda m: m.topic == "probe.tick").header.seq
    events.wait_for(lambda m: m.topic == "probe.tick" and m.header.seq >= first + 100, what="100 ticks")
    killed_ns = time.time_ns()
    os.kill(pid, signal.SIGKILL)
    ticks = [m.header for m in list(events.messages) if m.topic == "probe.tick" and m.header.ts < killed_ns]

    events.wait_event("recorder", "ready", count=1)  # the restarted recorder recovered the file in setup
    final = active.with_name(active.name[: -len(ACTIVE_SUFFIX)])
    wait_until(lambda: final.exists() and not active.exists(), what="the recovered file")

    with open(final, "rb") as f:  # a properly closed file: the standard reader opens it, summary and all
        reader = make_reader(f)
        count = reader.get_summary().statistics.message_count
        recovery = {m.name: m.metadata for m in reader.iter_metadata()}["sensorium.recovery"]
    report = ScanReport(final)
    recorded = [r.decode().header for r in scan(final, report) if r.topic == "probe.tick"]
    assert report.complete and count >= len(recorded) > 0 and recovery["source"] == active.name
    seqs = [h.seq for h in recorded]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no holes
    # Everything published before the flush bound (plus slack for a loaded machine) is on disk.
    bound_ns = killed_ns - int((FLUSH_S + 1.0) * 1e9)
    must_have = {h.seq for h in ticks if h.ts < bound_ns and h.seq >= seqs[0]}
    assert must_have and must_have <= set(seqs), sorted(must_have - set(seqs))[:10]
    # ...and the restarted recorder writes a fresh file.
    wait_until(lambda: any(p != active for p in folder.glob(f"*.mcap{ACTIVE_SUFFIX}")), what="a new active file")


def test_disk_full_raises_an_alert_and_stops_recording_without_harm(supervisor_factory, collector_factory, ipc_dir):
    # min_free_bytes beyond any disk: the recorder must see "disk full" at its first flush.
    sup = supervisor_factory(config(ipc_dir).replace("min_free_bytes = 0", f"min_free_bytes = {1 << 60}"))
    alerts = collector_factory(sup, ["monitor.alert", "sys.heartbeat"])
    sup.wait_running("recorder", "probe@w")
    alert = alerts.wait_for(lambda m: m.topic == "monitor.alert", what="the disk-full alert").body
    assert alert["metric"] == "recorder.disk_full" and alert["level"] == "critical" and alert["actor"] == "recorder"
    assert "disk full" in alert["message"]
    hb = alerts.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "recorder"
                         and m.body["extra"].get("recording") == "stopped", what="a heartbeat saying stopped").body
    assert hb["state"] == "ready"
    assert sup.actor("recorder")["state"] == "running" and sup.actor("recorder")["restarts"] == 0
    files = list((ipc_dir / "rec").glob("*.mcap"))
    assert files and ScanReport(files[0]) is not None
    report = ScanReport(files[0])
    list(scan(files[0], report))
    assert report.complete  # closed properly before stopping
    assert sup.actor("probe@w")["state"] == "running"


def test_the_recorder_stores_the_bytes_of_frames_that_local_subscribers_get_through_shared_memory(
        supervisor_factory, ipc_dir):
    """A local subscriber makes the camera write frames into shared memory; the recorder, a plain
    subscriber, still gets and stores every frame's bytes (never a reference)."""
    import numpy as np
    import zmq

    from bus.pubsub import Subscriber

    sup = supervisor_factory(f"""
[actors."camera@c"]
settings = {{ width = 640, height = 480, max_fps = 20.0, min_fps = 20.0 }}
[actors.recorder]
settings = {{ dir = "{ipc_dir}/rec", prefixes = ["camera."], flush_s = {FLUSH_S}, min_free_bytes = 0 }}
""")
    sup.wait_running("recorder", "camera@c")
    local = Subscriber(zmq.Context.instance(), sup.backend, ["camera.frame"], shm=True)
    try:
        assert local.wait_subscribed(sup.frontend, 30)
        got = {}
        while len(got) < 10:
            msg = wait_until(lambda: local.recv(200), what="frames through shared memory")
            got[msg.header.seq] = msg.body["image"]
    finally:
        local.close()
    assert sup.terminate() == 0
    files = list((ipc_dir / "rec").glob("*.mcap"))
    stored = {}
    for rec in (r for f in files for r in scan(f) if r.kind == "message" and r.topic == "camera.frame"):
        frames = rec.frames()
        assert len(frames) == 4 and len(frames[3]) == 640 * 480 * 3  # the bytes, inline
        msg = rec.decode()  # a plain decode: a shared-memory record would be refused
        stored[msg.header.seq] = msg.body["image"]
    shared = set(got) & set(stored)
    assert len(shared) >= 5, (sorted(got), sorted(stored)[:20])
    for seq in shared:
        np.testing.assert_array_equal(stored[seq], got[seq])
