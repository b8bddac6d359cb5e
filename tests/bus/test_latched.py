"""Latched topics: a subscriber gets the current value of a state-like topic when it arrives.

The cache's pure parts, the header mark and the Subscriber's rule run against a
real broker; then ``tap``, ``top`` and a raw pyzmq SUB against a real
supervisor whose state was set before they started.
"""

from __future__ import annotations

import json
import time

import msgpack
import pytest
import zmq

from bus.broker import Broker
from bus.envelope import LOCAL_MARKER, EnvelopeError, Header, decode, decode_parts, encode, mark_latched
from bus.latched import LastValueCache, is_news, latched_topics
from bus.messages import ActiveAlerts, ActorEvent
from bus.bodies.imu import SensorState
from bus.pubsub import Publisher, Subscriber
from bus.shm import ShmReader
from tests.support import WAIT_S, json_lines, wait_until


def frames_of(topic: str, seq: int, body: dict, src: str = "sensor") -> list[bytes]:
    return [bytes(f) for f in encode(topic, Header(src, seq, time.time_ns()), body)]


# -- declarations, header, pure cache --------------------------------------------------


def test_latched_topics_are_the_ones_their_body_classes_declare():
    topics = latched_topics()
    assert topics == {SensorState.TOPIC: "", ActiveAlerts.TOPIC: "", ActorEvent.TOPIC: "actor"}
    assert "sensor.imu" not in topics and "monitor.alert" not in topics


def test_a_latched_mark_keeps_every_other_header_field_and_older_readers_see_a_plain_header():
    frames = [bytes(f) for f in encode("sensor.state", Header("sensor", 41, 1_700_000_000_000_000_000, corr="c1"),
                                       {"state": "listening"})]
    marked = mark_latched(frames)
    assert marked[0] == frames[0] and marked[2:] == frames[2:]
    msg = decode(marked)
    assert msg.header == Header("sensor", 41, 1_700_000_000_000_000_000, "c1", 1, latched=True)
    assert decode(frames).header.latched is False
    # An older reader picks the fields it knows from the map and ignores the rest.
    head = msgpack.unpackb(marked[1])
    assert {k: head[k] for k in ("v", "src", "seq", "ts")} == {"v": 1, "src": "sensor", "seq": 41,
                                                               "ts": 1_700_000_000_000_000_000}
    assert head["latched"] is True
    # The known-sender shortcut must not take a marked header for a plain one.
    for seq in (1, 2):
        decode(frames_of("sensor.state", seq, {}))
    assert decode(mark_latched(frames_of("sensor.state", 3, {}))).header.latched is True
    bad = [frames[0], msgpack.packb({"v": 1, "src": "s", "seq": 0, "ts": 0, "latched": 1}), frames[2]]
    with pytest.raises(EnvelopeError, match="latched must be a bool"):
        decode(bad)


def test_the_cache_keeps_one_value_per_sender_and_key_and_answers_a_prefix():
    cache = LastValueCache(latched_topics(), max_values=3)

    def store(topic, seq, body, src="sensor"):
        frames = frames_of(topic, seq, body, src)
        return cache.store(decode(frames), frames)

    assert store("sensor.state", 0, {"state": "connecting"})
    assert store("sensor.state", 1, {"state": "listening"})
    assert store("sensor.state", 0, {"state": "streaming"}, src="sensor@b")
    assert store("sys.actor", 0, {"actor": "a", "event": "ready"}, src="supervisor")
    assert not store("sys.actor", 1, {"actor": "b", "event": "ready"}, src="supervisor")  # full: refused
    assert store("sys.actor", 2, {"actor": "a", "event": "exited"}, src="supervisor")  # same key: replaced
    assert not store("sensor.imu", 0, {"x": 1})  # not latched
    replay = mark_latched(frames_of("sensor.state", 9, {"state": "stale"}))
    assert not cache.store(decode(replay), replay)  # a replay is never a new value
    states = sorted(decode(f).body["state"] for f in cache.matching(b"sensor."))
    assert states == ["listening", "streaming"]
    [actor] = cache.matching(b"sys.actor")
    assert decode(actor).body["event"] == "exited" and decode(actor).header.latched
    assert len(cache.matching(b"")) == 3 and cache.matching(b"sensor.imu") == []
    assert (cache.stats.values, cache.stats.refused) == (3, 1)
    # A local-form subscription (a shared-memory subscriber, a bridge's exports): the same values, local form.
    local = cache.matching(LOCAL_MARKER + b"sensor.")
    assert [f[0] for f in local] == [LOCAL_MARKER + b"sensor.state"] * 2
    assert sorted(decode_parts(f[0], f[1], f[2], [], shm=ShmReader()).body["state"] for f in local) == states
    assert cache.matching(b"@") == [] and len(cache.matching(LOCAL_MARKER)) == 3


