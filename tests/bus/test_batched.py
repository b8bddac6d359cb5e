"""The batched form, envelope version 2 (bus/batched.py, docs/wire.md section 13): the codec on its own,
the publisher's gathering policy on its own, then real publishers and subscribers over a real broker."""

from __future__ import annotations

import random
import time

import msgpack
import numpy as np
import pytest
import zmq

from bus.batched import Gatherer, batch_frames, batch_from_plain, decode_batch
from bus.speedups import native
from bus.envelope import BATCH_MARKER, EnvelopeError, Encoder, Header, Limits, encode, mark_latched
from bus.pubsub import Publisher, Subscriber
from tests.support import raw_sub, wait_until

WAIT_MS = 20_000


def _batch(enc: Encoder, topic: str, seq0: int, bodies: list[dict], corr: str | None = None) -> list:
    records = []
    for i, body in enumerate(bodies):
        topic_raw, rec, arrays, in_shm = enc.record(topic, 1_000 + i, body, corr)
        assert not arrays and not in_shm
        records.append(rec)
    return batch_frames(topic_raw, enc.batch_head(seq0), records)


# -- the codec -----------------------------------------------------------------


def test_a_batch_is_plain_msgpack_an_outside_reader_can_take_apart():
    enc = Encoder("imu", host="h1", iid="7-ab")
    frames = _batch(enc, "imu.raw", 40, [{"ax": 0.5}, {"ax": 1.5}], corr="c-1")
    assert frames[0] == BATCH_MARKER + b"imu.raw" and len(frames) == 2
    head, *records = msgpack.unpackb(frames[1])
    assert head == {"v": 2, "src": "imu", "host": "h1", "iid": "7-ab", "seq": 40}
    assert records == [[1000, {"ax": 0.5}, "c-1"], [1001, {"ax": 1.5}, "c-1"]]


def test_decoding_gives_one_message_per_record_with_consecutive_seqs():
    enc = Encoder("imu", host="h1", iid="7-ab")
    msgs = decode_batch(b"imu.raw", _batch(enc, "imu.raw", 7, [{"i": i} for i in range(5)])[1], [])
    assert [m.header.seq for m in msgs] == [7, 8, 9, 10, 11]
    assert [m.body for m in msgs] == [{"i": i} for i in range(5)]
    h = msgs[0].header
    assert (h.src, h.host, h.iid, h.v, h.ts, h.corr, h.latched) == ("imu", "h1", "7-ab", 2, 1000, None, False)
    assert all(m.topic == "imu.raw" for m in msgs)


def _packed(obj) -> bytes:
    return msgpack.packb(obj)


HEAD = {"v": 2, "src": "s", "seq": 0}


@pytest.mark.parametrize("batch, reason", [
    (_packed({"a": 1}), "array"),
    (_packed([HEAD]), "at least one record"),
    (_packed([{**HEAD, "v": 1}, [1, {}]]), "version"),
    (_packed([{**HEAD, "src": ""}, [1, {}]]), "src"),
    (_packed([{**HEAD, "seq": -1}, [1, {}]]), "seq"),
    (_packed([{**HEAD, "seq": True}, [1, {}]]), "seq"),
    (_packed([{**HEAD, "latched": 1}, [1, {}]]), "latched"),
    (_packed([HEAD, [1]]), "record 0"),
    (_packed([HEAD, [1, {}], [-5, {}]]), "record 1: ts"),
    (_packed([HEAD, [1, [1, 2]]]), "body is not a map"),
    (_packed([HEAD, [1, {}, 5]]), "corr"),
    (_packed([HEAD, [1, {"a": msgpack.ExtType(9, b"")}]]), "unknown extension"),
    (_packed([HEAD, [1, {"a": msgpack.ExtType(1, _packed(["|u1", [2], 0]))}], [2, {}]]), "array frame index"),
    (b"\x92\x80", "bad batch"),
    (_packed([{**HEAD, "seq": (1 << 64) - 1}, [1, {}], [2, {}]]), "past uint64"),
    (_packed([{**HEAD, "extra": [1]}, [1, {}]]), "head field"),
])
def test_bad_batches_are_refused_with_a_reason(batch, reason):
    with pytest.raises(EnvelopeError, match=reason):
        decode_batch(b"t.x", batch, [])


