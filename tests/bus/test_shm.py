"""Shared memory for large arrays (bus/shm.py, docs/wire.md section 12): real segments in /dev/shm,
real processes, real sockets."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import shm
from bus.envelope import LOCAL_MARKER, SHM_EXT
from bus.pubsub import Publisher, Subscriber
from tests.support import camera_pair, raw_sub, wait_until

WAIT_MS = 20_000
REPO = Path(__file__).resolve().parents[2]


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (480, 640, 3), dtype=np.uint8)


def _mine(pid: int) -> list[str]:
    return [n for n in shm.segments() if shm.owner_pid(n) == pid]


@pytest.fixture
def ring():
    made = shm.ShmRing(f"sensorium-{os.getpid()}-abc-{id(object()) % 10**6}", 4, 8192)
    yield made
    made.close()


def test_a_segment_is_private_and_readers_copy_what_was_written(ring):
    mode = stat.S_IMODE(os.stat(ring.path).st_mode)
    assert mode == 0o600
    data = np.arange(3000, dtype=np.int16)
    slot, gen = ring.put(data.view(np.uint8))
    reader = shm.ShmReader()
    got = reader.take(ring.name, slot, gen, np.dtype("<i2"), [3000])
    np.testing.assert_array_equal(got, data)
    reader.close()


def test_an_overwritten_slot_is_a_drop_never_wrong_data(ring):
    reader = shm.ShmReader()
    first = ring.put(np.full(100, 1, np.uint8))
    for i in range(ring.slots):  # the ring goes round once: slot 0 now holds other bytes
        ring.put(np.full(100, 2 + i, np.uint8))
    with pytest.raises(shm.ShmDropped, match="overwritten"):
        reader.take(ring.name, *first, np.dtype("|u1"), [100])
    reader.close()


def test_a_half_written_slot_is_a_drop(ring):
    reader = shm.ShmReader()
    slot, gen = ring.write_torn(np.full(1000, 7, np.uint8))
    with pytest.raises(shm.ShmDropped):
        reader.take(ring.name, slot, gen, np.dtype("|u1"), [1000])
    reader.close()


def test_a_slow_reader_counts_overwritten_frames_as_drops_and_loses_nothing_unaccounted(broker):
    pub, sub = camera_pair(broker, shm=True)
    frames = [_image(i) for i in range(10)]
    for i, image in enumerate(frames):  # 10 frames into a ring of 4, nobody reading yet
        pub.publish("camera.frame", {"image": image, "frame_id": i})
    got = []
    while (msg := sub.recv(2000)) is not None:
        got.append(msg)
    assert sub.stats.shm_drops == 6 and sub.stats.gaps == 0 and sub.stats.malformed == 0
    assert [m.body["frame_id"] for m in got] == [6, 7, 8, 9]
    for m in got:
        np.testing.assert_array_equal(m.body["image"], frames[m.body["frame_id"]])
    assert len(got) + sub.stats.shm_drops == 10
    pub.close(), sub.close()


def test_an_outside_subscriber_gets_inline_bytes_while_a_local_one_gets_references(broker):
    """Only pyzmq + msgpack on the outside: the documented plain frames, with the array's bytes."""
    outside = raw_sub(broker.ctx, broker.backend, b"camera.frame")
    spy = raw_sub(broker.ctx, broker.backend, LOCAL_MARKER + b"camera.frame")  # sees the local form as it travels
    local = Subscriber(broker.ctx, broker.backend, ["camera.frame"], shm=True)
    everything = Subscriber(broker.ctx, broker.backend, prefixes=[""])  # a tap: plain, all topics
    assert local.wait_subscribed(broker.frontend, 20) and everything.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "cam")
    wait_until(lambda: pub.drain_subscriptions() or {b"camera.frame", LOCAL_MARKER + b"camera.frame"}
               <= pub.subscriptions, what="both forms subscribed")
    image = _image()
    pub.publish("camera.frame", {"image": image, "frame_id": 0})

    assert outside.poll(WAIT_MS)
    frames = outside.recv_multipart()
    assert frames[0] == b"camera.frame" and len(frames) == 4
    body = msgpack.unpackb(frames[2], ext_hook=lambda code, data: (code, msgpack.unpackb(data)))
    assert body["image"] == (1, ["|u1", [480, 640, 3], 0])
    assert frames[3] == image.tobytes()

    assert spy.poll(WAIT_MS)
    lframes = spy.recv_multipart()
    assert len(lframes) == 3 and lframes[0] == LOCAL_MARKER + b"camera.frame" and lframes[1] == frames[1]
    code, ref = msgpack.unpackb(lframes[2], ext_hook=lambda c, d: (c, msgpack.unpackb(d)))["image"]
    assert code == SHM_EXT and ref[:2] == ["|u1", [480, 640, 3]] and shm.owner_pid(ref[2]) == os.getpid()

    msg = local.recv(WAIT_MS)
    assert msg.topic == "camera.frame" and msg.header.seq == 0
    np.testing.assert_array_equal(msg.body["image"], image)

    msg = everything.recv(WAIT_MS)
    assert msg.topic == "camera.frame"
    np.testing.assert_array_equal(msg.body["image"], image)
    wait_until(lambda: everything.recv(100) is None and everything.stats.local_skipped == 1,
               what="the tap skipping the local form")
    assert everything.stats.malformed == 0 and everything.stats.received == 1
    for s in (outside, spy):
        s.close()
    pub.close(), local.close(), everything.close()