def test_a_replay_is_delivered_only_when_it_is_news_and_never_counts_as_a_gap_or_restart():
    assert is_news(None, 0) and is_news(3, 4) and not is_news(4, 4) and not is_news(5, 4)
    sub = Subscriber(zmq.Context.instance(), "inproc://unused-latched", ["sensor.state", "sys.actor"])
    try:
        assert sub.decode(frames_of("sensor.state", 5, {"state": "streaming"})) is not None
        # A replay older than what came live (it was overtaken on the way) is stale: skipped.
        assert sub.decode(mark_latched(frames_of("sensor.state", 4, {"state": "listening"}))) is None
        assert sub.decode(mark_latched(frames_of("sensor.state", 5, {"state": "streaming"}))) is None
        # One this subscriber never had (lost at a full queue) is news.
        newer = sub.decode(mark_latched(frames_of("sensor.state", 7, {"state": "stale"})))
        assert newer is not None and newer.header.latched
        # Keyed: one sender, a value per actor; a live event about b says nothing about a.
        assert sub.decode(frames_of("sys.actor", 12, {"actor": "b", "event": "ready"}, "supervisor"))
        assert sub.decode(mark_latched(frames_of("sys.actor", 9, {"actor": "a", "event": "ready"}, "supervisor")))
        assert sub.decode(mark_latched(frames_of("sys.actor", 11, {"actor": "b", "event": "starting"},
                                                 "supervisor"))) is None
        s = sub.stats  # replays at seq 4 and 5 after a live 5 would otherwise read as a restarted sender
        assert (s.gaps, s.resets, s.latched, s.latched_repeats) == (0, 0, 2, 3)
        sub.deliver_replays = False
        assert sub.decode(mark_latched(frames_of("sensor.state", 0, {}, src="sensor@new"))) is None
    finally:
        sub.close()


# -- a real broker ------------------------------------------------------------------------


def test_a_new_subscriber_gets_the_last_value_at_once_and_an_existing_one_ignores_it(broker):
    ctx = broker.ctx
    pub = Publisher(ctx, broker.frontend, "sensor")
    first = second = raw = None
    try:
        assert pub.wait_for_subscriber("sensor.state", WAIT_S)  # the broker's cache listens
        pub.publish("sensor.state", SensorState(state="connecting").to_body())
        pub.publish("sensor.state", SensorState(state="listening", previous="connecting").to_body())
        pub.publish("sensor.imu", {"n": 1})
        wait_until(lambda: broker.broker.stats()["latched_stored"] == 2, what="the cache to store both states")

        first = Subscriber(ctx, broker.backend, ["sensor.state"])
        assert first.wait_subscribed(broker.frontend, WAIT_S)
        got = first.recv(timeout_ms=int(WAIT_S * 1000))
        assert got.body["state"] == "listening" and got.header.latched and got.header.seq == 1
        assert first.recv(timeout_ms=300) is None  # the last value only

        pub.publish("sensor.state", SensorState(state="streaming", previous="listening").to_body())
        live = first.recv(timeout_ms=int(WAIT_S * 1000))
        assert live.body["state"] == "streaming" and not live.header.latched
        wait_until(lambda: broker.broker.stats()["latched_stored"] == 3, what="the cache to store streaming")

        second = Subscriber(ctx, broker.backend, prefixes=["sensor."])
        assert second.wait_subscribed(broker.frontend, WAIT_S)
        got = second.recv(timeout_ms=int(WAIT_S * 1000))
        assert got.topic == "sensor.state" and got.body["state"] == "streaming" and got.header.latched

        # A raw pyzmq SUB, knowing nothing of Sensorium: the frames, header marked latched.
        raw = ctx.socket(zmq.SUB)
        raw.connect(broker.backend)
        raw.setsockopt(zmq.SUBSCRIBE, b"sensor.state")
        assert raw.poll(int(WAIT_S * 1000)), "no replay reached a raw SUB"
        topic, head, body = raw.recv_multipart()
        assert topic == b"sensor.state" and msgpack.unpackb(head)["latched"] is True
        assert msgpack.unpackb(body)["state"] == "streaming"

        # The replays for `second` and the raw SUB also reached `first`: skipped, not counted as losses.
        wait_until(lambda: first.recv(timeout_ms=50) is None and first.stats.latched_repeats >= 2,
                   what="the first subscriber to skip the later replays")
        for s in (first.stats, second.stats):
            assert (s.gaps, s.resets, s.malformed) == (0, 0, 0)
        assert first.stats.latched == 1 and first.stats.received == 2
        stats = broker.broker.stats()
        assert stats["latched_values"] == 1 and stats["latched_replays"] >= 3
    finally:
        for sock in (first, second, raw, pub):
            if sock is not None:
                sock.close()