def test_an_array_in_the_head_is_refused_not_a_crash():
    ref = msgpack.ExtType(1, _packed(["|u1", [2], 0]))
    with pytest.raises(EnvelopeError, match="head field"):
        decode_batch(b"t.x", _packed([{**HEAD, "v": ref}, [1, {}]]), [b"\x01\x02"])


def test_arrays_are_carried_only_by_a_batch_of_one():
    ref = msgpack.ExtType(1, _packed(["|u1", [4], 0]))
    one = _packed([HEAD, [1, {"a": ref}]])
    (msg,) = decode_batch(b"t.x", one, [b"\x01\x02\x03\x04"])
    assert msg.body["a"].tolist() == [1, 2, 3, 4]
    two = _packed([HEAD, [1, {"a": ref}], [2, {}]])
    with pytest.raises(EnvelopeError, match="only a batch of one"):
        decode_batch(b"t.x", two, [b"\x01\x02\x03\x04"])
    with pytest.raises(EnvelopeError, match="not referenced"):
        decode_batch(b"t.x", _packed([HEAD, [1, {}]]), [b"\x00"])


def test_every_bound_is_checked_before_unpacking():
    small = Limits(max_message_bytes=1000, max_body_bytes=100)
    enc = Encoder("s")
    big = _batch(enc, "t.x", 0, [{"pad": "x" * 60}, {"pad": "y" * 60}])[1]
    with pytest.raises(EnvelopeError, match="batch of .* bytes exceeds 100"):
        decode_batch(b"t.x", big, [], small)
    with pytest.raises(EnvelopeError, match="exceeds 1000"):
        decode_batch(b"t.x", b"\x90", [b"\x00" * 1000], small)
    with pytest.raises(EnvelopeError, match="topic"):
        decode_batch(b"@bad", big, [])


def test_damaged_batches_raise_envelope_errors_and_nothing_else():
    rng = random.Random(18)
    enc = Encoder("fuzz", host="h", iid="1-a")
    good = _batch(enc, "t.x", 3, [{"i": i, "s": "v" * i} for i in range(20)])[1]
    refused = 0
    for _ in range(2000):
        data = bytearray(good)
        how = rng.random()
        if how < 0.4:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            msgs = decode_batch(b"t.x", bytes(data), [])
        except EnvelopeError:
            refused += 1
            continue
        assert all(type(m.body) is dict for m in msgs)
    assert refused > 500


def test_a_plain_message_in_the_batched_form_keeps_sender_seq_corr_latched_and_arrays():
    image = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    plain = mark_latched(encode("sensor.state", Header("cam", 9, 123, "k-1", iid="3-x", host="h2"),
                                {"state": "up", "image": image}))
    frames = batch_from_plain(plain)
    assert frames[0] == BATCH_MARKER + b"sensor.state" and len(frames) == 3
    (msg,) = decode_batch(b"sensor.state", frames[1], [memoryview(f) for f in frames[2:]])
    h = msg.header
    assert (h.src, h.seq, h.ts, h.corr, h.iid, h.host, h.latched) == ("cam", 9, 123, "k-1", "3-x", "h2", True)
    np.testing.assert_array_equal(msg.body["image"], image)
    with pytest.raises(EnvelopeError):
        batch_from_plain([b"t.x", b"\x80"])


# -- the gathering policy (the Python class and the native one, bus/_speedups.c) --


@pytest.fixture(params=["python", "native"])
def gatherer(request):
    """The class under test: both must follow the same policy."""
    if request.param == "python":
        return Gatherer
    if native is None:
        pytest.skip("the native module is not built (bus/speedups.py)")
    return native.Gatherer


