"""Publisher, subscriber and broker over real ipc sockets."""

from __future__ import annotations

import os

import msgpack
import numpy as np
import pytest
import zmq

from bus.envelope import Header, Limits, encode
from bus.pubsub import MAX_GAP, Publisher, Subscriber
from bus.tools import message_to_json

WAIT_MS = 20_000


def connected(broker, topics=(), prefixes=(), **kw):
    pub = Publisher(broker.ctx, broker.frontend, "tester")
    sub = Subscriber(broker.ctx, broker.backend, topics, prefixes=prefixes, **kw)
    assert sub.wait_subscribed(broker.frontend, 20), "subscriptions never reached the broker"
    for t in list(topics) + [p + "x" for p in prefixes]:
        assert pub.wait_for_subscriber(t, 20), f"subscription for {t!r} never reached the publisher"
    return pub, sub


def test_messages_with_arrays_cross_the_broker(broker):
    pub, sub = connected(broker, ["camera.frame"])
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for frame_id in range(3):
        assert pub.publish("camera.frame", {"image": image, "frame_id": frame_id}) == frame_id
    for frame_id in range(3):
        msg = sub.recv(WAIT_MS)
        assert msg is not None and msg.body["frame_id"] == frame_id and msg.header.seq == frame_id
        np.testing.assert_array_equal(msg.body["image"], image)
    assert sub.stats.received == 3 and sub.stats.gaps == 0 and sub.stats.malformed == 0
    pub.close(), sub.close()


def test_exact_topics_are_filtered_after_receipt(broker):
    pub, sub = connected(broker, ["sys.heartbeat"])
    pub.publish("sys.heartbeats", {"wrong": True})  # matches the zmq prefix, not the topic
    pub.publish("sys.heartbeat", {"right": True})
    msg = sub.recv(WAIT_MS)
    assert msg.topic == "sys.heartbeat" and msg.body == {"right": True}
    assert sub.recv(300) is None
    pub.close(), sub.close()


def test_prefix_subscriptions_take_a_whole_area(broker):
    pub, sub = connected(broker, prefixes=["detect."])
    for topic in ("detect.person", "detect.wifi_24", "camera.frame"):
        pub.publish(topic, {})
    got = {sub.recv(WAIT_MS).topic, sub.recv(WAIT_MS).topic}
    assert got == {"detect.person", "detect.wifi_24"}
    assert sub.recv(300) is None
    pub.close(), sub.close()


