"""Arrays on loan (``Publisher.loan``, ``ShmRing.loan``): a producer writes a frame straight into a ring
slot and publishes it without a copy. Real segments in /dev/shm, a real broker, real sockets."""

from __future__ import annotations

import os

import msgpack
import numpy as np
import pytest
import zmq

from bus import shm
from bus.envelope import LOCAL_MARKER, SHM_EXT
from bus.pubsub import Publisher, Subscriber
from bus.envelope import decode
from tests.support import camera_pair, raw_sub, wait_until

WAIT_MS = 20_000
SHAPE = (480, 640, 3)


@pytest.fixture
def ring():
    made = shm.ShmRing(f"sensorium-{os.getpid()}-10a-{id(object()) % 10**6}", 3, 8192)
    yield made
    made.close()


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, SHAPE, dtype=np.uint8)


def _ref(frames: list[bytes]) -> list:
    """The shared-memory reference of the local form's ``image`` field: [dtype, shape, segment, slot, gen]."""
    code, ref = msgpack.unpackb(frames[2], ext_hook=lambda c, d: (c, msgpack.unpackb(d)))["image"]
    assert code == SHM_EXT
    return ref


def test_a_slot_on_loan_is_being_written_until_committed_and_put_passes_over_it(ring):
    reader = shm.ShmReader()
    old = ring.put(np.full(100, 1, np.uint8))  # slot 0
    ring.put(np.full(100, 2, np.uint8))  # slot 1
    ring.put(np.full(100, 3, np.uint8))  # slot 2: the ring goes round next
    slot, view = ring.loan(100)
    assert slot == old[0] and view.flags.writeable
    with pytest.raises(shm.ShmDropped):  # a reader holding the slot's older reference drops it
        reader.take(ring.name, *old, np.dtype("|u1"), [100])
    view[:] = 9
    assert ring.put(np.full(100, 4, np.uint8))[0] == 1, "put wrote into the slot on loan"
    gen = ring.commit(slot, 100)
    assert gen % 2 == 0 and gen > old[1]
    np.testing.assert_array_equal(reader.take(ring.name, slot, gen, np.dtype("|u1"), [100]), 9)
    with pytest.raises(ValueError, match="not on loan"):
        ring.commit(slot, 100)
    reader.close()


def test_a_new_loan_gives_the_old_one_back_complete_and_empty(ring):
    reader = shm.ShmReader()
    first, view = ring.loan(64)
    view[:] = 1
    second, _ = ring.loan(64)
    assert second != first and ring.loaned == second
    ring.commit(second, 64)
    ring.put(np.full(64, 5, np.uint8))
    slot, gen = ring.put(np.full(64, 6, np.uint8))  # round again: the slot given back, its seqlock whole
    assert slot == first and gen % 2 == 0
    np.testing.assert_array_equal(reader.take(ring.name, slot, gen, np.dtype("|u1"), [64]), 6)
    reader.close()


def test_a_loan_is_the_shape_and_dtype_asked_for_and_a_wrong_one_lends_nothing(ring):
    slot, floats = ring.loan(64, dtype=np.float32)
    assert floats.dtype == np.float32 and floats.shape == (16,) and floats.nbytes == 64
    ring.commit(slot, 64)
    slot, image = ring.loan(48, (4, 4, 3), np.dtype(np.uint8))
    assert image.shape == (4, 4, 3)
    ring.commit(slot, 48)
    gens = [shm._GEN.unpack_from(ring._mm, shm.HEADER_BYTES + s * ring.stride)[0] for s in range(ring.slots)]
    for nbytes, shape, dtype in ((66, None, np.float32), (64, (-4, -16), np.uint8), (64, (4, 4), np.uint8),
                                 (ring.slot_bytes + 8, None, np.uint8)):
        with pytest.raises(ValueError):
            ring.loan(nbytes, shape, dtype)
        assert ring.loaned is None
    assert [shm._GEN.unpack_from(ring._mm, shm.HEADER_BYTES + s * ring.stride)[0]
            for s in range(ring.slots)] == gens, "a refused loan moved a generation"