def test_after_a_quiet_spell_a_message_goes_at_once(gatherer):
    g = gatherer(gather_ns=100)
    assert g.add(b"a", 0, b"r0", 1_000) == [(b"a", 0, [b"r0"])]
    assert g.deadline_ns is None and not g.pending
    assert g.add(b"a", 1, b"r1", 1_200) == [(b"a", 1, [b"r1"])]  # 200 ns later: quiet long enough


def test_within_the_gather_time_messages_wait_and_leave_together_at_the_deadline(gatherer):
    g = gatherer(gather_ns=100)
    g.add(b"a", 0, b"r0", 1_000)
    assert g.add(b"a", 1, b"r1", 1_010) is None
    assert g.deadline_ns == 1_100  # one send per gather time at most
    assert g.add(b"b", 0, b"s0", 1_020) is None
    assert g.add(b"a", 2, b"r2", 1_050) is None
    assert g.due(1_099) is None
    assert g.due(1_100) == [(b"a", 1, [b"r1", b"r2"]), (b"b", 0, [b"s0"])]
    assert g.deadline_ns is None and g.last_send_ns == 1_100
    assert g.add(b"a", 3, b"r3", 1_150) is None  # 50 ns after that send: gathered again


def test_a_message_past_the_deadline_takes_everything_gathered_with_it(gatherer):
    g = gatherer(gather_ns=100)
    g.add(b"a", 0, b"r0", 0)
    g.add(b"a", 1, b"r1", 10)
    assert g.add(b"a", 2, b"r2", 500) == [(b"a", 1, [b"r1", b"r2"])]


def test_a_full_batch_leaves_without_waiting(gatherer):
    g = gatherer(gather_ns=10**9, max_records=3, max_bytes=10**6)
    g.add(b"a", 0, b"r", 0)
    assert g.add(b"a", 1, b"r", 1) is None and g.add(b"a", 2, b"r", 2) is None
    assert g.add(b"a", 3, b"r", 3) == [(b"a", 1, [b"r", b"r", b"r"])]
    g = gatherer(gather_ns=10**9, max_records=1000, max_bytes=100)
    g.add(b"a", 0, b"r", 0)
    assert g.add(b"a", 1, b"x" * 40, 1) is None
    assert g.add(b"a", 2, b"x" * 60, 2) == [(b"a", 1, [b"x" * 40, b"x" * 60])]  # full at 100 bytes


def test_no_batch_grows_past_max_bytes_and_a_big_record_goes_alone_after_what_was_gathered(gatherer):
    g = gatherer(gather_ns=10**9, max_records=1000, max_bytes=100)
    g.add(b"a", 0, b"r", 0)
    assert g.add(b"a", 1, b"x" * 60, 1) is None
    assert g.add(b"a", 2, b"y" * 60, 2) == [(b"a", 1, [b"x" * 60])]  # the one that did not fit starts the next
    assert g.deadline_ns == 2 + 10**9
    assert g.add(b"a", 3, b"s", 3) is None
    assert g.add(b"b", 0, b"z" * 500, 4) == [(b"a", 2, [b"y" * 60, b"s"]), (b"b", 0, [b"z" * 500])]
    assert not g.pending


def test_a_seq_that_does_not_follow_starts_a_new_batch(gatherer):
    g = gatherer(gather_ns=10**9)
    g.add(b"a", 4, b"r4", 0)
    assert g.add(b"a", 5, b"r5", 1) is None
    assert g.add(b"a", 7, b"r7", 2) == [(b"a", 5, [b"r5"]), (b"a", 7, [b"r7"])]


def test_take_all_empties_it_in_topic_order(gatherer):
    g = gatherer(gather_ns=100)
    assert g.take_all(0) is None
    g.add(b"a", 0, b"r0", 0)
    g.add(b"b", 5, b"s5", 1)
    g.add(b"a", 1, b"r1", 2)
    assert g.take_all(3) == [(b"b", 5, [b"s5"]), (b"a", 1, [b"r1"])]
    assert g.due(10**9) is None


# -- over a real broker ----------------------------------------------------------


def _ready(pub: Publisher, *subscriptions: bytes) -> None:
    wait_until(lambda: pub.drain_subscriptions() or set(subscriptions) <= pub.subscriptions,
               what=f"subscriptions {subscriptions}")


