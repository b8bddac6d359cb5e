"""Direct links between processes of one host (bus/direct.py, docs/wire.md section 14): real publishers,
real subscribers, a real broker beside them, real processes killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import uuid
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from bus import direct
from bus.pubsub import Publisher, Subscriber
from tests.support import wait_until

WAIT_MS = 20_000
REPO = Path(__file__).resolve().parents[2]


def _image(value: int = 7) -> np.ndarray:
    return np.full((120, 160, 3), value, dtype=np.uint8)


def _linked(pub: Publisher, sub: Subscriber) -> None:
    """Wait until the publisher holds the direct subscriber's subscriptions: the subscriber takes a topic of
    its own last (a link carries subscriptions in order) and finds the publisher while it reads."""
    marker = f"sync.{uuid.uuid4().hex[:12]}"
    sub.subscribe(marker)

    def seen() -> bool:
        sub.recv(10)
        pub.drain_subscriptions()
        return pub.has_subscriber(marker)
    wait_until(seen, what=f"the direct subscriber's {marker} at the publisher")


def test_a_direct_subscriber_gets_every_message_once_beside_a_broker_subscriber(broker, ipc_dir):
    folder = ipc_dir / "d"
    pub = Publisher(broker.ctx, broker.frontend, "cam", direct_dir=folder)
    assert pub.direct_endpoint is not None and pub.direct_endpoint.parent == folder
    plain = Subscriber(broker.ctx, broker.backend, ["camera.frame"])
    local = Subscriber(broker.ctx, broker.backend, ["camera.frame"], shm=True)  # through the broker
    mine = Subscriber(broker.ctx, None, ["camera.frame"], direct_dir=folder, shm_views=True)
    assert plain.wait_subscribed(broker.frontend, 20) and local.wait_subscribed(broker.frontend, 20)
    _linked(pub, mine)
    wait_until(lambda: pub.drain_subscriptions() or len(pub.subscriptions) >= 2, what="broker subscriptions")
    images = [_image(i) for i in range(5)]
    for i, image in enumerate(images):
        pub.publish("camera.frame", {"image": image, "i": i})
    for sub in (plain, local, mine):
        got = [sub.recv(WAIT_MS) for _ in images]
        assert [m.body["i"] for m in got] == list(range(5))
        for m, image in zip(got, images):
            np.testing.assert_array_equal(m.body["image"], image)
        assert sub.recv(300) is None, "a message arrived twice"
        assert (sub.stats.received, sub.stats.gaps, sub.stats.malformed) == (5, 0, 0)
    assert not mine.recv(0) and mine.still_valid(got[-1])
    assert not mine.stats.local_skipped
    for s in (plain, local, mine):
        s.close()
    pub.close()


def test_small_messages_go_direct_in_the_batched_form_and_a_late_publisher_is_found(ipc_dir):
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    sub = Subscriber(ctx, None, ["imu.raw"], direct_dir=folder, batched=True)
    assert sub.recv(50) is None and sub.direct.connected == {}
    # No broker at all: the publisher's broker connection waits for one, the direct link works meanwhile.
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "imu", direct_dir=folder)
    _linked(pub, sub)
    for i in range(2_000):
        pub.publish("imu.raw", {"i": i})
    pub.flush()
    got = [sub.recv(WAIT_MS) for _ in range(2_000)]
    assert [m.body["i"] for m in got] == list(range(2_000))
    assert {m.header.v for m in got} == {2}  # batched
    assert (sub.stats.gaps, sub.stats.malformed) == (0, 0)
    pub.close(), sub.close()
    ctx.term()


def test_the_endpoint_goes_when_the_publisher_closes_and_the_subscriber_lets_go(ipc_dir):
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "cam", direct_dir=folder)
    name = pub.direct_endpoint.name
    assert direct.owner_pid(name) == os.getpid() and name in direct.endpoints(folder)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    sub = Subscriber(ctx, None, ["t"], direct_dir=folder)
    assert name in sub.direct.connected
    pub.close()
    assert name not in direct.endpoints(folder)
    wait_until(lambda: sub.discover() and not sub.direct.connected, what="the link let go (after a second)")
    sub.close()
    ctx.term()


def test_a_subscriber_is_made_for_the_broker_or_for_direct_links_not_both(ipc_dir):
    ctx = zmq.Context()
    with pytest.raises(ValueError, match="one of the two"):
        Subscriber(ctx, f"ipc://{ipc_dir}/b", direct_dir=ipc_dir / "d")
    with pytest.raises(ValueError, match="one of the two"):
        Subscriber(ctx, None)
    linked = Subscriber(ctx, None, ["t"], direct_dir=ipc_dir / "d")
    with pytest.raises(ValueError, match="not connected to a broker"):
        linked.wait_subscribed(f"ipc://{ipc_dir}/f", 1)
    linked.close()
    ctx.term()


def test_a_folder_too_long_for_a_socket_leaves_the_publisher_on_the_broker_and_says_why(broker, tmp_path):
    folder = tmp_path / ("x" * 90)
    pub = Publisher(broker.ctx, broker.frontend, "cam", direct_dir=folder)
    assert pub.direct_endpoint is None and "over 100 bytes" in pub.direct_unavailable and str(folder) in \
        pub.direct_unavailable
    sub = Subscriber(broker.ctx, broker.backend, ["cam.x"])
    assert sub.wait_subscribed(broker.frontend, 20)
    pub.publish("cam.x", {"i": 1})
    assert sub.recv(WAIT_MS).body == {"i": 1}
    pub.close(), sub.close()


def test_folder_for_is_beside_the_frontend_socket_and_none_without_an_absolute_path():
    assert direct.folder_for("ipc:///run/user/1/sensorium/frontend") == Path("/run/user/1/sensorium/frontend.d")
    for elsewhere in ("tcp://127.0.0.1:5555", "ipc://@abstract", "ipc://run/frontend"):
        assert direct.folder_for(elsewhere) is None


_KILLED_PUBLISHER = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np, zmq
    from bus.pubsub import Publisher
    folder = sys.argv[1]
    pub = Publisher(zmq.Context(), "ipc://" + folder + "/nobroker", "victim", direct_dir=folder + "/d")
    print(pub.direct_endpoint.name, flush=True)
    end = time.monotonic() + 30
    while not pub.has_subscriber("cam.x") and time.monotonic() < end:
        pub.drain_subscriptions()
        time.sleep(0.01)
    for i in range(5):
        pub.publish("cam.x", {"image": np.full(1 << 17, i, np.uint8)})
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_publisher_leaves_an_endpoint_subscribers_skip_and_the_sweep_removes(ipc_dir):
    folder = ipc_dir / "d"
    ctx = zmq.Context()
    sub = Subscriber(ctx, None, ["cam.x"], direct_dir=folder)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_PUBLISHER, str(ipc_dir)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        got = []
        wait_until(lambda: got.append(sub.recv(50)) or len([m for m in got if m]) == 5, what="5 frames")
        frames = [m for m in got if m]
        assert [int(m.body["image"][0]) for m in frames] == list(range(5))
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert name in direct.endpoints(folder)  # nobody closed it
    late = Subscriber(ctx, None, ["cam.x"], direct_dir=folder)
    assert late.direct.connected == {}  # a file of a dead process is not connected to
    assert direct.sweep_dead(folder) == [name] and direct.endpoints(folder) == []
    mine = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "alive", direct_dir=folder)
    assert direct.sweep_dead(folder) == [] and direct.remove_endpoints_of(os.getpid(), folder) == [
        mine.direct_endpoint.name]
    for s in (sub, late, mine):
        s.close()
    ctx.term()


def test_a_new_publisher_is_found_while_messages_of_another_keep_coming(ipc_dir):
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    first = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "a", direct_dir=folder)
    sub = Subscriber(ctx, None, ["t.a", "t.b"], direct_dir=folder)
    _linked(first, sub)
    second = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "b", direct_dir=folder)
    srcs: set[str] = set()

    def both_heard() -> bool:  # a message of "a" every 5 ms: the subscriber never waits long enough to time out
        first.publish("t.a", {})
        second.publish("t.b", {})
        msg = sub.recv(5)
        if msg is not None:
            srcs.add(msg.header.src)
        return srcs == {"a", "b"}
    wait_until(both_heard, what="messages of the publisher that came second")
    for s in (first, second, sub):
        s.close()
    ctx.term()


def test_what_a_closing_publisher_sent_is_all_read_before_its_link_is_let_go(ipc_dir):
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    sub = Subscriber(ctx, None, ["t.x"], direct_dir=folder, batched=True)
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "last", direct_dir=folder)
    _linked(pub, sub)
    for i in range(5_000):
        pub.publish("t.x", {"i": i})
    pub.close()  # its socket file goes now; its messages are still on their way or queued at the reader
    assert not (folder / pub.direct_endpoint.name).exists()
    got = [sub.recv(WAIT_MS) for _ in range(5_000)]
    assert [m.body["i"] for m in got if m] == list(range(5_000))
    assert sub.stats.gaps == 0
    wait_until(lambda: sub.recv(50) is None and not sub.direct.connected, what="the closed publisher's link let go")
    sub.close()
    ctx.term()


def test_a_poll_loop_finds_publishers_with_discover(ipc_dir):
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    sub = Subscriber(ctx, None, ["t.p"], direct_dir=folder)
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "p", direct_dir=folder)
    assert sub.direct.connected == {}
    poller = zmq.Poller()
    poller.register(sub.sock, zmq.POLLIN)

    def heard() -> bool:
        sub.discover()  # the poll loop's part: recv_nowait is never called while nothing comes
        pub.drain_subscriptions()
        if pub.has_subscriber("t.p"):
            pub.publish("t.p", {})
        return bool(poller.poll(50)) and sub.recv_nowait() is not None
    wait_until(heard, what="a message through a link found by discover()")
    assert Subscriber(ctx, f"ipc://{ipc_dir}/b").discover() is False  # a broker subscriber has no links
    pub.close(), sub.close()
    ctx.term()


def test_recv_keeps_its_deadline_while_signals_interrupt_the_wait(ipc_dir):
    """ZeroMQ starts a wait again after a signal; recv waits in slices of 0.1 s and checks its deadline
    between them, so signals further apart than a slice cannot stretch a timeout much."""
    ctx = zmq.Context()
    sub = Subscriber(ctx, f"ipc://{ipc_dir}/b", ["t"])
    ticks = []
    old_handler = signal.signal(signal.SIGUSR1, lambda *_: ticks.append(1))
    stop = threading.Event()

    def signals() -> None:  # from a thread, not SIGALRM: pytest-timeout owns that one
        while not stop.wait(0.15):
            os.kill(os.getpid(), signal.SIGUSR1)
    sender = threading.Thread(target=signals, daemon=True)
    sender.start()
    try:
        t0 = time.monotonic()
        assert sub.recv(1_000) is None
        took = time.monotonic() - t0
    finally:
        stop.set()
        sender.join()
        signal.signal(signal.SIGUSR1, old_handler)
    assert len(ticks) >= 3 and 0.99 <= took < 3.0, (len(ticks), took)
    sub.close()
    ctx.term()


def test_a_settled_folder_is_not_listed_again_until_it_changes_or_a_second_passes(ipc_dir):
    """A look at the folder is a stat; the listing (and the liveness check of every link) runs only when the
    folder's mtime moved, when that mtime was too recent to trust, or every LIST_EVERY_NS."""
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    made: list[Any] = []
    try:
        made.append(Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "a", direct_dir=folder))
        links = direct.DirectLinks(ctx.socket(zmq.SUB), folder)
        made.append(links.sock)
        step = direct.DISCOVER_EVERY_NS
        now = time.monotonic_ns()

        def age_folder() -> None:  # as a folder nobody touched for a second looks
            old = time.time_ns() - 1_000_000_000
            os.utime(folder, ns=(old, old))

        age_folder()
        assert links.scan(now) is True and set(links.connected) == {made[0].direct_endpoint.name}
        listed = links.listings
        for k in range(1, 5):  # looks within the second: the folder is settled and unchanged
            assert links.maybe_scan(now + k * step) is False
        assert links.listings == listed
        made.append(Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "b", direct_dir=folder))  # the folder changes
        soon = time.time_ns() + 60_000_000_000  # and stays recent however slowly this machine gets to the look
        os.utime(folder, ns=(soon, soon))
        assert links.maybe_scan(now + 5 * step) is True and len(links.connected) == 2
        assert links.listings == listed + 1
        # That change is recent: its mtime is not trusted, so the next look lists again though nothing moved.
        assert links.maybe_scan(now + 6 * step) is False and links.listings == listed + 2
        age_folder()
        links.maybe_scan(now + 7 * step)  # the mtime moved (aged): listed, now settled
        links.maybe_scan(now + 8 * step)
        assert links.listings == listed + 3
        whole = (time.time_ns() // 1_000_000_000 - 1) * 1_000_000_000
        os.utime(folder, ns=(whole, whole))  # an mtime of whole seconds: a coarse filesystem, never trusted
        links.maybe_scan(now + 9 * step)
        links.maybe_scan(now + 10 * step)
        assert links.listings == listed + 5
        age_folder()
        links.maybe_scan(now + 11 * step)
        assert links.listings == listed + 6
        links.maybe_scan(now + 12 * step)
        assert links.listings == listed + 6
        links.maybe_scan(now + 11 * step + direct.LIST_EVERY_NS)  # a second since the last listing: listed anyway
        assert links.listings == listed + 7
    finally:
        for m in made:
            m.close()
        ctx.term()


def test_a_publisher_killed_in_a_settled_folder_is_let_go_by_the_listing_every_second(ipc_dir):
    """SIGKILL leaves the endpoint file, so the folder does not change: the listing that runs every
    LIST_EVERY_NS finds the process gone."""
    ctx = zmq.Context()
    folder = ipc_dir / "d"
    folder.mkdir(mode=0o700)
    code = textwrap.dedent(f"""
        import sys, time, zmq
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from bus.pubsub import Publisher
        pub = Publisher(zmq.Context(), "ipc://{ipc_dir}/nobroker", "doomed", direct_dir=Path({str(folder)!r}))
        print(pub.direct_endpoint.name, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    sub = None
    try:
        name = proc.stdout.readline().strip()
        sub = Subscriber(ctx, None, ["t.k"], direct_dir=folder)
        old = time.time_ns() - 1_000_000_000
        os.utime(folder, ns=(old, old))
        sub.direct.scan()  # connected, and the folder settled
        assert name in sub.direct.connected
        proc.kill()
        proc.wait(30)
        assert (folder / name).exists()  # left in place: the folder did not change
        wait_until(lambda: sub.recv(50) is None and name not in sub.direct.connected,
                   what="the killed publisher's link let go")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        if sub is not None:
            sub.close()
        ctx.term()


def test_a_name_with_a_pid_no_process_can_have_is_skipped_not_fatal(ipc_dir):
    """The name pattern allows ten digits; ``os.kill`` raises OverflowError for such a PID, which must read as
    a dead publisher, not end the scan (and the actor loop that called it)."""
    import socket

    from bus.shm import pid_alive

    assert not pid_alive(9_999_999_999)
    folder = ipc_dir / "d"
    folder.mkdir(mode=0o700)
    junk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    junk.bind(str(folder / "9999999999-0.pub"))
    ctx = zmq.Context()
    pub = Publisher(ctx, f"ipc://{ipc_dir}/nobroker", "talker", direct_dir=folder)
    sub = Subscriber(ctx, None, ["speech.text"], direct_dir=folder)
    sub.discover()
    _linked(pub, sub)
    pub.publish("speech.text", {"i": 1})
    msg = sub.recv(WAIT_MS)
    assert msg is not None and msg.body == {"i": 1}
    sub.close(), pub.close(), junk.close()
    ctx.term()