def test_a_frame_on_loan_reaches_local_subscribers_by_reference_and_plain_ones_by_copy(broker):
    spy = raw_sub(broker.ctx, broker.backend, LOCAL_MARKER + b"camera.frame")
    plain = Subscriber(broker.ctx, broker.backend, ["camera.frame"])
    local = Subscriber(broker.ctx, broker.backend, ["camera.frame"], shm=True)
    assert plain.wait_subscribed(broker.frontend, 20) and local.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "cam", shm_slots=4)
    wait_until(lambda: pub.drain_subscriptions() or {b"camera.frame", LOCAL_MARKER + b"camera.frame"}
               <= pub.subscriptions, what="both forms subscribed")
    images = [_image(i) for i in range(7)]  # more than the ring's 4 slots
    loaned = []
    for i, image in enumerate(images):
        frame = pub.loan("camera.frame", SHAPE)
        assert not frame.flags.owndata and frame.flags.writeable
        np.copyto(frame, image)
        pub.publish("camera.frame", {"image": frame, "frame_id": i})
        with pytest.raises(ValueError):  # published: the slot is the readers' now
            frame[0, 0, 0] = 0
        loaned.append(frame)
    for i, image in enumerate(images):  # plain: a copy each, whole though the ring went round meanwhile
        msg = plain.recv(WAIT_MS)
        assert msg.body["frame_id"] == i
        np.testing.assert_array_equal(msg.body["image"], image)
    slots = []
    for i in range(len(images)):  # local: a reference to the very slot the producer wrote
        assert spy.poll(WAIT_MS)
        slots.append(_ref(spy.recv_multipart())[3])
    assert slots == [0, 1, 2, 3, 0, 1, 2]
    got = []
    while (msg := local.recv(2000)) is not None:
        got.append(msg)
    assert len(got) + local.stats.shm_drops == len(images) and local.stats.gaps == 0
    assert got, "no frame reached the local subscriber"
    for msg in got:
        np.testing.assert_array_equal(msg.body["image"], images[msg.body["frame_id"]])
    spy.close()
    pub.close(), plain.close(), local.close()


def test_a_loan_without_local_subscribers_is_an_ordinary_array(broker):
    pub, sub = camera_pair(broker)  # plain only
    frame = pub.loan("camera.frame", SHAPE)
    assert frame.flags.owndata and frame.flags.writeable
    np.copyto(frame, _image(1))
    pub.publish("camera.frame", {"image": frame})
    np.testing.assert_array_equal(sub.recv(WAIT_MS).body["image"], _image(1))
    assert not [n for n in shm.segments() if pub.iid.partition("-")[2].lower() in n], "a segment was made"
    small = pub.loan("camera.frame", (8, 8))  # under the threshold: ordinary whoever listens
    assert small.flags.owndata
    pub.close(), sub.close()


def test_a_loan_not_published_is_given_back_and_the_next_one_is_delivered(broker):
    pub, sub = camera_pair(broker, shm=True)
    abandoned = pub.loan("camera.frame", SHAPE)
    abandoned[:] = 1
    frame = pub.loan("camera.frame", SHAPE)  # the first goes back unpublished
    assert not abandoned.flags.writeable
    np.copyto(frame, _image(2))
    pub.publish("camera.frame", {"image": frame, "frame_id": 2})
    msg = sub.recv(WAIT_MS)
    assert msg.body["frame_id"] == 2
    np.testing.assert_array_equal(msg.body["image"], _image(2))
    # A publish of the topic that does not carry the loan gives it back too; what it sends is whole.
    pub.loan("camera.frame", SHAPE)
    pub.publish("camera.frame", {"image": _image(3), "frame_id": 3})
    msg = sub.recv(WAIT_MS)
    np.testing.assert_array_equal(msg.body["image"], _image(3))
    assert (sub.stats.shm_drops, sub.stats.gaps, sub.stats.malformed) == (0, 0, 0)
    pub.close(), sub.close()


def test_a_loan_bigger_than_the_slots_makes_a_bigger_ring(broker):
    pub, sub = camera_pair(broker, shm=True)
    pub.publish("camera.frame", {"image": np.ones((300, 400), np.uint8)})  # a ring of 120,000-byte slots
    assert sub.recv(WAIT_MS).body["image"].shape == (300, 400)
    frame = pub.loan("camera.frame", SHAPE)
    assert not frame.flags.owndata, "not a slot of the bigger ring"
    np.copyto(frame, _image(4))
    pub.publish("camera.frame", {"image": frame})
    np.testing.assert_array_equal(sub.recv(WAIT_MS).body["image"], _image(4))
    assert sub.stats.shm_drops == 0
    pub.close(), sub.close()