def test_a_burst_reaches_a_batched_subscriber_in_few_frames_and_an_outside_one_in_version_1(broker):
    outside = raw_sub(broker.ctx, broker.backend, b"imu.raw")  # pyzmq + msgpack only: knows the first envelope
    spy = raw_sub(broker.ctx, broker.backend, BATCH_MARKER + b"imu.raw")
    sub = Subscriber(broker.ctx, broker.backend, ["imu.raw"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "imu")
    _ready(pub, b"imu.raw", BATCH_MARKER + b"imu.raw")
    n = 3000
    for i in range(n):
        pub.publish("imu.raw", {"i": i})
    got = [sub.recv(WAIT_MS) for _ in range(n)]
    assert [m.body["i"] for m in got] == list(range(n))
    assert [m.header.seq for m in got] == list(range(n)) and {m.header.v for m in got} == {2}
    assert sub.stats.received == n and sub.stats.gaps == 0 and sub.stats.malformed == 0

    batches = 0
    records = 0
    while records < n and spy.poll(WAIT_MS):
        frames = spy.recv_multipart()
        records += len(msgpack.unpackb(frames[1])) - 1
        batches += 1
    assert records == n and batches < n // 5  # gathered, not one frame per message

    for i in range(n):
        assert outside.poll(WAIT_MS)
        topic, head, body = outside.recv_multipart()
        assert topic == b"imu.raw" and msgpack.unpackb(head)["v"] == 1 and msgpack.unpackb(head)["seq"] == i
        assert msgpack.unpackb(body) == {"i": i}
    for s in (outside, spy):
        s.close()
    pub.close(), sub.close()


def test_messages_left_from_a_batch_are_pending_while_the_socket_shows_nothing(broker):
    sub = Subscriber(broker.ctx, broker.backend, ["imu.raw"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "imu", gather_ns=60 * 10**9)
    _ready(pub, BATCH_MARKER + b"imu.raw")
    for i in range(5):
        pub.publish("imu.raw", {"i": i})
    pub.flush()
    assert sub.recv(WAIT_MS).body == {"i": 0}  # the first went alone
    assert sub.recv(WAIT_MS).body == {"i": 1}  # the other four came as one batch
    assert sub.pending() == 3 and not sub.sock.poll(100)
    assert [sub.recv_nowait().body["i"] for _ in range(3)] == [2, 3, 4] and sub.pending() == 0
    with pytest.raises(zmq.ZMQError):
        pub.close() or pub.publish("imu.raw", {"i": 5})  # a closed publisher says so, it does not gather
    sub.close()


def test_what_is_left_gathered_is_sent_by_the_flusher_without_another_publish(broker):
    sub = Subscriber(broker.ctx, broker.backend, ["imu.raw"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "imu", gather_ns=5_000_000)
    _ready(pub, BATCH_MARKER + b"imu.raw")
    for i in range(3):  # the first goes at once, the others wait for the flusher (5 ms)
        pub.publish("imu.raw", {"i": i})
    assert pub._gather.pending
    got = [sub.recv(WAIT_MS) for _ in range(3)]
    assert [m.body["i"] for m in got] == [0, 1, 2]
    assert not pub._gather.pending
    pub.close(), sub.close()


def test_the_flusher_sends_what_is_gathered_when_the_lock_was_held_at_its_deadline(broker):
    # It does not wait for a busy lock (its releases would wake it at every message); it looks again later.
    sub = Subscriber(broker.ctx, broker.backend, ["imu.raw"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "imu", gather_ns=500_000_000)
    _ready(pub, BATCH_MARKER + b"imu.raw")
    for i in range(3):  # the first goes at once, the others are gathered for 0.5 s
        pub.publish("imu.raw", {"i": i})
    with pub._lock:
        deadline_ns = pub._gather.deadline_ns
        assert deadline_ns is not None
        first = sub.recv(WAIT_MS)
        while time.monotonic_ns() < deadline_ns + 100_000_000:  # past the deadline, not a period past it
            assert sub.recv(20) is None
        assert pub._gather.pending
    assert [first.body["i"], *[sub.recv(WAIT_MS).body["i"] for _ in range(2)]] == [0, 1, 2]
    pub.close(), sub.close()


def test_what_is_due_goes_with_the_next_message_of_another_topic(broker, ipc_dir):
    # The flusher may find the lock taken at every look while other topics are published: the holder sends it.
    sub = Subscriber(broker.ctx, broker.backend, ["imu.raw"], batched=True)
    plain = raw_sub(broker.ctx, broker.backend, b"cam.meta")
    assert sub.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "imu", gather_ns=50_000_000)
    pub._arm = lambda: None  # no flusher: only the next message can send what is due
    _ready(pub, BATCH_MARKER + b"imu.raw", b"cam.meta")
    pub.publish("imu.raw", {"i": 0})  # at once
    pub.publish("imu.raw", {"i": 1})  # gathered
    assert sub.recv(WAIT_MS).body["i"] == 0
    deadline_ns = pub._gather.deadline_ns
    while time.monotonic_ns() < deadline_ns:
        assert sub.recv(20) is None
    pub.publish("cam.meta", {"n": 1})
    assert sub.recv(WAIT_MS).body["i"] == 1
    assert plain.poll(WAIT_MS)
    pub.close(), sub.close(), plain.close()


def test_the_flusher_is_armed_once_for_a_stream_not_once_per_batch(broker):
    sub = Subscriber(broker.ctx, broker.backend, ["imu.raw"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "imu", gather_ns=100_000_000)
    _ready(pub, BATCH_MARKER + b"imu.raw")
    arms = []
    arm = pub._arm
    pub._arm = lambda: (arms.append(time.monotonic()), arm())[1]
    n = 120
    t0 = time.monotonic()
    for i in range(n):  # one every 5 ms: six gather periods of 0.1 s, never a quiet one
        pub.publish("imu.raw", {"i": i})
        time.sleep(max(0.0, t0 + (i + 1) * 0.005 - time.monotonic()))
    assert [sub.recv(WAIT_MS).body["i"] for _ in range(n)] == list(range(n))
    # Re-armed after each batch, it would be armed about six times; a stall of 0.1 s on a loaded machine
    # may make one quiet period.
    assert len(arms) <= 2, arms
    pub.close(), sub.close()


def test_close_sends_what_is_gathered(broker):
    sub = Subscriber(broker.ctx, broker.backend, ["imu.raw"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "imu", gather_ns=60 * 10**9)  # the flusher would wait 1 min
    _ready(pub, BATCH_MARKER + b"imu.raw")
    for i in range(4):
        pub.publish("imu.raw", {"i": i})
    pub.close()
    assert [sub.recv(WAIT_MS).body["i"] for _ in range(4)] == [0, 1, 2, 3]
    sub.close()


def test_frames_go_through_shared_memory_alone_after_what_was_gathered_and_overwrites_are_drops(broker):
    sub = Subscriber(broker.ctx, broker.backend, ["camera.frame"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "cam", shm_slots=2, gather_ns=60 * 10**9)
    _ready(pub, BATCH_MARKER + b"camera.frame")
    images = [np.full((480, 640, 3), i, np.uint8) for i in range(4)]
    pub.publish("camera.frame", {"n": -2})
    pub.publish("camera.frame", {"n": -1})  # gathered: must arrive before the frame after it
    for i, image in enumerate(images):  # four frames into a ring of two, nobody reading yet
        pub.publish("camera.frame", {"n": i, "image": image})
    got = []
    while (msg := sub.recv(2000)) is not None:
        got.append(msg)
    assert [m.body["n"] for m in got] == [-2, -1, 2, 3]
    for m in got[2:]:
        np.testing.assert_array_equal(m.body["image"], images[m.body["n"]])
    assert sub.stats.shm_drops == 2 and sub.stats.gaps == 0 and sub.stats.malformed == 0
    pub.close(), sub.close()


def test_a_new_batched_subscriber_gets_latched_values_in_the_batched_form(broker):
    pub = Publisher(broker.ctx, broker.frontend, "cam")
    early = Subscriber(broker.ctx, broker.backend, ["sensor.state"])
    assert early.wait_subscribed(broker.frontend, 20)
    pub.publish("sensor.state", {"source": "cam", "state": "streaming", "detail": ""})
    assert early.recv(WAIT_MS) is not None  # the cache has it too by now (it subscribed first)
    late = Subscriber(broker.ctx, broker.backend, ["sensor.state"], batched=True)
    msg = late.recv(WAIT_MS)
    assert msg is not None and msg.header.latched and msg.header.v == 2
    assert msg.body["state"] == "streaming" and late.stats.latched == 1
    pub.close(), early.close(), late.close()


def test_a_malformed_batch_is_counted_and_the_next_good_message_still_arrives(broker):
    sub = Subscriber(broker.ctx, broker.backend, ["t.x"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    raw = broker.ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(broker.frontend)
    enc = Encoder("w")

    def good(n: int) -> list[bytes]:
        return batch_frames(b"t.x", enc.batch_head(n), [enc.record("t.x", 5, {"n": n})[1]])

    bad = [[BATCH_MARKER + b"t.x"], [BATCH_MARKER + b"t.x", b"\xc1"], [BATCH_MARKER + b"t.x", b"\x91\x80"],
           [BATCH_MARKER + b"t.x", _packed([HEAD, [1, {}]]), b"stray"]]
    wait_until(lambda: raw.send_multipart(good(0)) or sub.recv(200) is not None, what="the raw publisher connected")
    while sub.recv(300) is not None:  # the other sync messages
        pass
    before = sub.stats.malformed
    for frames in bad:
        raw.send_multipart(frames)
        raw.send_multipart(good(1))  # a lone frame must not take the good message after it along
    got = [sub.recv(WAIT_MS) for _ in bad]
    assert [m.body for m in got] == [{"n": 1}] * len(bad)
    assert sub.stats.malformed - before == len(bad)
    raw.close()
    sub.close()


def test_forwarded_messages_reach_batched_subscribers_under_their_own_sender(broker):
    sub = Subscriber(broker.ctx, broker.backend, ["imu.raw"], batched=True)
    assert sub.wait_subscribed(broker.frontend, 20)
    bridge = Publisher(broker.ctx, broker.frontend, "bridge")
    _ready(bridge, BATCH_MARKER + b"imu.raw")
    remote = [encode("imu.raw", Header("imu", seq, 50 + seq, iid="1-r", host="far"), {"k": seq})
              for seq in range(3)]
    bridge.forward(remote[0])
    bridge.forward_small([[bytes(f) for f in frames] for frames in remote[1:]])
    got = [sub.recv(WAIT_MS) for _ in range(3)]
    assert [(m.header.host, m.header.src, m.header.seq, m.body["k"]) for m in got] == [
        ("far", "imu", 0, 0), ("far", "imu", 1, 1), ("far", "imu", 2, 2)]
    assert sub.stats.gaps == 0
    bridge.close(), sub.close()



def test_wait_due_lets_a_publisher_that_keeps_publishing_send_and_says_when_it_went_quiet(gatherer):
    # The flusher waits here holding no lock: it is told to send only once the batch is due and nothing came
    # for a quarter period, and that nothing is left once nothing came for a whole period.
    g = gatherer(gather_ns=40_000_000)
    now = time.monotonic_ns()
    g.add(b"a", 0, b"r0", now)  # at once
    assert g.add(b"a", 1, b"r1", now + 1) is None
    deadline = g.deadline_ns
    assert g.wait_due() is True
    assert time.monotonic_ns() >= max(deadline, g.last_add_ns + 10_000_000)
    assert g.due(time.monotonic_ns()) == [(b"a", 1, [b"r1"])]
    t = time.monotonic_ns()
    assert g.wait_due() is False  # nothing gathered: quiet once a period passed since the last message
    assert time.monotonic_ns() >= g.last_add_ns + 40_000_000 and time.monotonic_ns() >= t
