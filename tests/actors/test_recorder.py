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