def test_a_shared_memory_subscriber_gets_the_last_value_in_the_local_form(broker):
    """A local-form subscription (``@shm/``: a shared-memory subscriber, a bridge's exports) is answered too."""
    ctx = broker.ctx
    pub = Publisher(ctx, broker.frontend, "sensor")
    local = None
    try:
        assert pub.wait_for_subscriber("sensor.state", WAIT_S)
        pub.publish("sensor.state", SensorState(state="listening").to_body())
        wait_until(lambda: broker.broker.stats()["latched_stored"] == 1, what="the cache to store the state")
        local = Subscriber(ctx, broker.backend, ["sensor.state"], shm=True)
        assert local.wait_subscribed(broker.frontend, WAIT_S)
        got = local.recv(timeout_ms=int(WAIT_S * 1000))
        assert got is not None, "no replay for a local-form subscription"
        assert got.topic == "sensor.state" and got.body["state"] == "listening" and got.header.latched
        assert local.stats.malformed == local.stats.local_skipped == 0
    finally:
        for sock in (local, pub):
            if sock is not None:
                sock.close()


def test_every_actor_state_is_replayed_and_a_bare_broker_replays_nothing(broker, ipc_dir):
    ctx = broker.ctx
    pub = Publisher(ctx, broker.frontend, "supervisor")
    bare = Broker(f"ipc://{ipc_dir}/p2.sock", f"ipc://{ipc_dir}/s2.sock", ctx=ctx, latched=False).start()
    bare_pub = Publisher(ctx, bare.frontend, "supervisor")
    subs: list[Subscriber] = []
    try:
        assert pub.wait_for_subscriber("sys.actor", WAIT_S)
        for actor, event in (("a", "starting"), ("b", "starting"), ("a", "ready"), ("b", "failed")):
            pub.publish("sys.actor", ActorEvent(actor=actor, event=event).to_body())
        wait_until(lambda: broker.broker.stats()["latched_stored"] == 4, what="the cache to store the events")
        sub = Subscriber(ctx, broker.backend, ["sys.actor"])
        subs.append(sub)
        assert sub.wait_subscribed(broker.frontend, WAIT_S)
        got = {}
        while len(got) < 2:
            msg = sub.recv(timeout_ms=int(WAIT_S * 1000))
            got[msg.body["actor"]] = msg.body["event"]
        assert got == {"a": "ready", "b": "failed"}

        watcher = Subscriber(ctx, bare.backend, ["sys.actor"])
        subs.append(watcher)
        assert watcher.wait_subscribed(bare.frontend, WAIT_S)
        # The broker has the subscription; the publisher gets it on its own connection, maybe later (one CI run
        # published first and the message had no subscriber yet).
        assert bare_pub.wait_for_subscriber("sys.actor", WAIT_S)
        bare_pub.publish("sys.actor", ActorEvent(actor="a", event="ready").to_body())
        assert watcher.recv(timeout_ms=int(WAIT_S * 1000)) is not None
        late = Subscriber(ctx, bare.backend, ["sys.actor"])
        subs.append(late)
        assert late.wait_subscribed(bare.frontend, WAIT_S)
        assert late.recv(timeout_ms=500) is None
        assert "latched_values" not in bare.stats()
    finally:
        for s in (*subs, pub, bare_pub):
            s.close()
        bare.stop()


# -- real processes: tap, top, a raw SUB arrive after the state was set ---------------------

SENSOR = """
[actors."sensor@udp"]
kind = "sensor"
settings = { source = "udp", udp = { port = 0 } }
"""


