"""A corpus of malformed bus messages at a running actor: each counted, none fatal.

A raw pyzmq XPUB on the broker's frontend sends every message of
``tests/chaos/corpus.py`` (83 of ~60 kinds: wrong frame counts, bad topic
bytes, headers and bodies that are not maps, wrong types for every header
field, bad array records, unreferenced frames, oversize header and body) to a
probe echoing ``chaos.``; then hypothesis makes more (bounded), judged by the
codec itself. The probe's heartbeat ``dropped`` must count exactly the
messages the codec refuses, the probe must keep its pid, and a good message
sent after them must still be echoed. Costs ~15-25 s.
"""

from __future__ import annotations

import itertools

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus.envelope import ARRAY_EXT, EnvelopeError, decode
from bus.pubsub import Publisher
from tests.chaos.corpus import TOPIC, corpus
from tests.support import WAIT_S, wait_until

pytestmark = pytest.mark.slow

PROBE = "probe@corpus"


class Target:
    """The probe under attack, a raw sender and a well-behaved one, and what was sent so far."""

    def __init__(self, sup, out) -> None:
        self.sup, self.out = sup, out
        self.pid = sup.actor(PROBE)["pid"]
        ctx = zmq.Context.instance()
        self.raw = ctx.socket(zmq.XPUB)
        self.raw.setsockopt(zmq.LINGER, 0)
        self.raw.connect(sup.frontend)
        wait_until(lambda: self.raw.poll(100) and self.raw.recv().startswith(b"\x01chaos."),
                   what="the probe's subscription at the raw sender")
        self.good = Publisher(ctx, sup.frontend, "corpus-good")
        assert self.good.wait_for_subscriber("chaos.marker", WAIT_S)
        self.refused = 0
        self.markers = itertools.count()

    def send(self, frames: list[bytes]) -> None:
        try:
            decode(frames)
        except EnvelopeError:
            self.refused += 1
        self.raw.send_multipart(frames)

    def still_handles_and_counts(self) -> None:
        """A good message after the bad ones is echoed, and a heartbeat after it counts every refusal."""
        n = next(self.markers)
        self.good.publish("chaos.marker", {"n": n})
        mark = self.out.wait_for(lambda m: m.topic == "probe.echo" and m.body["topic"] == "chaos.marker"
                                 and m.body["body"] == {"n": n}, what=f"the echo of marker {n}")
        at = self.out.messages.index(mark)
        beat = self.out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == PROBE, after=at + 1,
                                 what="a heartbeat after the marker").body
        assert beat["pid"] == self.pid and beat["state"] == "ready"
        assert beat["counters"]["dropped"] == self.refused, (beat["counters"], self.refused)
        assert beat["counters"]["errors"] == 0, beat["counters"]

    def close(self) -> None:
        self.raw.close()
        self.good.close()


@pytest.fixture
def target(supervisor_factory, collector_factory):
    sup = supervisor_factory(f'[actors."{PROBE}"]\nheartbeat_s = 0.2\nsettings = {{ echo = ["chaos."] }}\n')
    sup.wait_running(PROBE)
    out = collector_factory(sup, ["probe.echo", "sys.heartbeat"])
    t = Target(sup, out)
    yield t
    t.close()
    assert sup.actor(PROBE)["pid"] == t.pid and sup.actor(PROBE)["restarts"] == 0


def test_every_message_of_the_corpus_is_counted_and_the_actor_goes_on(target):
    cases = corpus()
    for frames in cases.values():
        target.send(frames)
    assert target.refused == len(cases)
    target.still_handles_and_counts()
    print(f"\ncorpus: {len(cases)} malformed messages, all counted as dropped")


keys = st.sampled_from(["v", "src", "seq", "ts", "corr", "iid", "host", "latched", "x"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=12),
                    st.binary(max_size=12), st.sampled_from([0, 1, "chaos"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
records = st.builds(lambda d, s, i: msgpack.ExtType(ARRAY_EXT, msgpack.packb([d, s, i])),
                    st.sampled_from(["<i4", "|u1", "<f8", "<U2", "|O8", "x", 3]),
                    st.one_of(st.lists(st.integers(-2, 5), max_size=3), scalars), st.one_of(st.integers(-1, 3), scalars))
headers = st.one_of(st.fixed_dictionaries({"v": st.just(1), "src": st.just("fuzz"), "seq": st.integers(0, 9),
                                           "ts": st.just(1)}, optional={k: values for k in ["corr", "iid", "host"]}),
                    st.dictionaries(keys, values, max_size=6)).map(lambda h: msgpack.packb(h, use_bin_type=True))
bodies = st.one_of(values, st.dictionaries(st.text(max_size=4), st.one_of(values, records), max_size=3)).map(
    lambda b: msgpack.packb(b, use_bin_type=True)) | st.binary(max_size=24)
messages = st.tuples(st.binary(max_size=6), headers, bodies, st.lists(st.binary(max_size=12), max_size=3)).map(
    lambda m: [TOPIC + m[0], m[1], m[2], *m[3]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(messages, min_size=1, max_size=10))
def test_generated_messages_are_counted_exactly_as_the_codec_refuses_them(target, batch):
    for frames in batch:
        target.send(frames)
    target.still_handles_and_counts()


def test_forged_sequence_numbers_cannot_silence_the_heartbeat(target):
    """Found by bench/chaos.py: two well-formed messages whose seq jumped to 2**64 - 1 made ``gaps`` exceed
    uint64; every heartbeat after failed to encode, and the supervisor killed the probe as hung."""
    for src in ("forger-a", "forger-b", "forger-c"):
        for seq in (0, 2**64 - 1):
            target.send([TOPIC, msgpack.packb({"v": 1, "src": src, "seq": seq, "ts": 1}), msgpack.packb({})])
    target.still_handles_and_counts()
    beats = target.out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == PROBE
                                and m.body["uptime"] > 6.0, what="heartbeats past the liveness timeout").body
    assert beats["pid"] == target.pid and beats["counters"]["gaps"] == 0
