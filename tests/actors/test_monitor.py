"""The monitor actor under a real supervisor: monitor.health and the failed-actor alert."""

from __future__ import annotations

import psutil
import pytest

pytestmark = pytest.mark.slow

CONFIG = """
[actors.monitor]
settings = { interval_s = 0.5 }
[actors."probe@w"]
settings = { tick_hz = 20.0 }
[actors."probe@bad"]
enabled = false
settings = { fail_setup = true }
backoff = { initial_s = 0.1, jitter = 0.0 }
intensity = { max_restarts = 1, window_s = 60.0, recovery_s = 600.0 }
"""


def test_monitor_publishes_health_from_heartbeats_and_process_readings(supervisor_factory, collector_factory):
    sup = supervisor_factory(CONFIG)
    sup.wait_running("monitor", "probe@w")
    health = collector_factory(sup, ["monitor."])

    def complete(m):
        return (m.topic == "monitor.health" and {"monitor", "probe@w"} <= set(m.body["actors"])
                and m.body["actors"]["probe@w"]["counters"]["out"] > 10)

    body = health.wait_for(complete, what="health covering both actors").body
    probe = body["actors"]["probe@w"]
    assert probe["pid"] == sup.actor("probe@w")["pid"]
    assert probe["rss"] == pytest.approx(psutil.Process(probe["pid"]).memory_info().rss, rel=0.5)
    assert probe["threads"] >= 1 and probe["cpu_percent"] is not None and probe["state"] == "ready"
    assert probe["heartbeat_age_s"] < 5 and not probe["stale"]
    system = body["system"]
    assert 0 <= system["cpu_percent"] <= 100 and system["memory_available"] > 0 and system["cpu_count"] >= 1
    assert body["bus"]["out"] >= probe["counters"]["out"]

    assert sup.actor("probe@bad")["state"] == "stopped"  # disabled: not started with the rest
    sup.cli("start", "probe@bad")
    alert = health.wait_for(lambda m: m.topic == "monitor.alert", what="alert for probe@bad").body
    assert alert["actor"] == "probe@bad" and alert["level"] == "critical" and alert["metric"] == "actor.failed"
    assert sup.actor("probe@bad")["state"] == "failed"
