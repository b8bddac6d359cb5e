"""Pipe links (bus/pipes.py, docs/wire.md section 15): real publishers writing into real FIFOs of real
subscribers, beside a real broker; a real reader process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import given, settings, strategies as st

from bus import direct, pipes
from bus.batched import batch_frames, decode_batch
from bus.envelope import Header, encode, refers_to_shm
from bus.pubsub import Publisher, Subscriber
from tests.support import wait_until

WAIT_MS = 20_000
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ctx():
    """A context whose sockets all go at teardown, also when a test failed before closing its own."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def _frame(value: int) -> np.ndarray:
    return np.full((240, 320, 3), value, dtype=np.uint8)  # 230,400 bytes: above the shared-memory threshold


def _recv_n(sub: Subscriber, n: int) -> list:
    """Up to ``n`` messages, stopping at the first wait that brings none (a failing test fails fast)."""
    out = []
    while len(out) < n:
        msg = sub.recv(WAIT_MS)
        if msg is None:
            break
        out.append(msg)
    return out


def _linked(pub: Publisher, sub: Subscriber) -> None:
    """Wait until the publisher holds the subscriber's subscriptions (its own marker topic comes last)."""
    marker = f"sync.{uuid.uuid4().hex[:12]}"
    sub.subscribe(marker, shm=False)  # the plain form: a pipe's own subscriptions stay the test's

    def seen() -> bool:
        sub.recv(10)
        pub.drain_subscriptions()
        return pub.has_subscriber(marker)
    wait_until(seen, what=f"the subscriber's {marker} at the publisher")