def test_a_loan_reads_new_subscriptions_itself(broker):
    """A producer that loans reads the subscriptions there, before its frame exists (not after the send)."""
    plain = Subscriber(broker.ctx, broker.backend, ["camera.frame"])
    assert plain.wait_subscribed(broker.frontend, 20)
    pub = Publisher(broker.ctx, broker.frontend, "cam", shm_slots=4)
    assert pub.wait_for_subscriber("camera.frame", 20)
    pub.publish("camera.frame", {"frame_id": 0})  # what the publisher knows now: plain readers only
    assert pub.loan("camera.frame", SHAPE).flags.owndata
    local = Subscriber(broker.ctx, broker.backend, ["camera.frame"], shm=True)
    assert local.wait_subscribed(broker.frontend, 20)
    wait_until(lambda: not pub.loan("camera.frame", SHAPE).flags.owndata,
               what="a slot on loan once the local subscriber is known, with no publish in between")
    frame = pub.loan("camera.frame", SHAPE)
    np.copyto(frame, _image(5))
    pub.publish("camera.frame", {"image": frame, "frame_id": 1})
    for sub in (plain, local):
        msg = sub.recv(WAIT_MS)
        while msg is not None and msg.body["frame_id"] != 1:
            msg = sub.recv(WAIT_MS)
        assert msg is not None
        np.testing.assert_array_equal(msg.body["image"], _image(5))
    pub.close(), plain.close(), local.close()


def test_a_frame_that_was_on_loan_published_again_reaches_plain_readers_whole(ipc_dir):
    """The plain form of a frame that lies in a lent ring goes to ZeroMQ as a copy: queued behind a reader
    that does not read, a view would be sent after the ring came round."""
    ctx = zmq.Context()
    stalled = ctx.socket(zmq.XSUB)  # a broker that does not read yet: frames wait in the publisher's queue
    stalled.bind(f"ipc://{ipc_dir}/f.sock")
    pub = Publisher(ctx, f"ipc://{ipc_dir}/f.sock", "cam", shm_slots=4)

    def subscribed() -> bool:  # sent again until the connection is up: an XSUB drops what it sends before
        stalled.send(b"\x01camera.frame")
        stalled.send(b"\x01" + LOCAL_MARKER + b"camera.frame")
        pub.drain_subscriptions()
        return len(pub.subscriptions) == 2
    wait_until(subscribed, what="both forms subscribed")
    frame = pub.loan("camera.frame", SHAPE)
    frame[:] = 1
    pub.publish("camera.frame", {"image": frame, "frame_id": 0})
    pub.publish("camera.frame", {"image": frame, "frame_id": 1})  # no longer on loan: an ordinary publish
    for i in range(2, 8):  # the ring goes round
        other = pub.loan("camera.frame", SHAPE)
        other[:] = 100 + i
        pub.publish("camera.frame", {"image": other, "frame_id": i})
    plain = {}
    while stalled.poll(2000):
        frames = stalled.recv_multipart()
        if not frames[0].startswith(b"@"):
            msg = decode(frames)
            plain[msg.body["frame_id"]] = msg.body["image"]
    assert sorted(plain) == list(range(8))
    for i, image in plain.items():
        assert (image == (1 if i < 2 else 100 + i)).all(), f"plain frame {i} holds other bytes"
    pub.close()
    stalled.close()
    ctx.term()


def test_a_loan_being_filled_survives_a_bigger_ring_and_a_closed_publisher_lends_nothing(broker):
    pub, sub = camera_pair(broker, shm=True)
    frame = pub.loan("camera.frame", SHAPE)
    pub.publish("camera.big", {"image": np.zeros((1200, 1000, 3), np.uint8)})  # another topic: a bigger ring
    np.copyto(frame, _image(6))  # still the producer's to write
    pub.publish("camera.frame", {"image": frame, "frame_id": 6})
    msg = sub.recv(WAIT_MS)
    assert msg.body["frame_id"] == 6
    np.testing.assert_array_equal(msg.body["image"], _image(6))
    with pytest.raises(TypeError, match="cannot cross the bus"):
        pub.loan("camera.frame", (100, 100), object)
    pub.close()
    before = set(shm.segments())
    with pytest.raises(zmq.ZMQError, match="closed"):
        pub.loan("camera.frame", SHAPE)
    assert set(shm.segments()) == before, "a closed publisher made a segment"
    sub.close()
