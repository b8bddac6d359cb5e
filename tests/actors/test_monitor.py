"""The monitor actor under a real supervisor: monitor.health, alerts (failed actor,
thresholds with hysteresis), the Prometheus endpoint and ``sensorium top``."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus.messages import Heartbeat
from bus.pubsub import Publisher
from tests.support import ROOT, WAIT_S, clean_env, wait_until

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
    alert = health.wait_for(lambda m: m.topic == "monitor.alert" and m.body["actor"] == "probe@bad",
                            what="alert for probe@bad").body
    assert alert["actor"] == "probe@bad" and alert["level"] == "critical" and alert["metric"] == "actor.failed"
    assert sup.actor("probe@bad")["state"] == "failed"


def test_another_hosts_actor_of_the_same_name_is_host_slash_name_in_health(supervisor_factory, collector_factory):
    """Heartbeats a bridge imported from host ``cam`` (same actor name, a pid of that machine) are cam's actor:
    ``cam/probe@w`` in the health, without this machine's process readings; this host's probe@w is untouched."""
    import threading

    import zmq

    from bus.pubsub import Publisher

    sup = supervisor_factory(CONFIG)
    sup.wait_running("monitor", "probe@w")
    health = collector_factory(sup, ["monitor.health"])
    pub = Publisher(zmq.Context.instance(), sup.frontend, "probe@w", host="cam")
    stop = threading.Event()

    def beat() -> None:
        body = Heartbeat(state="ready", pid=1, uptime=5.0, counters={"in": 0, "out": 7}, latency_ms={}, rss=1234,
                         kind="probe").to_body()
        while not stop.wait(0.2):
            pub.publish(Heartbeat.TOPIC, body)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        body = health.wait_for(lambda m: {"probe@w", "cam/probe@w"} <= set(m.body["actors"]),
                               what="both hosts' probe@w in the health").body
    finally:
        stop.set()
        beater.join(5)
        pub.close()
    remote, local = body["actors"]["cam/probe@w"], body["actors"]["probe@w"]
    assert remote["pid"] == 1 and remote["rss"] == 1234 and remote["cpu_percent"] is None
    assert local["pid"] == sup.actor("probe@w")["pid"] and local["cpu_percent"] is not None


# -- the full monitor: alerts with hysteresis, Prometheus, sensorium top ----------

FULL = """
[actors.monitor.settings]
interval_s = 0.3
prometheus_port = 0
alert_hold_s = 0.0
stale_after_s = 2.0
gpu = "off"
latency_budget_ms = { "fake@x" = 50.0 }
[actors."probe@w"]
settings = { tick_hz = 20.0 }
"""


def fake_heartbeat(p99_ms: float) -> dict:
    return Heartbeat(state="ready", pid=os.getpid(), uptime=1.0,
                     counters={"in": 0, "out": 0, "dropped": 0, "gaps": 0, "errors": 0},
                     latency_ms={"n": 100, "p50": 1.0, "p90": p99_ms / 2, "p99": p99_ms, "max": p99_ms},
                     rss=1, kind="fake").to_body()


def test_alerts_fire_and_clear_with_hysteresis(supervisor_factory, collector_factory):
    sup = supervisor_factory(FULL)
    sup.wait_running("monitor")
    alerts = collector_factory(sup, ["monitor.alert"])
    pub = Publisher(alerts.ctx, sup.frontend, "fake@x")
    try:
        assert pub.wait_for_subscriber("sys.heartbeat", WAIT_S)

        def beat_until(p99: float, predicate, what: str):
            end = time.monotonic() + WAIT_S
            while time.monotonic() < end:
                pub.publish("sys.heartbeat", fake_heartbeat(p99))
                found = [m.body for m in alerts.messages if predicate(m.body)]
                if found:
                    return found[0]
                time.sleep(0.1)
            raise AssertionError(f"timed out waiting for {what}; saw {[m.body for m in alerts.messages]}")

        def latency(state):
            return lambda b: b["metric"] == "actor.latency_p99_ms" and b["actor"] == "fake@x" and b["state"] == state

        raised = beat_until(120.0, latency("raised"), "the latency alert")
        assert raised["value"] == 120.0 and raised["threshold"] == 50.0 and raised["level"] == "warning"
        # 45 ms is under the budget but above the clear level (0.8 x 50 = 40): hysteresis keeps it raised.
        for _ in range(10):
            pub.publish("sys.heartbeat", fake_heartbeat(45.0))
            time.sleep(0.1)
        assert not [m for m in alerts.messages if latency("cleared")(m.body)]
        cleared = beat_until(10.0, latency("cleared"), "the latency alert to clear")
        assert cleared["value"] == 10.0 and cleared["threshold"] == 40.0
        assert len([m for m in alerts.messages if latency("raised")(m.body)]) == 1  # one alert, not a storm

        # Heartbeats stop: stale after 2 s -> critical; they resume -> cleared.
        stale = alerts.wait_for(lambda m: m.body["metric"] == "actor.heartbeat_age_s" and m.body["actor"] == "fake@x",
                                what="the stale-heartbeat alert").body
        assert stale["state"] == "raised" and stale["level"] == "critical"
        beat_until(10.0, lambda b: b["metric"] == "actor.heartbeat_age_s" and b["state"] == "cleared",
                   "the stale alert to clear")
    finally:
        pub.close()


def test_prometheus_endpoint_serves_parseable_metrics(supervisor_factory, collector_factory):
    sup = supervisor_factory(FULL)
    sup.wait_running("monitor", "probe@w")
    beats = collector_factory(sup, ["sys.heartbeat", "monitor.health"])
    port = beats.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "monitor"
                          and m.body["extra"].get("prometheus_port")).body["extra"]["prometheus_port"]
    # The monitor's first heartbeat (right after its setup) has no latencies yet: wait for a later one.
    beats.wait_for(lambda m: m.topic == "monitor.health" and "probe@w" in m.body["actors"]
                   and m.body["actors"]["probe@w"]["out_per_s"] is not None
                   and m.body["actors"]["probe@w"]["counters"]["out"] > 10
                   and m.body["actors"].get("monitor", {}).get("latency_ms", {}).get("n", 0) > 0)

    def scrape() -> dict:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        return {f.name: f for f in text_string_to_metric_families(text)}

    families = wait_until(lambda: (f := scrape()) and "sensorium_actor_in_per_second" in f and f, what="metrics")
    rss = {s.labels["actor"]: s.value for s in families["sensorium_actor_rss_bytes"].samples}
    assert rss["probe@w"] > 1e6 and rss["monitor"] > 1e6
    assert families["sensorium_actor_rss_bytes"].type == "gauge"
    sent = {s.labels["actor"]: s.value for s in families["sensorium_actor_sent"].samples}
    assert families["sensorium_actor_sent"].type == "counter" and sent["probe@w"] > 10
    assert {s.labels["actor"] for s in families["sensorium_actor_up"].samples} >= {"monitor", "probe@w"}
    quantiles = {s.labels["quantile"] for s in families["sensorium_actor_latency_ms"].samples
                 if s.labels["actor"] == "monitor"}  # it handles heartbeats: it has latencies
    assert {"0.5", "0.99"} <= quantiles
    assert 0 <= families["sensorium_system_cpu_percent"].samples[0].value <= 100
    assert families["sensorium_actor_open_files"].samples
    with pytest.raises(OSError):  # loopback only
        urllib.request.urlopen(f"http://{_non_loopback_ip()}:{port}/metrics", timeout=3)


def _non_loopback_ip() -> str:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
        return s.getsockname()[0]
    except OSError:
        pytest.skip("no non-loopback interface")
    finally:
        s.close()


def test_top_renders_a_live_table_under_a_pseudo_terminal(supervisor_factory):
    sup = supervisor_factory(FULL)
    sup.wait_running("monitor", "probe@w")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 180, 0, 0))  # rows, columns
    proc = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "top", "-c", str(sup.config_path),
                             "--count", "6"], cwd=ROOT, env=clean_env(TERM="xterm"), stdin=slave, stdout=slave,
                            stderr=slave)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(WAIT_S) == 0
    finally:
        proc.kill()
        os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[H\x1b[2J" in screen  # redrawn in place, like top
    screens = screen.split("\x1b[H\x1b[2J")[1:]
    last = screens[-1]
    assert "ACTOR" in last and "CPU%" in last and "P99_MS" in last
    assert "sensorium top" in last and "bus  in" in last
    # On a loaded machine the monitor may draw its first screens before it has heard every heartbeat.
    assert any("monitor" in s and "probe@w" in s and "supervisor" in s for s in screens), last


def test_duplicate_senders_raise_one_alert_naming_the_pids_and_clear_it():
    from actors.monitor.actor import DuplicateSenders

    book = DuplicateSenders()
    report = {"host": "h", "src": "sensor", "iids": ["100-aa", "opaque"]}
    [alert] = book.update([report, report], pids={("h", "sensor", "opaque"): 200})
    assert (alert.metric, alert.state, alert.actor) == ("bus.duplicate_sender", "raised", "sensor")
    assert "pids 100, 200" in alert.message
    assert book.update([report], pids={}) == []          # still raised: no second alert
    [cleared] = book.update([], pids={})
    assert cleared.state == "cleared"