def test_frames_come_through_the_pipe_once_beside_a_direct_and_a_broker_subscriber(broker, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(broker.ctx, broker.frontend, "cam", direct_dir=folder)
    plain = Subscriber(broker.ctx, broker.backend, ["camera.frame"])
    linked = Subscriber(broker.ctx, None, ["camera.frame"], direct_dir=folder, shm_views=True)
    piped = Subscriber(broker.ctx, None, ["camera.frame"], direct_dir=folder, shm_views=True, pipe=True)
    assert piped.pipe_unavailable is None and (folder / piped._pipe.name).exists()
    assert plain.wait_subscribed(broker.frontend, 20)
    _linked(pub, linked)
    _linked(pub, piped)
    frames = [_frame(i) for i in range(5)]
    for i, frame in enumerate(frames):
        pub.publish("camera.frame", {"frame": frame, "i": i})
    for sub in (plain, linked, piped):
        got = [sub.recv(WAIT_MS) for _ in frames]
        assert [m.body["i"] for m in got] == list(range(5))
        for m, frame in zip(got, frames):
            np.testing.assert_array_equal(m.body["frame"], frame)
        assert all(sub.still_valid(m) for m in got)
        assert sub.recv(300) is None, "a message arrived twice"
        assert (sub.stats.received, sub.stats.gaps, sub.stats.malformed) == (5, 0, 0)
    assert piped.stats.piped == 5 and linked.stats.piped == 0
    assert (pub.pipes.written, pub.pipes.drops, pub.pipes.on_socket) == (5, 0, 0)
    assert pub.loans_published == 0 and pub.topic_counts()["camera.frame"]["out"] == 5
    for s in (plain, linked, piped):
        s.close()
    assert not (folder / piped._pipe.name).exists()
    pub.close()


def test_a_message_too_big_for_a_record_comes_over_the_link_and_its_topic_stays_there_in_order(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "talker", direct_dir=folder)
    sub = Subscriber(ctx, None, ["speech.text"], direct_dir=folder, pipe=True)
    _linked(pub, sub)
    bodies = [{"i": 0}, {"i": 1}, {"i": 2, "text": "x" * 10_000}, {"i": 3}, {"i": 4}]
    for body in bodies:
        pub.publish("speech.text", body)
    wait_until(lambda: sub.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN, what="the big message on the socket")
    sub.discover()  # the socket is looked at first now: the pipe must still be read before it
    got = [sub.recv(WAIT_MS) for _ in bodies]
    assert [m.body["i"] for m in got] == [0, 1, 2, 3, 4] and got[2].body["text"] == "x" * 10_000
    assert (sub.stats.received, sub.stats.gaps, sub.stats.piped) == (5, 0, 2)
    assert (pub.pipes.written, pub.pipes.on_socket) == (2, 3)
    sub.keep_frames = True  # a recorder behind a pipe keeps bytes too
    pub.publish("speech.text", {"i": 5, "frame": _frame(5)})
    msg = sub.recv(WAIT_MS)
    assert msg.body["i"] == 5 and not refers_to_shm(msg.frames[2])
    np.testing.assert_array_equal(msg.body["frame"], _frame(5))
    sub.close()
    pub.close()


def test_a_full_pipe_drops_for_its_reader_who_counts_each_drop_as_a_gap(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "imu", direct_dir=folder)
    sub = Subscriber(ctx, None, ["imu.raw"], direct_dir=folder, pipe=True)
    _linked(pub, sub)
    sent = 0
    while pub.pipes.drops < 10 and sent < 500_000:  # nobody reads: the pipe (1 MiB or 64 KiB) fills
        pub.publish("imu.raw", {"ax": 0.1, "i": sent})
        sent += 1
    assert pub.pipes.drops == 10, f"no drop after {sent} messages"
    first = sub.recv(WAIT_MS)  # reading takes up to 64 KiB out of the pipe: room for the last message
    assert first.body["i"] == 0
    pub.publish("imu.raw", {"ax": 0.1, "i": sent})
    sent += 1
    last = None
    while sub.stats.received + sub.stats.gaps < sent:
        msg = sub.recv(WAIT_MS)
        assert msg is not None, f"{sub.stats} of {sent}"
        last = msg
    assert last.body["i"] == sent - 1
    assert sub.stats.gaps == pub.pipes.drops and sub.stats.received == pub.pipes.written
    assert sub.stats.malformed == 0 and sub.stats.piped == sub.stats.received
    sub.close()
    pub.close()


_KILLED_READER = """
import sys, zmq
from pathlib import Path
from bus.pubsub import Subscriber
sub = Subscriber(zmq.Context(), None, ["cam.x", "sync.killed"], direct_dir=Path(sys.argv[1]) / "d", pipe=True)
print(sub._pipe.name, flush=True)
while True:
    sub.recv(100)
"""


def test_a_killed_reader_leaves_a_pipe_the_publisher_gives_up_and_the_sweep_removes(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "cam", direct_dir=folder)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_READER, str(ipc_dir)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        wait_until(lambda: pub.drain_subscriptions() or pub.has_subscriber("sync.killed"), what="the reader")
        pub.publish("cam.x", {"frame": _frame(1)})
        assert pub.pipes.written == 1 and pub.pipes.pipes[name].fd >= 0 and pub.pipes.on_socket == 0
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    pub.publish("cam.x", {"frame": _frame(2)})  # nobody reads the pipe now: EPIPE, given up, over the link
    assert "write failed" in pub.pipes.pipes[name].given_up and pub.pipes.on_socket == 1
    wait_until(lambda: pub.drain_subscriptions() or name not in pub.pipes.pipes,
               what="the unsubscription of the killed reader's link")
    assert name in os.listdir(folder)  # nobody removed it
    assert direct.sweep_dead(folder) == [name] and name not in os.listdir(folder)
    pub.close()


def test_bytes_in_a_pipe_that_are_no_record_are_counted_and_the_next_records_come(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "imu", direct_dir=folder)
    sub = Subscriber(ctx, None, ["imu.raw"], direct_dir=folder, pipe=True)
    _linked(pub, sub)
    pub.publish("imu.raw", {"i": 0})
    fd = os.open(folder / sub._pipe.name, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"\xff" * 20)  # a length of 4 GiB, after a good record
    os.close(fd)
    assert sub.recv(WAIT_MS).body["i"] == 0  # the record read with the bad bytes, before them, is kept
    assert sub.recv(300) is None and sub.stats.malformed == 1
    pub.publish("imu.raw", {"i": 1})
    assert sub.recv(WAIT_MS).body["i"] == 1 and sub.stats.malformed == 1
    sub.close()
    pub.close()


def test_a_pipe_is_for_a_direct_subscriber_and_a_folder_too_long_leaves_the_link(broker, tmp_path):
    with pytest.raises(ValueError, match="direct subscriber"):
        Subscriber(broker.ctx, broker.backend, ["x.y"], pipe=True)
    with pytest.raises(ValueError):  # a bad topic: no FIFO stays behind
        Subscriber(broker.ctx, None, ["bad topic!"], direct_dir=tmp_path / "d", pipe=True)
    assert not any(n.endswith(".pipe") for n in os.listdir(tmp_path / "d"))
    deep = tmp_path / ("p" * 90)
    deep.mkdir()
    sub = Subscriber(broker.ctx, None, ["x.y"], direct_dir=deep, pipe=True)
    assert sub.pipe_unavailable and "100 bytes" in sub.pipe_unavailable and sub.recv(0) is None
    sub.close()


def test_a_pipe_subscription_names_only_a_pipe_of_the_folder():
    name = "12-0-0123456789abcdef.pipe"
    assert pipes.parse_subscription(f"@p/{name}/camera.".encode()) == (name, b"camera.")
    for bad in (b"@p/../../etc/passwd/x", b"@p/12-0.pub/x", b"@p/12-0.pipe/x", f"@p/{name}".encode(), b"@shm/x",
                b"@p/\xff/x"):
        assert pipes.parse_subscription(bad) is None, bad


_TOPICS = st.binary(min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_TOPICS, st.binary(max_size=60), st.binary(max_size=300)), min_size=1, max_size=8),
       st.integers(0, 1 << 16))
