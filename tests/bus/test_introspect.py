"""``sensorium topic``: rates from heartbeat counters (pure), and list/hz/info/schema on a live supervisor."""

from __future__ import annotations

import io
import json
import threading

import pytest
import zmq

from actors.registry import load_config
from bus.introspect import Beat, figures_from_heartbeats, main, subscribers_of
from bus.messages import Heartbeat
from bus.pubsub import Publisher
from bus.senders import origin_host
from tests.support import actor_pids

FAST = """
[actor_defaults]
liveness_timeout_s = 10.0
"""


def beat(ts_s: float, topics: dict[str, tuple[int, int]], subscriptions: list[str] = ()) -> Beat:
    hb = Heartbeat(state="ready", pid=1, uptime=ts_s, counters={}, latency_ms={}, rss=0,
                   topics={t: {"out": o, "bytes": b} for t, (o, b) in topics.items()},
                   subscriptions=list(subscriptions))
    return Beat(int(ts_s * 1e9), hb)


def test_rates_are_counter_differences_over_header_time_summed_over_publishers():
    beats = {
        ("h", "sensor", "1-a"): [beat(10.0, {"sensor.imu": (100, 10_000)}), beat(12.0, {"sensor.imu": (140, 14_000)})],
        ("h", "sensor2", "2-b"): [beat(0.0, {"sensor.imu": (0, 0)}), beat(1.0, {"sensor.imu": (10, 500),
                                                                               "sensor.state": (1, 80)})],
        ("h", "quiet", "3-c"): [beat(5.0, {"sys.heartbeat": (5, 900)}, ["sensor.imu", "detect.*"])],
    }
    figures = figures_from_heartbeats(beats)
    imu = figures["sensor.imu"]
    assert imu.publishers == ["sensor", "sensor2"] and imu.out == 150
    assert imu.hz == pytest.approx(20 + 10) and imu.bytes_per_s == pytest.approx(2000 + 500)
    assert figures["sys.heartbeat"].hz is None          # one heartbeat: no rate yet
    assert figures["sensor.state"].hz == pytest.approx(1.0)  # new since the first heartbeat
    assert subscribers_of("sensor.imu", beats) == ["quiet"]
    assert subscribers_of("detect.circle", beats) == ["quiet"] and subscribers_of("sensor.state", beats) == []


def run(config, *argv):
    out = io.StringIO()
    code = main(list(argv), config, out=out)
    return code, out.getvalue()


@pytest.mark.slow
def test_topic_list_hz_info_and_schema_on_a_live_bus(supervisor_factory, ipc_dir):
    sup = supervisor_factory('[actors."probe@echo"]\nsettings = { echo = ["test."] }\n[actors.monitor]\n', FAST)
    status = sup.wait_running("probe@echo", "monitor")
    config = load_config(sup.config_path)

    # list: from heartbeats only; a second heartbeat of each actor gives rates.
    code, out = run(config, "list", "--json", "--window", "2.5")
    assert code == 0
    topics = {r["topic"]: r for r in json.loads(out)["topics"]}
    assert {"probe@echo", "monitor"} <= set(topics["sys.heartbeat"]["publishers"])
    assert topics["sys.heartbeat"]["hz"] > 0.5 and topics["sys.heartbeat"]["type"] == "Heartbeat"
    assert topics["monitor.health"]["type"] == "Health" and topics["monitor.health"]["bytes_per_s"] > 0

    # hz of a topic no heartbeat counts (an outside publisher): measured by listening.
    pub = Publisher(zmq.Context.instance(), sup.frontend, "outside")
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.02):
            pub.publish("test.hello", {"n": 1})

    pub.wait_for_subscriber("test.hello", 30)
    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        code, out = run(config, "hz", "test.hello", "--count", "1", "--window", "2", "--json")
        record = json.loads(out)
        assert code == 0 and record["source"] == "listening" and record["publishers"] == ["outside"]
        assert record["hz"] > 5
        # ...while probe.echo, which the probe publishes (echoing test.hello), comes from its counters.
        code, out = run(config, "bw", "probe.echo", "--count", "1", "--window", "2.5", "--json")
        record = json.loads(out)
        assert record["source"] == "heartbeats" and record["publishers"] == ["probe@echo"]
        assert record["bytes_per_s"] > 0

        code, out = run(config, "info", "test.hello", "--json", "--window", "2.5", "--listen")
        info = json.loads(out)
    finally:
        stop.set()
        thread.join()
        pub.close()
    assert info["type"] is None and info["subscribers"] == ["probe@echo"] and info["subscriber_count"] == 1
    assert "test." in info["broker_subscriptions"]
    [outside] = info["publishers"]
    assert (outside["src"], outside["heartbeat"], outside["iid"]) == ("outside", False, pub.iid)

    code, out = run(config, "info", "probe.echo", "--json")
    [probe] = json.loads(out)["publishers"]
    assert probe["pid"] == actor_pids(status)["probe@echo"] and probe["host"] == origin_host()
    assert probe["kind"] == "probe" and probe["iid"].startswith(f"{probe['pid']}-")

    code, out = run(config, "schema", "sensor.imu")
    assert code == 0 and json.loads(out)["properties"]["acc"]["x-ndarray"]["shape"] == ["N", 3]
    assert run(config, "schema", "test.hello")[0] == 1

