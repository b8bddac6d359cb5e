"""The monitor's Prometheus endpoint: the last ``monitor.health`` as metrics.

A collector on its own registry (not the process-global one) renders the
snapshot at scrape time, on the HTTP server's thread; the actor only swaps
the snapshot reference, so a scrape never waits for the loop.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

COUNTERS = {"in": "received", "out": "sent", "dropped": "dropped", "gaps": "gaps", "errors": "errors"}


class HealthCollector:
    def __init__(self, health: Callable[[], Any], alerts: Callable[[], list[Any]]) -> None:
        self._health = health
        self._alerts = alerts

    def collect(self) -> Iterator[Metric]:
        health = self._health()
        if health is None:
            return
        sysr = health.system
        for key, name, help_text in (
            ("cpu_percent", "system_cpu_percent", "Machine CPU use, percent of all cores"),
            ("memory_percent", "system_memory_percent", "Machine memory in use, percent"),
            ("memory_available", "system_memory_available_bytes", "Machine memory available, bytes"),
            ("disk_percent", "system_disk_percent", "Disk in use where Sensorium runs, percent"),
            ("disk_free", "system_disk_free_bytes", "Disk free where Sensorium runs, bytes"),
            ("load1", "system_load1", "One-minute load average"),
        ):
            if sysr.get(key) is not None:
                yield GaugeMetricFamily(f"sensorium_{name}", help_text, value=sysr[key])
        gpus = [g for g in sysr.get("gpu", []) if "memory_used" in g]
        if gpus:
            used = GaugeMetricFamily("sensorium_gpu_memory_used_bytes", "GPU memory in use, bytes", labels=["gpu"])
            total = GaugeMetricFamily("sensorium_gpu_memory_total_bytes", "GPU memory, bytes", labels=["gpu"])
            for g in gpus:
                used.add_metric([str(g["index"])], g["memory_used"])
                total.add_metric([str(g["index"])], g["memory_total"])
            yield used
            yield total

        labels = ["actor", "kind"]
        gauges = {
            "cpu_percent": GaugeMetricFamily("sensorium_actor_cpu_percent", "Actor process CPU use, percent of "
                                             "one core", labels=labels),
            "rss": GaugeMetricFamily("sensorium_actor_rss_bytes", "Actor resident memory, bytes", labels=labels),
            "threads": GaugeMetricFamily("sensorium_actor_threads", "Actor threads", labels=labels),
            "open_files": GaugeMetricFamily("sensorium_actor_open_files", "Actor open file descriptors",
                                            labels=labels),
            "heartbeat_age_s": GaugeMetricFamily("sensorium_actor_heartbeat_age_seconds", "Seconds since the "
                                                 "actor's last heartbeat", labels=labels),
            "uptime": GaugeMetricFamily("sensorium_actor_uptime_seconds", "Seconds since the actor started",
                                        labels=labels),
            "in_per_s": GaugeMetricFamily("sensorium_actor_in_per_second", "Messages handled per second",
                                          labels=labels),
            "out_per_s": GaugeMetricFamily("sensorium_actor_out_per_second", "Messages published per second",
                                           labels=labels),
        }
        up = GaugeMetricFamily("sensorium_actor_up", "1 when the actor is ready and its heartbeat fresh",
                               labels=labels)
        counters = {k: CounterMetricFamily(f"sensorium_actor_{v}", f"Messages {v} by the actor (counter)",
                                           labels=labels) for k, v in COUNTERS.items()}
        latency = GaugeMetricFamily("sensorium_actor_latency_ms", "Handler time percentiles over the last "
                                    "messages, milliseconds", labels=[*labels, "quantile"])
        for name, a in health.actors.items():
            lv = [name, a.get("kind") or ""]
            for key, fam in gauges.items():
                if a.get(key) is not None:
                    fam.add_metric(lv, a[key])
            up.add_metric(lv, 1.0 if a.get("state") == "ready" and not a.get("stale") else 0.0)
            for key, fam in counters.items():
                fam.add_metric(lv, a.get("counters", {}).get(key, 0))
            for q, key in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("1", "max")):
                if a.get("latency_ms", {}).get(key) is not None:
                    latency.add_metric([*lv, q], a["latency_ms"][key])
        yield from gauges.values()
        yield up
        yield from counters.values()
        yield latency

        bus = GaugeMetricFamily("sensorium_bus_rate_per_second", "Bus totals per second over all actors",
                                labels=["what"])
        for key in ("in_per_s", "out_per_s", "dropped_per_s", "gaps_per_s"):
            if health.bus.get(key) is not None:
                bus.add_metric([key.removesuffix("_per_s")], health.bus[key])
        yield bus
        for key in ("gaps", "dropped", "errors"):
            yield CounterMetricFamily(f"sensorium_bus_{key}", f"Sum of the actors' {key} counters",
                                      value=health.bus.get(key, 0))
        yield from link_metrics(getattr(health, "links", {}) or {})
        active = GaugeMetricFamily("sensorium_alert_active", "1 per alert currently raised",
                                   labels=["metric", "actor", "level"])
        for alert in self._alerts():
            active.add_metric([alert.metric, alert.actor, alert.level], 1.0)
        yield active


def link_metrics(links: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """The bridge's links to peer hosts (``sys.link``), one label set per peer."""
    up = GaugeMetricFamily("sensorium_link_up", "1 when the link to the peer host is up", labels=["peer"])
    rtt = GaugeMetricFamily("sensorium_link_rtt_ms", "Round trip of the last ping, milliseconds", labels=["peer"])
    offset = GaugeMetricFamily("sensorium_link_clock_offset_ms", "Peer clock minus this host's, milliseconds",
                               labels=["peer"])
    msgs = CounterMetricFamily("sensorium_link_messages", "Messages over the link", labels=["peer", "direction"])
    nbytes = CounterMetricFamily("sensorium_link_bytes", "Bytes over the link", labels=["peer", "direction"])
    drops = CounterMetricFamily("sensorium_link_drops", "Messages dropped at the link", labels=["peer", "direction"])
    refused = CounterMetricFamily("sensorium_link_refused_handshakes", "Handshakes refused (untrusted keys)",
                                  labels=["peer"])
    downs = CounterMetricFamily("sensorium_link_downs", "Times the link went down", labels=["peer"])
    for peer, link in sorted(links.items()):
        up.add_metric([peer], 1.0 if link.get("state") == "up" else 0.0)
        if link.get("rtt_ms") is not None:
            rtt.add_metric([peer], link["rtt_ms"])
        if link.get("clock_offset_ms") is not None:
            offset.add_metric([peer], link["clock_offset_ms"])
        for direction in ("out", "in"):
            msgs.add_metric([peer, direction], link.get(f"msgs_{direction}", 0))
            nbytes.add_metric([peer, direction], link.get(f"bytes_{direction}", 0))
            drops.add_metric([peer, direction], link.get(f"drops_{direction}", 0))
        refused.add_metric([peer], link.get("refused_handshakes", 0))
        downs.add_metric([peer], link.get("downs", 0))
    yield from (up, rtt, offset, msgs, nbytes, drops, refused, downs)


def serve(port: int, health: Callable[[], Any], alerts: Callable[[], list[Any]]) -> Any:
    """Serve /metrics on 127.0.0.1:``port`` (0: any free port); returns the server (``server_address``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(health, alerts))
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return server