def test_records_split_anywhere_by_a_read_decode_to_the_frames_written(frames, cut):
    data = b"".join(pipes.encode_record(f) for f in frames)
    cut %= len(data) + 1
    first, rest = pipes.decode_records(data[:cut])
    second, tail = pipes.decode_records(rest + data[cut:])
    assert first + second == frames and tail == b""


def test_a_record_is_refused_when_it_would_not_be_one_write_and_a_bad_length_raises():
    assert pipes.encode_record([b"@shm/t", b"h", b"b" * 4000]) is not None
    assert pipes.encode_record([b"@shm/t", b"h", b"b" * 4096]) is None
    assert pipes.encode_record([b"@shm/t", b"h", b"b", b"array"]) is None
    with pytest.raises(pipes.RecordError):
        pipes.decode_records(pipes.RECORD_HEAD.pack(3, 1, 1) + b"abc")


def test_a_message_over_the_link_wakes_a_reader_waiting_on_its_pipe(ctx, ipc_dir, monkeypatch):
    monkeypatch.setattr(direct, "LIST_EVERY_NS", 10**12)  # no listing of the folder comes to the rescue
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "ctl", direct_dir=folder)
    sub = Subscriber(ctx, None, ["cam.x"], direct_dir=folder, pipe=True)
    sub.subscribe("cmd.stop", shm=False)  # the plain form: over the link
    _linked(pub, sub)
    assert sub.recv(500) is None  # the socket drained: the reader now sleeps on the pipe and the socket's signal
    pub.publish("cmd.stop", {"now": True})
    msg = sub.recv(WAIT_MS)
    assert msg is not None and msg.topic == "cmd.stop" and sub.stats.piped == 0
    pub.publish("cam.x", {"frame": _frame(3)})
    assert sub.recv(WAIT_MS).topic == "cam.x" and sub.stats.piped == 1
    sub.close()
    pub.close()


def test_recv_nowait_reads_the_pipe_before_the_socket(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "talker", direct_dir=folder)
    sub = Subscriber(ctx, None, ["speech.text"], direct_dir=folder, pipe=True)
    _linked(pub, sub)
    pub.publish("speech.text", {"i": 0})
    pub.publish("speech.text", {"i": 1, "text": "x" * 10_000})  # over the link
    wait_until(lambda: sub.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN, what="the big message on the socket")
    assert [sub.recv_nowait().body["i"] for _ in range(2)] == [0, 1]
    with pytest.raises(zmq.Again):
        sub.recv_nowait()
    sub.close()
    pub.close()