def _raw_publisher(broker):
    raw = broker.ctx.socket(zmq.XPUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(broker.frontend)
    assert raw.poll(WAIT_MS), "no subscription reached the raw publisher"
    raw.recv()
    return raw


def test_seq_gaps_are_counted_per_sender_and_topic_and_restarts_are_not_gaps(broker):
    sub = Subscriber(broker.ctx, broker.backend, prefixes=["test."])
    raw = _raw_publisher(broker)

    def send(src, topic, seq):
        raw.send_multipart(encode(topic, Header(src=src, seq=seq, ts=0), {"seq": seq}), copy=False)

    for seq in (0, 1, 5, 6):          # 2, 3, 4 lost
        send("a", "test.x", seq)
    for seq in (10, 12):              # a late joiner starts anywhere; 11 lost
        send("b", "test.x", seq)
    for seq in (0, 1):                # another topic of "a" is its own stream
        send("a", "test.y", seq)
    send("a", "test.x", 0)            # sender "a" restarted: not a gap
    for _ in range(9):
        assert sub.recv(WAIT_MS) is not None
    assert sub.stats.gaps == 4
    assert sub.stats.gaps_by_stream == {(("", "a", ""), "test.x"): 3, (("", "b", ""), "test.x"): 1}
    assert sub.stats.resets == 1
    raw.close(), sub.close()


def test_a_sender_is_host_name_and_instance_so_a_restart_or_a_second_process_makes_no_false_gaps(broker):
    """Issue 16 item 6: seq runs per (host, src, iid); a new instance is a new sequence, not a reset."""
    sub = Subscriber(broker.ctx, broker.backend, prefixes=["test."])
    raw = _raw_publisher(broker)

    def send(iid, seq, host="h1"):
        raw.send_multipart(encode("test.x", Header(src="sensor", seq=seq, ts=0, iid=iid, host=host), {}), copy=False)

    for seq in range(3):
        send("100-aa", seq)           # the first process
    send("200-bb", 0)                 # restarted: a new instance starts at 0
    for seq in range(1, 4):           # ...and a second live process, interleaved with the first
        send("100-aa", seq + 2)
        send("200-bb", seq)
    send("100-aa", 0, host="h2")      # the same name and instance on another host is another sender
    for _ in range(11):
        assert sub.recv(WAIT_MS) is not None
    assert (sub.stats.gaps, sub.stats.resets) == (0, 0)
    raw.close(), sub.close()


def test_publishers_stamp_host_and_a_fresh_instance_id_and_count_what_they_send(broker):
    from bus.senders import origin_host, pid_of_iid

    sub = Subscriber(broker.ctx, broker.backend, ["test.x"])
    assert sub.wait_subscribed(broker.frontend, 10)
    pubs = [Publisher(broker.ctx, broker.frontend, "twin") for _ in range(2)]
    for pub in pubs:
        pub.wait_for_subscriber("test.x", 10)
        pub.publish("test.x", {"a": np.zeros(10, np.float32)})
    got = [sub.recv(WAIT_MS) for _ in pubs]
    assert {m.header.iid for m in got} == {p.iid for p in pubs} and pubs[0].iid != pubs[1].iid
    assert all(m.header.host == origin_host() and pid_of_iid(m.header.iid) == os.getpid() for m in got)
    assert pubs[0].topic_counts() == {"test.x": {"out": 1, "bytes": got[0].nbytes}}
    for pub in pubs:
        pub.close()
    sub.close()


def test_malformed_input_never_crashes_a_subscriber_and_is_counted(broker):
    sub = Subscriber(broker.ctx, broker.backend, prefixes=["test."], limits=Limits(max_message_bytes=200_000))
    raw = _raw_publisher(broker)
    good = encode("test.ok", Header(src="t", seq=0, ts=0), {"a": np.arange(4)})
    bad = [
        [b"test.bad", b"\x00\xff\x13garbage"],                              # too few frames
        [b"test.bad", b"\xc1", b"\xc1"],                                    # not msgpack
        [b"test.bad", good[1], msgpack.packb({"a": msgpack.ExtType(7, b"")})],  # unknown extension
        [b"test.bad", good[1], good[2]],                                    # array frame missing
        [b"test.bad", good[1], good[2], b"\x00" * 3],                       # truncated array frame
        [b"test.bad", good[1], msgpack.packb({"a": 1, "b": 2}), b"x" * 150_000, b"y" * 150_000],  # oversize
    ]
    for frames in bad:
        raw.send_multipart(frames)
    raw.send_multipart(good, copy=False)
    msg = sub.recv(WAIT_MS)
    assert msg is not None and msg.topic == "test.ok"
    np.testing.assert_array_equal(msg.body["a"], np.arange(4))
    assert sub.stats.malformed == len(bad)
    raw.close(), sub.close()


def test_a_lone_frame_never_takes_the_next_message_with_it(broker):
    sub = Subscriber(broker.ctx, broker.backend, prefixes=["test."])
    raw = _raw_publisher(broker)
    good = [encode("test.ok", Header(src="t", seq=i, ts=0), {"i": i}) for i in range(3)]
    raw.send_multipart(good[0])
    raw.send(b"test.lone")                       # one frame, then a good message
    raw.send_multipart(good[1])
    raw.send(b"test.lone")                       # two lone frames in a row, then a good message
    raw.send(b"test.lone")
    raw.send_multipart(good[2])
    got = [sub.recv(WAIT_MS) for _ in range(3)]
    assert [m.body["i"] for m in got] == [0, 1, 2]
    assert sub.stats.malformed == 3 and sub.stats.gaps == 0
    raw.close(), sub.close()


def test_publisher_knows_when_nobody_listens(broker):
    pub = Publisher(broker.ctx, broker.frontend, "lonely")
    assert not pub.wait_for_subscriber("nobody.here", 0.3)
    pub.close()


def test_tap_json_summarises_arrays_unless_full(broker):
    pub, sub = connected(broker, ["camera.frame"])
    pub.publish("camera.frame", {"image": np.zeros((2, 3, 3), np.uint8), "frame_id": 1})
    msg = sub.recv(WAIT_MS)
    import json

    short = json.loads(message_to_json(msg))
    assert short["body"]["image"] == {"dtype": "uint8", "shape": [2, 3, 3]}
    assert short["topic"] == "camera.frame" and short["src"] == "tester" and short["seq"] == 0
    full = json.loads(message_to_json(msg, full=True))
    assert full["body"]["image"] == np.zeros((2, 3, 3), np.uint8).tolist()
    pub.close(), sub.close()


def test_broker_counts_what_it_forwards(broker):
    pub, sub = connected(broker, ["test.count"])
    for _ in range(5):
        pub.publish("test.count", {})
    for _ in range(5):
        assert sub.recv(WAIT_MS) is not None
    stats = broker.broker.stats()
    assert stats["frontend_frames_in"] >= 15 and stats["backend_frames_out"] >= 15
    pub.close(), sub.close()


def test_broker_refuses_a_public_address(ipc_dir):
    from bus.broker import Broker
    from bus.endpoints import EndpointError

    with pytest.raises(EndpointError, match="CURVE"):
        Broker("tcp://0.0.0.0:45555", f"ipc://{ipc_dir}/sub.sock").start()


def test_at_the_high_water_mark_a_slow_subscriber_loses_alone_and_counts_every_loss(ipc_dir):
    """Documented HWM behaviour: the broker drops for the slow subscriber only; its seq gaps account for all."""
    from bus.broker import Broker

    ctx = zmq.Context.instance()
    frontend, backend = f"ipc://{ipc_dir}/pub.sock", f"ipc://{ipc_dir}/sub.sock"
    broker = Broker(frontend, backend, hwm=50, ctx=ctx).start()
    try:
        fast = Subscriber(ctx, backend, ["test.flood"], hwm=50)
        slow = Subscriber(ctx, backend, ["test.flood"], hwm=50)
        assert fast.wait_subscribed(frontend, 20) and slow.wait_subscribed(frontend, 20)
        pub = Publisher(ctx, frontend, "flood", hwm=100_000)
        assert pub.wait_for_subscriber("test.flood", 20)
        total, fast_got = 20_000, 0
        payload = {"pad": b"x" * 2000}
        for i in range(total):
            pub.publish("test.flood", payload)
            while fast.recv(0) is not None:      # the fast one keeps up as it goes
                fast_got += 1
        # A loss at the very end shows only when a later message arrives, so
        # end markers follow until the (overflowed) slow subscriber sees one.
        def drain(sub, got):
            while True:
                msg = sub.recv(500)
                if msg is None:
                    pub.publish("test.flood", {"end": True})
                    continue
                got += 1
                if msg.body.get("end"):
                    return got, msg.header.seq

        fast_got, fast_last = drain(fast, fast_got)
        slow_got, slow_last = drain(slow, 0)
        assert slow_got < total, "the slow subscriber should have overflowed its high-water mark"
        # every message up to the last one seen was either received or counted as a gap
        assert slow_got + slow.stats.gaps == slow_last + 1
        assert fast_got + fast.stats.gaps == fast_last + 1
        assert fast.stats.gaps < slow.stats.gaps
        pub.close(), fast.close(), slow.close()
    finally:
        broker.stop()


def test_a_forged_seq_jump_is_a_reset_not_a_gap_so_the_counts_stay_encodable(broker):
    """Issue 14: two messages with seq 2**64 - 1 once made ``gaps`` exceed uint64, and the heartbeat
    carrying it could no longer be encoded: the actor fell silent and was killed as hung."""
    sub = Subscriber(broker.ctx, broker.backend, prefixes=["test."])
    raw = _raw_publisher(broker)
    for src in ("a", "b"):
        for seq in (0, 2**64 - 1, 2**64 - 1 - MAX_GAP):
            raw.send_multipart(encode("test.x", Header(src=src, seq=seq, ts=0), {}), copy=False)
    raw.send_multipart(encode("test.x", Header(src="c", seq=0, ts=0), {}), copy=False)
    raw.send_multipart(encode("test.x", Header(src="c", seq=MAX_GAP + 1, ts=0), {}), copy=False)  # a real gap
    for _ in range(8):
        assert sub.recv(WAIT_MS) is not None
    assert sub.stats.gaps == MAX_GAP and sub.stats.resets == 4
    msgpack.packb(sub.stats.gaps)
    raw.close(), sub.close()