def test_small_messages_reach_local_subscribers_and_no_segment_is_made(broker):
    pub, sub = camera_pair(broker, shm=True)
    pub.publish("camera.frame", {"frame_id": 1, "thumb": np.zeros(16, np.uint8)})
    msg = sub.recv(WAIT_MS)
    assert msg.body["frame_id"] == 1 and msg.body["thumb"].shape == (16,)
    assert _mine(os.getpid()) == []
    pub.close(), sub.close()


def test_without_usable_shared_memory_the_local_form_goes_inline(broker, tmp_path, capsys):
    pub = Publisher(broker.ctx, broker.frontend, "cam", shm_dir=tmp_path / "missing")
    sub = Subscriber(broker.ctx, broker.backend, ["camera.frame"], shm=True)
    assert sub.wait_subscribed(broker.frontend, 20) and pub.wait_for_subscriber("camera.frame", 20)
    image = _image()
    for i in range(3):
        pub.publish("camera.frame", {"image": image, "frame_id": i})
    for i in range(3):
        msg = sub.recv(WAIT_MS)
        assert msg.body["frame_id"] == i
        np.testing.assert_array_equal(msg.body["image"], image)
    assert pub.shm_unavailable and "missing" in pub.shm_unavailable
    assert capsys.readouterr().out.count("shm_unavailable_inline") <= 1
    pub.close(), sub.close()


def test_the_publisher_removes_its_segment_when_closed(broker):
    pub, sub = camera_pair(broker, shm=True)
    pub.publish("camera.frame", {"image": _image()})
    assert sub.recv(WAIT_MS) is not None
    assert len(_mine(os.getpid())) == 1
    pub.close(), sub.close()
    assert _mine(os.getpid()) == []