def test_a_reader_with_its_own_poll_loop_is_woken_by_the_pipe_and_the_link_and_finds_a_late_publisher(
        ctx, ipc_dir):
    """What an actor's loop does: a zmq.Poller on ``pollables()``, ``recv_nowait`` until Again, ``look()``."""
    folder = ipc_dir / "d"
    sub = Subscriber(ctx, None, ["cam.x", "speech.text"], direct_dir=folder, pipe=True)
    poller = zmq.Poller()
    for item in sub.pollables():
        poller.register(item, zmq.POLLIN)
    assert len(sub.pollables()) == 2 and not sub.waiting()
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "late", direct_dir=folder)  # after the reader was made

    def loop_until(n: int) -> list:
        got: list = []
        end_ns = time.monotonic_ns() + WAIT_MS * 1_000_000
        while time.monotonic_ns() < end_ns:
            poller.poll(0 if sub.pending() else 100)
            sub.look()
            pub.drain_subscriptions()
            while True:
                try:
                    msg = sub.recv_nowait()
                except zmq.Again:
                    break
                if msg is not None:
                    got.append(msg)
            if len(got) >= n:
                return got
        return got

    def linked() -> bool:
        loop_until(0)
        return pub.has_subscriber("cam.x")
    wait_until(linked, what="the late publisher found by look() and the pipe subscription read")
    pub.publish("cam.x", {"i": 0, "frame": _frame(1)})            # through the pipe
    assert sub.pollables()[1] in dict(poller.poll(WAIT_MS))      # its descriptor wakes the poll
    pub.publish("speech.text", {"i": 1, "text": "x" * 10_000})    # too big for a record: over the link
    pub.publish("cam.x", {"i": 2, "frame": _frame(2)})
    got = loop_until(3)
    assert sorted(m.body["i"] for m in got) == [0, 1, 2] and sub.stats.piped == 2
    assert not sub.waiting()
    pub.publish("cam.x", {"i": 3, "frame": _frame(3)})
    pub.publish("cam.x", {"i": 4, "frame": _frame(4)})
    wait_until(sub.waiting, what="the two records in the pipe")
    assert sub.recv_nowait().body["i"] == 3
    assert sub.waiting() and sub.pending() == 1  # the second record was read with the first
    assert sub.recv_nowait().body["i"] == 4 and not sub.waiting()
    sub.close()
    pub.close()


def test_asking_waiting_does_not_hide_a_message_on_the_link_from_recv(ctx, ipc_dir, monkeypatch):
    """``waiting()`` reads the socket's EVENTS, which takes the signal of the descriptor ``recv`` sleeps on."""
    monkeypatch.setattr(direct, "LIST_EVERY_NS", 10**12)  # no listing of the folder comes to the rescue
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "talker", direct_dir=folder)
    sub = Subscriber(ctx, None, ["speech.text"], direct_dir=folder, pipe=True)
    _linked(pub, sub)
    assert sub.recv(200) is None  # drained: recv now sleeps on the pipe and the socket's descriptor
    pub.publish("speech.text", {"i": 0, "text": "x" * 10_000})  # too big for a record: over the link
    wait_until(sub.waiting, what="the message on the link")
    msg = sub.recv(WAIT_MS)
    assert msg is not None and msg.body["i"] == 0
    sub.close()
    pub.close()


def test_a_topic_that_went_over_the_link_stays_there_across_an_unsubscribe(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "talker", direct_dir=folder)
    sub = Subscriber(ctx, None, ["speech.text"], direct_dir=folder, pipe=True)
    _linked(pub, sub)
    pub.publish("speech.text", {"i": 0, "text": "x" * 10_000})  # over the link, still waiting to be read
    sub.unsubscribe("speech.text")
    sub.subscribe("speech.text")
    marker = f"sync.{uuid.uuid4().hex[:12]}"  # the link is up: no receive needed (it would take message 0)
    sub.subscribe(marker, shm=False)
    wait_until(lambda: pub.drain_subscriptions() or pub.has_subscriber(marker), what="the resubscription")
    pub.publish("speech.text", {"i": 1})
    assert [sub.recv(WAIT_MS).body["i"] for _ in range(2)] == [0, 1]
    assert sub.stats.resets == 0 and sub.stats.piped == 0
    sub.close()
    pub.close()


def test_two_publishers_share_one_pipe_under_a_prefix(ctx, ipc_dir):
    folder = ipc_dir / "d"
    left = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "left", direct_dir=folder)
    right = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "right", direct_dir=folder)
    sub = Subscriber(ctx, None, prefixes=["cam."], direct_dir=folder, pipe=True)
    _linked(left, sub)
    _linked(right, sub)
    for i in range(5):  # fewer frames than ring slots: none is overwritten before the read
        left.publish("cam.left", {"i": i, "frame": _frame(i)})
        right.publish("cam.right", {"i": i})
    got: dict[str, list[int]] = {"cam.left": [], "cam.right": []}
    for _ in range(10):
        msg = sub.recv(WAIT_MS)
        got[msg.topic].append(msg.body["i"])
        if msg.topic == "cam.left":
            assert int(msg.body["frame"][0, 0, 0]) == msg.body["i"]
    assert got == {"cam.left": list(range(5)), "cam.right": list(range(5))}
    assert sub.stats.piped == 10 and (sub.stats.gaps, sub.stats.malformed) == (0, 0)
    for c in (sub, left, right):
        c.close()