@pytest.mark.slow
def test_tap_and_a_raw_sub_get_the_sensor_and_actor_states_at_once(supervisor_factory, collector_factory):
    sup = supervisor_factory(SENSOR)
    sup.wait_running("sensor@udp")
    seen = collector_factory(sup, ["sensor.state"])
    listening = seen.wait_for(lambda m: m.body["state"] == "listening", what="the sensor listening").body

    tapped = sup.cli("tap", "sensor.state", "--count", "1", "--timeout", "30")
    assert tapped.returncode == 0, tapped.stderr
    [line] = json_lines(tapped.stdout)
    assert line["topic"] == "sensor.state" and line["src"] == "sensor@udp" and line["latched"] is True
    assert line["body"]["state"] == "listening" and line["body"]["address"] == listening["address"]

    raw = zmq.Context.instance().socket(zmq.SUB)
    try:
        raw.connect(sup.backend)
        raw.setsockopt(zmq.SUBSCRIBE, b"sys.actor")
        assert raw.poll(int(WAIT_S * 1000)), "no sys.actor value reached a raw SUB"
        topic, head, body = raw.recv_multipart()
        header, event = msgpack.unpackb(head), msgpack.unpackb(body)
        assert topic == b"sys.actor" and header["latched"] is True and header["src"] == "supervisor"
        assert event["actor"] == "sensor@udp" and event["event"] == "ready"
    finally:
        raw.close(linger=0)
    assert seen.stats.gaps == 0 and seen.stats.resets == 0


MONITOR = """
[actors.monitor.settings]
interval_s = 0.3
alert_hold_s = 0.0
rss_bytes_max = 1
gpu = "off"
[actors."probe@w"]
"""


@pytest.mark.slow
def test_top_shows_the_alerts_raised_before_it_started(supervisor_factory, collector_factory):
    sup = supervisor_factory(MONITOR)
    alerts = collector_factory(sup, ["monitor.alert"])  # before the monitor runs: it sees every alert happen
    sup.wait_running("monitor", "probe@w")
    # rss_bytes_max = 1: every actor's memory is over it, raised once at the first health and never cleared.
    for actor in ("monitor", "probe@w"):
        alerts.wait_for(lambda m, a=actor: m.topic == "monitor.alert" and m.body["metric"] == "actor.rss_bytes"
                        and m.body["actor"] == a, what=f"the rss alert of {actor}")
    shown = sup.cli("top", "--count", "3", "--no-color")
    assert shown.returncode == 0, shown.stderr
    last = shown.stdout.split("sensorium top  ")[-1]
    assert "no alerts raised" not in last, last
    assert "alerts raised" in last and "actor.rss_bytes" in last and "monitor:" in last and "probe@w:" in last

    active = collector_factory(sup, ["monitor.active_alerts"])
    latest = active.wait_for(lambda m: m.header.latched, what="the latched alert set").body
    assert {("actor.rss_bytes", "monitor"), ("actor.rss_bytes", "probe@w")} <= {
        (a["metric"], a["actor"]) for a in latest["alerts"]}
    assert json.dumps(latest)  # plain data all the way down


FAILING = """
[actors.monitor.settings]
interval_s = 0.3
gpu = "off"
[actors."probe@bad"]
settings = { fail_setup = true }
backoff = { initial_s = 0.1, jitter = 0.0 }
intensity = { max_restarts = 1, window_s = 60.0, recovery_s = 600.0 }
"""


@pytest.mark.slow
def test_a_restarted_monitor_learns_of_an_actor_still_failed_from_the_latched_states(supervisor_factory,
                                                                                      collector_factory):
    sup = supervisor_factory(FAILING)
    alerts = collector_factory(sup, ["monitor.alert"])
    alerts.wait_for(lambda m: m.body["metric"] == "actor.failed" and m.body["actor"] == "probe@bad",
                    what="the failed alert")
    sup.wait_running("monitor")
    before = len(alerts.messages)
    sup.cli("restart", "monitor", check=True)
    # The new monitor saw no sys.actor event of probe@bad happen: only the latched value tells it.
    again = alerts.wait_for(lambda m: m.body["metric"] == "actor.failed" and m.body["actor"] == "probe@bad",
                            what="the failed alert from the restarted monitor", after=before)
    assert again.body["state"] == "raised" and again.header.seq == 0  # a fresh monitor's first alert
    assert sup.actor("probe@bad")["state"] == "failed"