_TORN_WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from bus import shm
    ring = shm.ShmRing(f"sensorium-{os.getpid()}-dead-0", 2, 1 << 20)
    ring.put(np.full(1 << 20, 1, np.uint8))
    slot, gen = ring.write_torn(np.full(1 << 20, 2, np.uint8))
    print(ring.name, slot, gen, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write: no close, no unlink
""")


def test_a_writer_killed_mid_write_leaves_a_slot_readers_detect_and_the_sweep_removes_its_segment():
    proc = subprocess.run([sys.executable, "-c", _TORN_WRITER], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    name, slot, gen = proc.stdout.split()
    reader = shm.ShmReader()
    with pytest.raises(shm.ShmDropped):
        reader.take(name, int(slot), int(gen), np.dtype("|u1"), [1 << 20])
    reader.close()
    assert name in shm.segments()
    removed = shm.sweep_dead()
    assert name in removed and name not in shm.segments()
    assert all(shm.pid_alive(shm.owner_pid(n)) for n in shm.segments())


def test_the_sweep_leaves_live_writers_alone(ring):
    assert ring.name not in shm.sweep_dead()
    assert ring.name in shm.segments()


def test_views_are_valid_until_the_ring_goes_round_and_an_overrun_view_counts_as_a_drop(broker):
    pub, sub = camera_pair(broker, shm=True, shm_views=True)
    first, second = _image(1), _image(2)
    pub.publish("camera.frame", {"image": first})
    msg = sub.recv(WAIT_MS)
    assert not msg.body["image"].flags.writeable
    np.testing.assert_array_equal(msg.body["image"], first)
    assert sub.still_valid(msg) and sub.stats.received == 1
    for _ in range(pub.shm_slots):  # the ring goes round: the view now shows other bytes
        pub.publish("camera.frame", {"image": second})
    assert not sub.still_valid(msg) and not sub.still_valid(msg)
    assert sub.stats.shm_drops == 1 and sub.stats.received == 0
    pub.close(), sub.close()


def test_one_subscription_can_opt_in_while_the_others_stay_plain(broker):
    pub = Publisher(broker.ctx, broker.frontend, "cam")
    sub = Subscriber(broker.ctx, broker.backend)
    sub.subscribe("camera.frame", shm=True)
    sub.subscribe("camera.info")
    assert sub.wait_subscribed(broker.frontend, 20)
    wait_until(lambda: pub.drain_subscriptions() or {b"camera.info", LOCAL_MARKER + b"camera.frame"}
               <= pub.subscriptions, what="both subscriptions at the publisher")
    image = _image()
    pub.publish("camera.frame", {"image": image})
    pub.publish("camera.info", {"fps": 30})
    got = {m.topic: m for m in (sub.recv(WAIT_MS), sub.recv(WAIT_MS))}
    np.testing.assert_array_equal(got["camera.frame"].body["image"], image)
    assert got["camera.info"].body == {"fps": 30}
    assert len(_mine(os.getpid())) == 1  # the frame went through shared memory
    assert sub.recv(300) is None and sub.stats.received == 2
    pub.close(), sub.close()


# -- the two forms of one message, as a bridge passes others' messages on -------------------------------------


def test_a_plain_message_put_in_the_local_form_and_back_keeps_header_body_and_bytes():
    from bus.envelope import Encoder, decode, decode_parts, local_from_plain, plain_from_local

    ring = shm.ShmRing(f"sensorium-{os.getpid()}-f0-{id(object()) % 10**6}", 4, 1 << 20)

    image, small = _image(3), np.arange(12, dtype="<f4").reshape(3, 4)
    plain = Encoder("cam", host="hb", iid="cam-1").encode("camera.frame", 7, 99, {"image": image, "k": small,
                                                                                  "n": "x"})
    put = lambda view: (ring.name, *ring.put(view))  # noqa: E731
    local = local_from_plain(plain, put, threshold=64 * 1024)
    assert local[0] == LOCAL_MARKER + b"camera.frame" and local[1] == plain[1]
    assert len(local) == 4, "the big array went to the ring, the small one stays an array frame"
    reader = shm.ShmReader()
    try:
        msg = decode_parts(local[0], local[1], local[2], local[3:], shm=reader)
        assert (msg.body["image"] == image).all() and (msg.body["k"] == small).all() and msg.body["n"] == "x"
        back = decode(plain_from_local(local, reader))
        assert back.topic == "camera.frame" and back.header == decode(plain).header
        assert (back.body["image"] == image).all() and (back.body["k"] == small).all()
        for _ in range(ring.slots):  # the ring goes round: the reference is stale now
            ring.put(np.zeros(16, np.uint8))
        with pytest.raises(shm.ShmDropped):
            plain_from_local(local, reader)
    finally:
        reader.close()
        ring.close()


def test_a_small_message_changes_only_its_topic_frame_between_the_forms():
    from bus.envelope import Encoder, local_from_plain, plain_from_local

    plain = Encoder("imu", host="hb").encode("sensor.imu", 1, 2, {"ax": 0.5})
    local = local_from_plain(plain, lambda view: None, threshold=0)
    assert local == [LOCAL_MARKER + plain[0], plain[1], plain[2]]
    assert plain_from_local(local, shm.ShmReader()) == plain


def test_bad_messages_are_refused_by_both_conversions():
    from bus.envelope import Encoder, EnvelopeError, local_from_plain, plain_from_local

    plain = Encoder("cam", host="hb").encode("camera.frame", 0, 0, {"image": _image()})
    with pytest.raises(EnvelopeError, match="not referenced"):
        local_from_plain([*plain, b"extra"], lambda view: None, threshold=0)
    with pytest.raises(EnvelopeError, match="expected at least 3 frames"):
        plain_from_local(plain[:2], shm.ShmReader())
    ref = msgpack.ExtType(SHM_EXT, msgpack.packb(["|u1", [4], "sensorium-1-ab-0", 99, 0]))
    forged = [LOCAL_MARKER + b"camera.frame", plain[1], msgpack.packb({"image": ref})]
    with pytest.raises((EnvelopeError, shm.ShmDropped)):
        plain_from_local(forged, shm.ShmReader())


def test_header_host_reads_known_and_unknown_headers_alike():
    from bus.envelope import Encoder, EnvelopeError, decode_header, encode_header, header_host

    enc = Encoder("cam", host="hb", iid="cam-2")
    for frames in (enc.encode("a.b", 1, 2, {}), enc.encode("a.b", 1, 2, {}), enc.encode("a.b", 1, 2, {}, corr="c")):
        assert header_host(frames[1]) == decode_header(frames[1]).host == "hb"
    other = decode_header(enc.encode("a.b", 1, 2, {})[1])._replace(host="hc", src="zz")
    assert header_host(encode_header(other)) == "hc"
    with pytest.raises(EnvelopeError):
        header_host(b"\x81\xa1v\x02")


def test_conversions_bound_the_size_and_find_references_in_any_buffer():
    from bus.envelope import Encoder, EnvelopeError, Limits, local_from_plain, plain_from_local, refers_to_shm

    ring = shm.ShmRing(f"sensorium-{os.getpid()}-f1-{id(object()) % 10**6}", 2, 1 << 20)
    reader = shm.ShmReader()
    try:
        plain = Encoder("cam", host="hb").encode("camera.frame", 0, 0, {"image": _image()})
        local = local_from_plain(plain, lambda view: (ring.name, *ring.put(view)), threshold=1024)
        assert len(local) == 3 and refers_to_shm(local[2]) and refers_to_shm(memoryview(local[2]))
        assert not refers_to_shm(plain[2]) and not refers_to_shm(msgpack.packb({"note": "sensorium-1-ab-0"}))
        # Received frames arrive as memoryviews: the reference is found, the array copied out all the same.
        back = plain_from_local([local[0], local[1], memoryview(local[2])], reader)
        assert len(back) == 4 and bytes(back[3]) == _image().tobytes()
        # An array from shared memory passed no broker's limit: the plain form must fit the receiver's.
        with pytest.raises(EnvelopeError, match="bytes with its arrays"):
            plain_from_local(local, reader, Limits(max_message_bytes=100_000))
    finally:
        reader.close()
        ring.close()


def test_forward_refuses_what_is_not_in_the_plain_form(broker):
    from bus.envelope import Encoder, EnvelopeError

    pub = Publisher(zmq.Context.instance(), broker.frontend, "bridge.imports")
    try:
        frames = Encoder("cam", host="hb").encode("camera.frame", 0, 0, {"n": 1})
        ref = msgpack.ExtType(SHM_EXT, msgpack.packb(["|u1", [4], "sensorium-1-ab-0", 0, 2]))
        with pytest.raises(EnvelopeError, match="not in the plain form"):
            pub.forward([LOCAL_MARKER + frames[0], frames[1], frames[2]])
        with pytest.raises(EnvelopeError, match="not in the plain form"):
            pub.forward([frames[0], frames[1], msgpack.packb({"img": ref})])
        pub.forward(frames)  # the plain form passes
        assert pub.sent == 1
    finally:
        pub.close()


# -- the record shortcut: a publisher's records are read by prefix, with the full decoder's outcome ---------


def _take_outcome(data: bytes, reader: shm.ShmReader) -> object:
    from bus.envelope import EnvelopeError, _array_from_shm

    try:
        arr = _array_from_shm(data, reader, "camera.frame")
    except EnvelopeError as exc:
        return ("error", exc.reason)
    except shm.ShmDropped as exc:
        return ("drop", exc.reason)
    return ("ok", arr.dtype.str, arr.shape, arr.tobytes())


def test_a_publishers_record_is_plain_msgpack_and_an_outside_writers_record_reads_the_same():
    from bus import envelope

    ring = shm.ShmRing(f"sensorium-{os.getpid()}-f2-{id(object()) % 10**6}", 2, 4096)
    reader = shm.ShmReader()
    try:
        data = np.arange(600, dtype="<i2").reshape(20, 30)
        slot, gen = ring.put(data.reshape(-1).view(np.uint8))
        fixed = envelope.shm_record(data, ring.name, slot, gen)
        assert msgpack.unpackb(fixed) == ["<i2", [20, 30], ring.name, slot, gen]
        minimal = msgpack.packb(["<i2", [20, 30], ring.name, slot, gen])  # as an outside tool writes it
        assert minimal != fixed
        envelope._SHM_PREFIXES.clear()
        assert _take_outcome(minimal, reader) == _take_outcome(fixed, reader) == ("ok", "<i2", (20, 30),
                                                                                    data.tobytes())
        assert fixed[:-14] in envelope._SHM_PREFIXES and len(envelope._SHM_PREFIXES) == 1
        for _ in range(ring.slots):  # the shortcut still checks the generation
            ring.put(np.zeros(1200, np.uint8))
        assert _take_outcome(fixed, reader)[0] == "drop"
    finally:
        reader.close()
        ring.close()


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from(["|u1", "<i2", "<f4", ">u4"]), shape=st.lists(st.integers(0, 12), min_size=0, max_size=3),
       damage=st.booleans(), data=st.data())
def test_the_record_shortcut_reads_every_record_as_the_full_decoder_does(dtype, shape, damage, data):
    """A record whose prefix is known takes a shortcut; good or damaged, it must come out exactly as the
    full decoder says (the shortcut is a cache, never a second opinion)."""
    from bus import envelope

    ring = shm.ShmRing(f"sensorium-{os.getpid()}-f3-{id(object()) % 10**6}", 2, 8192)
    reader = shm.ShmReader()
    try:
        arr = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
        slot, gen = ring.put(arr.reshape(-1).view(np.uint8))
        record = bytearray(envelope.shm_record(arr, ring.name, slot, gen))
        assert _take_outcome(bytes(record), reader)[0] == "ok"  # its prefix is now known
        assert bytes(record[:-14]) in envelope._SHM_PREFIXES
        if damage:  # the position drawn apart from the record's length, which the segment's name varies
            record[data.draw(st.integers(0, 1 << 16)) % len(record)] = data.draw(st.integers(0, 255))
        with_shortcut = _take_outcome(bytes(record), reader)
        envelope._SHM_PREFIXES.clear()
        assert _take_outcome(bytes(record), reader) == with_shortcut
    finally:
        reader.close()
        ring.close()