def test_a_publisher_does_not_follow_a_symlink_named_as_a_pipe(ctx, ipc_dir, tmp_path):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "cam", direct_dir=folder)
    elsewhere = tmp_path / "elsewhere.fifo"
    os.mkfifo(elsewhere, 0o600)
    held = os.open(elsewhere, os.O_RDWR | os.O_NONBLOCK)
    name = f"{os.getpid()}-99-{'0' * 16}.pipe"
    os.symlink(elsewhere, folder / name)
    spy = ctx.socket(zmq.SUB)  # a peer that names the link in a pipe subscription
    spy.connect(f"ipc://{pub.direct_endpoint}")
    spy.setsockopt(zmq.SUBSCRIBE, f"@p/{name}/cam.x".encode())
    wait_until(lambda: pub.drain_subscriptions() or name in pub.pipes.pipes, what="the pipe subscription")
    pub.publish("cam.x", {"frame": _frame(4)})
    assert "ELOOP" in pub.pipes.pipes[name].given_up and pub.pipes.written == 0
    with pytest.raises(BlockingIOError):
        os.read(held, 4096)  # nothing went through the link
    assert spy.poll(WAIT_MS) and spy.recv_multipart()[0] == f"@p/{name}/cam.x".encode()  # over the link instead
    os.close(held)
    spy.close(0)
    pub.close()


# --------------------------------------------------------------------------- batch pipes (pipe=True, batched=True)


def test_a_gathered_batch_is_split_into_records_that_fit_with_their_seqs_running_on(ctx, ipc_dir):
    folder = ipc_dir / "d"
    # Gathering for up to 10 s: the whole burst is in one or two batches (1,024 messages each at most), far over
    # a record, which the publisher must split.
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "imu", direct_dir=folder, gather_ns=10**10)
    sub = Subscriber(ctx, None, ["imu.raw"], direct_dir=folder, pipe=True, batched=True)
    _linked(pub, sub)
    n = 2_000
    for i in range(n):
        pub.publish("imu.raw", {"ax": 0.5, "i": i})
    pub.flush()
    records, rest = pipes.decode_records(os.read(sub._pipe.fd, 1 << 20))  # the pipe's bytes, read past the reader
    assert rest == b"" and pub.pipes.written == n and pub.pipes.on_socket == 0
    assert all(topic == b"@b/imu.raw" and body == b"" for topic, _, body in records)
    assert 2 < len(records) < n / 20, f"{len(records)} records for {n} messages"
    seqs, bodies = [], []
    for topic, batch, _ in records:
        for msg in decode_batch(topic[len(b"@b/"):], batch, []):
            seqs.append(msg.header.seq)
            bodies.append(msg.body["i"])
    assert seqs == list(range(n)) and bodies == list(range(n))
    sub.close()
    pub.close()


def test_a_batch_pipe_delivers_in_order_beside_the_other_forms_and_a_big_message_moves_its_topic_to_the_link(
        broker, ipc_dir):
    folder = ipc_dir / "d"
    # Gathering for up to 10 s: the big message lies inside a batch, which the split for the pipe cuts around it.
    pub = Publisher(broker.ctx, broker.frontend, "talker", direct_dir=folder, gather_ns=10**10)
    plain = Subscriber(broker.ctx, broker.backend, ["speech.text"])
    linked = Subscriber(broker.ctx, None, ["speech.text"], direct_dir=folder, batched=True)
    piped = Subscriber(broker.ctx, None, ["speech.text"], direct_dir=folder, pipe=True, batched=True)
    assert plain.wait_subscribed(broker.frontend, 20)
    _linked(pub, linked)
    _linked(pub, piped)
    n = 3_000
    bodies = [{"i": i} for i in range(n)]
    bodies[2_000]["text"] = "x" * 10_000  # no record holds it: over the link, and the rest of the topic after it
    for body in bodies:
        pub.publish("speech.text", body)
    pub.flush()
    for sub in (plain, linked, piped):
        got = _recv_n(sub, n)
        assert [m.body["i"] for m in got] == list(range(n))
        assert got[2_000].body["text"] == "x" * 10_000 and got[1].header.seq == 1
        assert sub.recv(300) is None, "a message arrived twice"
        assert (sub.stats.received, sub.stats.gaps, sub.stats.malformed) == (n, 0, 0)
    assert piped.stats.piped == 2_000 and linked.stats.piped == 0
    assert (pub.pipes.written, pub.pipes.on_socket, pub.pipes.drops) == (2_000, 1_000, 0)
    assert pub.topic_counts()["speech.text"]["out"] == n
    for s in (plain, linked, piped):
        s.close()
    pub.close()


