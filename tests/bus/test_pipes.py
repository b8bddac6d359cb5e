"""Pipe links (bus/pipes.py, docs/wire.md section 15): real publishers writing into real FIFOs of real
subscribers, beside a real broker; a real reader process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import given, settings, strategies as st

from bus import direct, pipes
from bus.envelope import refers_to_shm
from bus.pubsub import Publisher, Subscriber
from tests.support import wait_until

WAIT_MS = 20_000
REPO = Path(__file__).resolve().parents[2]


def _frame(value: int) -> np.ndarray:
    return np.full((240, 320, 3), value, dtype=np.uint8)  # 230,400 bytes: above the shared-memory threshold


def _linked(pub: Publisher, sub: Subscriber) -> None:
    """Wait until the publisher holds the subscriber's subscriptions (its own marker topic comes last)."""
    marker = f"sync.{uuid.uuid4().hex[:12]}"
    sub.subscribe(marker)

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


def test_a_message_too_big_for_a_record_comes_over_the_link_and_its_topic_stays_there_in_order(ipc_dir):
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "talker", direct_dir=folder)
    sub = Subscriber(ctx, None, ["speech.text"], direct_dir=folder, pipe=True)
    _linked(pub, sub)
    bodies = [{"i": 0}, {"i": 1}, {"i": 2, "text": "x" * 10_000}, {"i": 3}, {"i": 4}]
    for body in bodies:
        pub.publish("speech.text", body)
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
    ctx.term()


def test_a_full_pipe_drops_for_its_reader_who_counts_each_drop_as_a_gap(ipc_dir):
    ctx = zmq.Context()
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
    ctx.term()


_KILLED_READER = """
import sys, zmq
from pathlib import Path
from bus.pubsub import Subscriber
sub = Subscriber(zmq.Context(), None, ["cam.x", "sync.killed"], direct_dir=Path(sys.argv[1]) / "d", pipe=True)
print(sub._pipe.name, flush=True)
while True:
    sub.recv(100)
"""


def test_a_killed_reader_leaves_a_pipe_the_publisher_gives_up_and_the_sweep_removes(ipc_dir):
    folder = ipc_dir / "d"
    ctx = zmq.Context()
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "cam", direct_dir=folder)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_READER, str(ipc_dir)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        wait_until(lambda: pub.drain_subscriptions() or pub.has_subscriber("sync.killed"), what="the reader")
        pub.publish("cam.x", {"frame": _frame(1)})
        assert pub.pipes.written == 1 and pub.pipes.pipes[name].fd >= 0
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    pub.publish("cam.x", {"frame": _frame(2)})  # nobody reads the pipe now: EPIPE, given up
    assert name not in pub.pipes.pipes or pub.pipes.pipes[name].given_up
    wait_until(lambda: pub.drain_subscriptions() or name not in pub.pipes.pipes,
               what="the unsubscription of the killed reader's link")
    assert name in os.listdir(folder)  # nobody removed it
    assert direct.sweep_dead(folder) == [name] and name not in os.listdir(folder)
    pub.close()
    ctx.term()


def test_bytes_in_a_pipe_that_are_no_record_are_counted_and_the_next_records_come(ipc_dir):
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "imu", direct_dir=folder)
    sub = Subscriber(ctx, None, ["imu.raw"], direct_dir=folder, pipe=True)
    _linked(pub, sub)
    fd = os.open(folder / sub._pipe.name, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"\xff" * 20)  # a length of 4 GiB
    os.close(fd)
    assert sub.recv(300) is None and sub.stats.malformed == 1
    pub.publish("imu.raw", {"i": 0})
    assert sub.recv(WAIT_MS).body["i"] == 0 and sub.stats.malformed == 1
    sub.close()
    pub.close()
    ctx.term()


def test_a_pipe_is_for_a_direct_subscriber_and_a_folder_too_long_leaves_the_link(broker, tmp_path):
    with pytest.raises(ValueError, match="direct subscriber"):
        Subscriber(broker.ctx, broker.backend, ["x.y"], pipe=True)
    deep = tmp_path / ("p" * 90)
    deep.mkdir()
    sub = Subscriber(broker.ctx, None, ["x.y"], direct_dir=deep, pipe=True)
    assert sub.pipe_unavailable and "100 bytes" in sub.pipe_unavailable and sub.recv(0) is None
    sub.close()


def test_a_pipe_subscription_names_only_a_pipe_of_the_folder():
    assert pipes.parse_subscription(b"@p/12-0.pipe/camera.") == ("12-0.pipe", b"camera.")
    for bad in (b"@p/../../etc/passwd/x", b"@p/12-0.pub/x", b"@p/12-0.pipe", b"@shm/x", b"@p/\xff/x"):
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
