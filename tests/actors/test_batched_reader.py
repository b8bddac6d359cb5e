"""A reader of the batched form (envelope version 2) on a real actor's topic: the actor's publisher gathers
its burst of replies while the actor loop goes on (its flusher thread shares the socket), under a real
supervisor and broker."""

from __future__ import annotations

import msgpack
import zmq

from bus.envelope import BATCH_MARKER
from bus.pubsub import Publisher, Subscriber
from tests.support import WAIT_S, raw_sub, wait_until

PROBE = """
[actors."probe@b"]
kind = "probe"
settings = { echo = ["bt."] }
"""


def test_an_actor_answers_a_burst_in_batches_to_a_batched_reader_and_in_version_1_to_an_outside_one(
        supervisor_factory):
    sup = supervisor_factory(PROBE)
    sup.wait_running("probe@b")
    ctx = zmq.Context.instance()
    reader = Subscriber(ctx, sup.backend, ["probe.echo"], batched=True)
    outside = raw_sub(ctx, sup.backend, b"probe.echo")
    spy = raw_sub(ctx, sup.backend, BATCH_MARKER + b"probe.echo")
    pub = Publisher(ctx, sup.frontend, "burst")
    try:
        assert reader.wait_subscribed(sup.frontend, WAIT_S)
        assert pub.wait_for_subscriber("bt.x", WAIT_S), "the probe never subscribed"
        # The probe's publisher learns of the batched reader from the broker: wait until an echo reaches it.
        wait_until(lambda: pub.publish("bt.sync", {}) >= 0 and reader.recv(200) is not None,
                   what="the first echo in the batched form")
        while reader.recv(300) is not None:
            pass
        while outside.poll(300):
            outside.recv_multipart()
        while spy.poll(300):
            spy.recv_multipart()

        n = 2000
        for i in range(n):
            pub.publish("bt.x", {"i": i})
        got = [reader.recv(int(WAIT_S * 1000)) for _ in range(n)]
        assert [m.body["body"]["i"] for m in got] == list(range(n))
        seqs = [m.header.seq for m in got]
        assert seqs == list(range(seqs[0], seqs[0] + n)) and {m.header.v for m in got} == {2}
        assert reader.stats.gaps == 0 and reader.stats.malformed == 0

        batches = records = 0
        while records < n and spy.poll(int(WAIT_S * 1000)):
            records += len(msgpack.unpackb(spy.recv_multipart()[1])) - 1
            batches += 1
        assert records == n and batches < n // 2  # the actor's replies were gathered
        for i in range(n):
            assert outside.poll(int(WAIT_S * 1000))
            topic, head, body = outside.recv_multipart()
            assert msgpack.unpackb(head)["v"] == 1 and msgpack.unpackb(body)["body"] == {"i": i}
        assert sup.actor("probe@b")["restarts"] == 0 and sup.actor("probe@b")["state"] == "running"
    finally:
        for s in (outside, spy):
            s.close(linger=0)
        pub.close()
        reader.close()