def test_a_frame_in_shared_memory_goes_through_a_batch_pipe_as_its_reference(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "cam", direct_dir=folder)
    sub = Subscriber(ctx, None, ["camera.frame"], direct_dir=folder, pipe=True, batched=True, shm_views=True)
    _linked(pub, sub)
    for i in range(3):
        pub.publish("camera.frame", {"frame": _frame(i), "i": i})
    got = _recv_n(sub, 3)
    assert [m.body["i"] for m in got] == [0, 1, 2] and all(sub.still_valid(m) for m in got)
    for i, m in enumerate(got):
        np.testing.assert_array_equal(m.body["frame"], _frame(i))
    assert sub.stats.piped == 3 and pub.pipes.on_socket == 0
    sub.close()
    pub.close()


def test_a_full_batch_pipe_drops_whole_batches_which_its_reader_counts_as_gaps(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "imu", direct_dir=folder)
    sub = Subscriber(ctx, None, ["imu.raw"], direct_dir=folder, pipe=True, batched=True)
    _linked(pub, sub)
    sent = 0
    while pub.pipes.drops == 0 and sent < 2_000_000:  # nobody reads: the pipe fills
        pub.publish("imu.raw", {"ax": 0.1, "i": sent})
        sent += 1
    pub.flush()
    assert pub.pipes.drops > 0, f"no drop after {sent} messages"
    assert sub.recv(WAIT_MS).body["i"] == 0  # reading frees room for the last message
    pub.publish("imu.raw", {"ax": 0.1, "i": sent})
    sent += 1
    pub.flush()
    last = None
    while sub.stats.received + sub.stats.gaps < sent:
        msg = sub.recv(WAIT_MS)
        assert msg is not None, f"{sub.stats} of {sent}, dropped {pub.pipes.drops}"
        last = msg
    assert last.body["i"] == sent - 1
    assert sub.stats.gaps == pub.pipes.drops and sub.stats.received == pub.pipes.written
    assert sub.stats.malformed == 0 and sub.stats.piped == sub.stats.received
    sub.close()
    pub.close()


def test_a_forwarded_message_reaches_a_batch_pipe(ctx, ipc_dir):
    folder = ipc_dir / "d"
    bridge = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "bridge", direct_dir=folder)
    sub = Subscriber(ctx, None, ["remote.imu"], direct_dir=folder, pipe=True, batched=True)
    _linked(bridge, sub)
    for seq in range(3):  # another host's sender, passed on as it came
        bridge.forward(encode("remote.imu", Header(src="far", seq=seq, ts=10 + seq, host="elsewhere"), {"i": seq}))
    got = _recv_n(sub, 3)
    assert [(m.header.src, m.header.host, m.header.seq, m.body["i"]) for m in got] == \
        [("far", "elsewhere", i, i) for i in range(3)]
    assert sub.stats.piped == 3 and bridge.pipes.written == 3
    sub.close()
    bridge.close()


def test_a_batch_pipe_subscription_is_told_apart_from_a_local_one():
    name = "12-0-0123456789abcdef.pipe"
    writers = pipes.PipeWriters(None, "test")
    assert writers.note(f"@p/{name}/@b/camera.".encode(), True)
    assert writers.note(f"@p/{name}/imu.".encode(), True)
    pipe = writers.pipes[name]
    assert (pipe.batch_prefixes, pipe.prefixes) == ({b"camera."}, {b"imu."})
    assert writers.matching_batches(b"camera.left") == (pipe,) and writers.matching(b"camera.left") == ()
    assert writers.matching(b"imu.raw") == (pipe,) and writers.matching_batches(b"imu.raw") == ()
    assert pipe.socket_topic(b"@b/camera.left") == f"@p/{name}/@b/camera.left".encode()
    writers.note(f"@p/{name}/imu.".encode(), False)
    assert name in writers.pipes
    writers.note(f"@p/{name}/@b/camera.".encode(), False)
    assert name not in writers.pipes


def test_a_batch_for_a_pipe_that_went_over_the_link_is_skipped_by_everyone_else(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "talker", direct_dir=folder)
    piped = Subscriber(ctx, None, ["speech.text"], direct_dir=folder, pipe=True, batched=True)
    everything = Subscriber(ctx, None, direct_dir=folder, batched=True)
    everything.subscribe("", exact=False, shm=False)  # every topic frame, the pipe's own over the link included
    _linked(pub, piped)
    _linked(pub, everything)
    bodies = [{"i": 0}, {"i": 1, "text": "x" * 10_000}, {"i": 2}]
    for body in bodies:
        pub.publish("speech.text", body)
    assert [m.body["i"] for m in _recv_n(piped, 3)] == [0, 1, 2]
    assert [m.body["i"] for m in _recv_n(everything, 3)] == [0, 1, 2]
    assert everything.recv(500) is None, "another pipe's batch was delivered"
    assert everything.stats.local_skipped >= 1 and pub.pipes.on_socket == 2
    for c in (piped, everything, pub):
        c.close()


def test_a_publisher_sees_a_subscriber_that_has_only_a_batch_pipe(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "mic", direct_dir=folder)
    sub = Subscriber(ctx, None, ["audio.chunk"], direct_dir=folder, pipe=True, batched=True)
    assert pub.wait_for_subscriber("audio.chunk", WAIT_MS / 1000)
    assert not pub.has_subscriber("audio.other")
    sub.close()
    pub.close()


def test_batches_read_from_a_pipe_after_an_unsubscribe_are_counted_and_not_delivered(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "imu", direct_dir=folder, gather_ns=10**10)
    sub = Subscriber(ctx, None, ["imu.raw"], direct_dir=folder, pipe=True, batched=True)
    _linked(pub, sub)
    for i in range(100):
        pub.publish("imu.raw", {"i": i})
    pub.flush()
    sub.unsubscribe("imu.raw")
    assert sub.recv(500) is None
    assert sub.stats.piped == 100 and sub.stats.received == 0
    sub.close()
    pub.close()


def test_a_batch_record_that_is_no_batch_is_counted_malformed_and_the_next_comes(ctx, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "imu", direct_dir=folder)
    sub = Subscriber(ctx, None, ["imu.raw"], direct_dir=folder, pipe=True, batched=True)
    _linked(pub, sub)
    fd = os.open(folder / sub._pipe.name, os.O_WRONLY | os.O_NONBLOCK)  # another process of this user
    os.write(fd, pipes.encode_record([b"@b/imu.raw", b"\xc1not msgpack", b""]))
    topic_raw, record, _, _ = pub._encoder.record("imu.raw", 1, {"i": 0})
    batch = batch_frames(topic_raw, pub._encoder.batch_head(0), [record])  # a good batch, with a third frame
    os.write(fd, pipes.encode_record([batch[0], batch[1], b"a third frame"]))
    os.close(fd)
    pub.publish("imu.raw", {"i": 7})
    msg = sub.recv(WAIT_MS)
    assert msg is not None and msg.body["i"] == 7
    assert sub.stats.malformed == 2 and sub.stats.received == 1
    sub.close()
    pub.close()


def test_a_topic_subscribed_twice_is_gone_from_the_publisher_after_one_unsubscribe(ctx, ipc_dir):
    """ZeroMQ counts subscriptions: a second ``subscribe`` of the same topic must not need a second
    ``unsubscribe``, or the publisher goes on writing into the pipe of a reader that threw the topic away."""
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "cam", direct_dir=folder)
    sub = Subscriber(ctx, None, direct_dir=folder, pipe=True, shm=True)
    sub.subscribe("test.frame")
    sub.subscribe("test.frame")  # a handler swapped, say
    _linked(pub, sub)
    assert pub.has_subscriber("test.frame")
    sub.unsubscribe("test.frame")

    def gone() -> bool:
        sub.recv(10)
        pub.drain_subscriptions()
        return not pub.has_subscriber("test.frame")
    wait_until(gone, what="the unsubscription at the publisher")
    pub.publish("test.frame", {"frame": _frame(1)})
    assert pub.pipes.written == 0
    sub.close()
    pub.close()
