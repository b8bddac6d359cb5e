"""The bridge's decisions, the keys, and the refusal rules (no namespaces needed: loopback only).

The two- and three-host behaviour over real non-loopback addresses is in
tests/net/test_bridge_netns.py. This module costs about 10 s.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import zmq

from actors.bridge.link import LinkWatch, clock_sample, covers, exports_to, imports_from
from actors.bridge.preflight import check_bridge
from actors.bridge.settings import BridgeSettings
from bus.endpoints import EndpointError, check_endpoint
from bus.security import KeyFileError, KeyStore, fingerprint, main as keys_main
from config.schema import Config
from tests.support import ROOT, clean_env, wait_until, write_config


def test_ctl_crosses_only_through_a_prefix_that_names_it():
    assert covers(["sensor."], "sensor.imu")
    assert not covers(["sensor."], "camera.frame")
    assert covers([""], "camera.frame")
    assert not covers([""], "ctl.detector") and not covers(["c"], "ctl.detector")
    assert covers(["ctl."], "ctl.detector") and covers(["ctl.detector"], "ctl.detector")


def test_only_this_hosts_own_messages_are_exported_and_only_the_peers_own_imported():
    assert exports_to("sensor.imu", "ha", "ha", ["sensor."], ["sensor."])
    assert not exports_to("sensor.imu", "hb", "ha", ["sensor."], ["sensor."]), "re-export: a loop"
    assert not exports_to("sensor.imu", "ha", "ha", ["sensor."], ["camera."]), "the peer did not ask for it"
    assert not exports_to("sensor.imu", "ha", "ha", ["camera."], ["sensor."]), "not exported"
    assert imports_from("sensor.imu", "hb", "hb", ["sensor."])
    assert not imports_from("sensor.imu", "hc", "hb", ["sensor."]), "a relay of a third host"
    assert not imports_from("ctl.sensor", "hb", "hb", [""])


def test_clock_sample_is_ntps_offset_and_delay():
    # The peer's clock is 5 s ahead; 10 ms each way; the peer takes 2 ms to answer.
    t1 = 1_000_000_000_000
    t2 = t1 + 10_000_000 + 5_000_000_000
    t3 = t2 + 2_000_000
    t4 = t1 + 22_000_000
    s = clock_sample(t1, t2, t3, t4)
    assert s.rtt_ms == pytest.approx(20.0)
    assert s.offset_ms == pytest.approx(5000.0)


def test_link_watch_goes_down_after_the_timeout_and_up_on_the_next_word():
    w = LinkWatch(timeout_s=2.0)
    assert w.state == "down" and w.heard(0.0) and w.state == "up"
    assert not w.check(1.9)
    assert w.check(2.1) and w.state == "down"
    assert not w.check(5.0), "down once, not again"
    assert w.heard(6.0) and w.changes == 3


def test_keys_init_show_trust_list_untrust(tmp_path, capsys):
    folder = tmp_path / "keys"
    assert keys_main(["--dir", str(folder), "init"], Config()) == 0
    public = capsys.readouterr().out.strip()
    assert len(public) == 40
    store = KeyStore(folder)
    assert oct(store.secret_file.stat().st_mode & 0o777) == "0o600"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert keys_main(["--dir", str(folder), "init"], Config()) == 0, "a second init keeps the keypair"
    capsys.readouterr()
    assert store.keypair().public.decode() == public
    assert keys_main(["--dir", str(folder), "show"], Config()) == 0
    assert capsys.readouterr().out.strip() == public
    other = KeyStore(tmp_path / "other")
    other.init()
    assert keys_main(["--dir", str(folder), "trust", "hb", str(other.public_file)], Config()) == 0
    assert store.trusted() == {"hb": other.keypair().public}
    capsys.readouterr()
    assert keys_main(["--dir", str(folder), "list"], Config()) == 0
    assert fingerprint(other.keypair().public) in capsys.readouterr().out
    assert keys_main(["--dir", str(folder), "trust", "hc", "not a key"], Config()) == 1
    assert keys_main(["--dir", str(folder), "untrust", "hb"], Config()) == 0
    assert store.trusted() == {}


def test_non_loopback_bind_needs_a_keypair_and_a_non_empty_trusted_list(tmp_path):
    store = KeyStore(tmp_path / "keys")
    with pytest.raises(EndpointError, match="only for a bridge"):
        check_endpoint("tcp://10.203.9.1:7000", binding=True)
    with pytest.raises(EndpointError, match="keys init"):
        check_endpoint("tcp://10.203.9.1:7000", binding=True, curve_keys=store)
    store.init()
    with pytest.raises(EndpointError, match="keys trust"):
        check_endpoint("tcp://10.203.9.1:7000", binding=True, curve_keys=store)
    peer = KeyStore(tmp_path / "peer")
    peer.init()
    store.trust("hb", peer.keypair().public.decode())
    check_endpoint("tcp://10.203.9.1:7000", binding=True, curve_keys=store)


def test_a_secret_key_readable_by_others_is_refused_and_validate_says_so(tmp_path):
    store = KeyStore(tmp_path / "keys")
    store.init()
    store.secret_file.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        store.keypair()
    checks = check_bridge("bridge", BridgeSettings(keys_dir=str(store.folder), bind="tcp://10.203.9.1:7000",
                                                   peers=[{"name": "hb"}]))
    failed = {c.name: c.detail for c in checks if c.status == "fail"}
    assert "chmod 600" in failed["bridge: host keypair"]
    assert "bridge: bind" in failed and "keys trust hb" in failed["bridge: peer hb"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keys(folder: Path, *names: str, trust: tuple[tuple[str, str], ...] = ()) -> dict[str, KeyStore]:
    """A keypair per name under ``folder``; ``trust``: (truster, trusted) pairs, the trusted one by its name."""
    stores = {name: KeyStore(folder / name) for name in names}
    for store in stores.values():
        store.init()
    for truster, trusted in trust:
        stores[truster].trust(trusted, stores[trusted].keypair().public.decode())
    return stores


@contextlib.contextmanager
def _two_hosts(stores: dict[str, KeyStore], hb_actors: str, hb_bridge: str, ha_bridge: str,
               bus_extra: str = "") -> Iterator[tuple[Any, Any]]:
    """Hosts hb (it listens) and ha (it dials) on loopback, each its own supervisor with a bridge; yields
    (hb, ha) once both bridges run. ``*_bridge``: the rest of each bridge's settings table (its peer)."""
    import tempfile

    from tests.support import SupervisorProcess

    port = _free_port()
    sups = []
    try:
        for host, actors, settings in (
                ("hb", hb_actors, f'bind = "tcp://127.0.0.1:{port}"\n{hb_bridge}'),
                ("ha", "", ha_bridge.replace("ENDPOINT", f"tcp://127.0.0.1:{port}"))):
            folder = Path(tempfile.mkdtemp(prefix="snb", dir="/tmp"))
            config = write_config(folder, f'{actors}[actors.bridge]\nkind = "bridge"\n[actors.bridge.settings]\n'
                                          f'keys_dir = "{stores[host].folder}"\n{settings}',
                                  f'host = "{host}"\n{bus_extra}')
            sups.append(SupervisorProcess(config, folder))
        hb, ha = sups
        hb.wait_running("bridge")
        ha.wait_running("bridge")
        yield hb, ha
    finally:
        for sup in sups:
            sup.cleanup()
            shutil.rmtree(sup.folder, ignore_errors=True)


def _peer_client(server: KeyStore, client: KeyStore, port: int) -> zmq.Socket:
    """A DEALER dialing a bridge on loopback as the host whose keys are ``client`` (CURVE, as a bridge does)."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    pair = client.keypair()
    s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server.keypair().public, pair.public, pair.secret
    s.connect(f"tcp://127.0.0.1:{port}")
    return s


def _run_bridge(ipc_dir: Path, settings_toml: str) -> subprocess.Popen:
    config = write_config(ipc_dir, f'[actors.bridge]\nkind = "bridge"\n[actors.bridge.settings]\n{settings_toml}',
                          'host = "ha"')
    return subprocess.Popen([sys.executable, "-m", "actors", "bridge", "-c", str(config)], cwd=ROOT,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_bridge_binding_beyond_loopback_without_keys_refuses_to_start_with_one_message(ipc_dir, broker):
    proc = _run_bridge(ipc_dir, f'bind = "tcp://10.203.9.1:7000"\nkeys_dir = "{ipc_dir / "keys"}"\n'
                                '[[actors.bridge.settings.peers]]\nname = "hb"\npublic_key = "' + "x" * 40 + '"\n')
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    failed = [json.loads(line) for line in out.splitlines() if '"setup_failed"' in line]
    assert len(failed) == 1 and "keys init" in failed[0]["error"]


def test_an_unknown_key_is_refused_by_zap_counted_and_logged_with_its_fingerprint(ipc_dir, broker):
    stores = _keys(ipc_dir, "ours", "hb", "stranger", trust=(("ours", "hb"),))
    ours, stranger = stores["ours"], stores["stranger"]
    port = _free_port()
    proc = _run_bridge(ipc_dir, f'bind = "tcp://127.0.0.1:{port}"\nkeys_dir = "{ours.folder}"\n'
                                '[[actors.bridge.settings.peers]]\nname = "hb"\nexports = ["probe."]\n')
    lines: list[str] = []
    try:
        wait_until(lambda: _read_until(proc, lines, '"bridge_ready"'), 60, "bridge ready")
        s = _peer_client(ours, stranger, port)
        pair = stranger.keypair()
        s.send_multipart([b"H", b"\x80"])
        assert s.poll(2000) == 0, "an untrusted client must receive nothing"
        s.close()
        refused = wait_until(lambda: _read_until(proc, lines, '"handshake_refused"'), 30, "handshake_refused")
        event = json.loads(refused)
        assert event["key"] == fingerprint(pair.public) and event["address"] == "127.0.0.1"
        assert event["refused_total"] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _read_until(proc: subprocess.Popen, lines: list[str], marker: str) -> str | None:
    """The first line so far holding ``marker``; the actor's output is read by a thread into ``lines``."""
    if not lines:
        lines.append("")

        def pump() -> None:
            for line in proc.stdout:
                lines.append(line)

        threading.Thread(target=pump, daemon=True).start()
    for line in list(lines):
        if marker in line:
            return line
    if proc.poll() is not None:
        raise AssertionError(f"bridge exited {proc.returncode}: {lines[-5:]}")
    return None


def test_prometheus_shows_each_link():
    from actors.monitor.prometheus import HealthCollector

    link = {"state": "up", "rtt_ms": 0.4, "clock_offset_ms": -1.5, "msgs_out": 3, "bytes_out": 300, "msgs_in": 7,
            "bytes_in": 700, "drops_out": 1, "drops_in": 0, "refused_handshakes": 2, "downs": 1}
    from bus.messages import Health

    health = Health(system={}, actors={}, bus={}, links={"hb": link})
    metrics = {m.name: m for m in HealthCollector(lambda: health, lambda: []).collect()}
    assert metrics["sensorium_link_up"].samples[0].value == 1.0
    assert metrics["sensorium_link_rtt_ms"].samples[0].value == 0.4
    got = {(s.labels["direction"], s.value) for s in metrics["sensorium_link_messages"].samples
           if s.name.endswith("_total")}
    assert got == {("out", 3), ("in", 7)}
    assert metrics["sensorium_link_refused_handshakes"].samples[0].value == 2


def test_two_bridges_on_loopback_forward_one_way_and_refuse_commands_not_allowed(supervisor_factory, tmp_path):
    """Without namespaces (no root needed): two hosts on one machine, each its own supervisor, linked on
    127.0.0.1. hb's probe ticks reach ha; ha may not command hb's actors (ctl = false on hb's side)."""
    from tests.support import Collector

    stores = _keys(tmp_path, "ha", "hb", trust=(("ha", "hb"), ("hb", "ha")))
    with _two_hosts(stores, '[actors.probe]\nkind = "probe"\nsettings = { tick_hz = 20 }\n',
                    'heartbeat_ivl_s = 0.5\n[[actors.bridge.settings.peers]]\nname = "ha"\nexports = ["probe."]\n',
                    'heartbeat_ivl_s = 0.5\n[[actors.bridge.settings.peers]]\nname = "hb"\nendpoint = "ENDPOINT"\n'
                    'imports = ["probe."]\nctl = true\n') as (hb, ha):
        hb.wait_running("probe")
        c = Collector(ha.frontend, ha.backend, ["probe.tick", "sys.link"])
        try:
            tick = c.wait_for(lambda m: m.topic == "probe.tick", what="hb's ticks on ha")
            assert tick.header.host == "hb"
            done = ha.cli("ctl", "hb/probe", "ping")
            assert done.returncode == 1, done.stderr
            assert "ctl = false" in json.loads(done.stdout)["error"]
            # hb withdraws its trust in ha: the link drops, and ha's redials are refused and counted on ha.
            stores["hb"].untrust("ha")
            mark = len(c.messages)
            c.wait_for(lambda m: m.topic == "sys.link" and m.body["state"] == "down" and m.body["refused_handshakes"] > 0,
                       after=mark, what="ha's link down, with hb's refusals counted")
        finally:
            c.close()


def test_top_shows_the_links_and_the_other_hosts_actors():
    from bus.top import render

    link = {"state": "up", "rtt_ms": 0.41, "clock_offset_ms": -2.5, "msgs_in": 1200, "msgs_out": 3,
            "actors": {"sensor": {"kind": "sensor", "state": "ready", "pid": 4242}}}
    screen = render({"system": {}, "bus": {}, "actors": {}, "links": {"hb": link}}, {}, color=False)
    assert "link hb  up  rtt 0.41 ms  clock offset -2.50 ms  in 1200  out 3" in screen
    assert any(line.split()[:4] == ["hb/sensor", "sensor", "ready", "4242"] for line in screen.splitlines())


def test_a_burst_and_frames_cross_in_batches_to_plain_and_shared_memory_subscribers(tmp_path):
    """hb's publisher sends 2,000 small messages at once (they cross in batches) and 6 frames (read by hb's
    bridge from the publisher's ring); on ha a plain subscriber and a shared-memory one each get every
    message once, under the sender's own header, the frames' bytes intact, the shm one through ha's bridge's
    ring."""
    import numpy as np

    from bus.pubsub import Publisher, Subscriber
    from tests.support import Collector

    stores = _keys(tmp_path, "ha", "hb", trust=(("ha", "hb"), ("hb", "ha")))
    ctx = zmq.Context.instance()
    with _two_hosts(stores, "", 'hwm = 5000\n[[actors.bridge.settings.peers]]\nname = "ha"\nexports = ["bench."]\n',
                    'hwm = 5000\n[[actors.bridge.settings.peers]]\nname = "hb"\nendpoint = "ENDPOINT"\n'
                    'imports = ["bench."]\n', bus_extra="shm_slots = 16") as (hb, ha):
        links = Collector(ha.frontend, ha.backend, ["sys.link"])
        plain = Subscriber(ctx, ha.backend, hwm=10_000)
        local = Subscriber(ctx, ha.backend, hwm=10_000, shm=True, shm_views=True)
        for sub in (plain, local):
            sub.subscribe("bench.", exact=False)
        pub = Publisher(ctx, hb.frontend, "burst", host="hb", hwm=10_000, shm_slots=16)
        try:
            links.wait_for(lambda m: m.body["state"] == "up", what="the link up")
            assert plain.wait_subscribed(ha.frontend, 30) and local.wait_subscribed(ha.frontend, 30)
            # Warm-up until ha hears hb (hb's bridge subscribed here, ha's imports in place).
            got: dict[str, list] = {"plain": [], "local": []}

            def drain() -> None:
                for name, sub in (("plain", plain), ("local", local)):
                    while (msg := sub.recv(timeout_ms=0)) is not None:
                        got[name].append(msg)

            def heard() -> bool:
                pub.publish("bench.warm", {"n": 0})
                drain()
                return all(any(m.topic == "bench.warm" for m in v) for v in got.values())
            wait_until(heard, 60, "hb's messages on ha")
            images = [np.random.default_rng(i).integers(0, 255, (480, 640, 3), dtype=np.uint8) for i in range(6)]
            for i in range(2000):
                pub.publish("bench.small", {"i": i})
            for i, image in enumerate(images):
                pub.publish("bench.frame", {"i": i, "image": image})
                wait_until(lambda: (drain() or True) and all(
                    sum(m.topic == "bench.frame" for m in v) > i for v in got.values()), 60, f"frame {i} on ha")

            def complete() -> bool:
                drain()
                return all(sum(m.topic == "bench.small" for m in v) >= 2000 for v in got.values())
            wait_until(complete, 60, "2,000 small messages on ha, in both forms")
            for name, msgs in got.items():
                small = [m for m in msgs if m.topic == "bench.small"]
                assert [m.body["i"] for m in small] == list(range(2000)), f"{name}: each once, in order"
                assert {(m.header.host, m.header.src, m.header.iid) for m in small} == {("hb", "burst", pub.iid)}
                assert [m.header.seq for m in small] == list(range(2000))
                frames = [m for m in msgs if m.topic == "bench.frame"]
                assert [m.body["i"] for m in frames] == list(range(6))
                for m in frames:
                    assert np.array_equal(m.body["image"], images[m.body["i"]]), f"{name}: frame bytes"
                if name == "local":
                    assert all(m.shm_taken for m in frames), "the shm subscriber reads ha's bridge's ring"
                    assert all(local.still_valid(m) for m in frames[-2:])
            stats = {"plain": plain.stats, "local": local.stats}
            assert all(s.gaps == 0 and s.malformed == 0 for s in stats.values()), stats
            link = links.wait_for(lambda m: m.body["msgs_in"] >= 2006, what="the link's count of messages in")
            assert link.body["drops_in"] == 0
        finally:
            for closable in (links, plain, local, pub):
                closable.close()


def test_an_imported_batch_is_taken_message_by_message_and_bad_ones_are_counted(ipc_dir, broker):
    """A trusted peer's ``B`` batch: its own message under our imports is published here under its header; a
    batch that is no msgpack, a relay of a third host's message, an item that is not three bins, a topic we
    do not import and a body referring to shared memory are each counted in ``drops_in`` and published
    nowhere."""
    import time

    import msgpack

    from bus.envelope import Encoder
    from bus.pubsub import Subscriber

    stores = _keys(ipc_dir, "ours", "hb", trust=(("ours", "hb"),))
    ours, peer = stores["ours"], stores["hb"]
    port = _free_port()
    ctx = zmq.Context.instance()
    sub = Subscriber(ctx, broker.backend, hwm=1000)
    sub.subscribe("", exact=False)
    proc = _run_bridge(ipc_dir, f'bind = "tcp://127.0.0.1:{port}"\nkeys_dir = "{ours.folder}"\nreport_s = 0.2\n'
                                '[[actors.bridge.settings.peers]]\nname = "hb"\nimports = ["bench."]\n')
    lines: list[str] = []
    s = _peer_client(ours, peer, port)
    try:
        wait_until(lambda: _read_until(proc, lines, '"bridge_ready"'), 60, "bridge ready")
        s.send_multipart([b"H", msgpack.packb({"host": "hb", "t1": time.time_ns(), "imports": []})])
        assert s.poll(30_000), "a pong for the trusted peer's hello"
        good = Encoder("imu", host="hb", iid="imu-1").encode("bench.imu", 0, time.time_ns(), {"ax": 1.0})
        relayed = Encoder("imu", host="hc").encode("bench.imu", 0, time.time_ns(), {"ax": 2.0})
        other = Encoder("imu", host="hb").encode("other.imu", 0, time.time_ns(), {"ax": 3.0})
        # A reference to shared memory means this host's memory here: never passed on.
        ref = msgpack.ExtType(2, msgpack.packb(["|u1", [4], "sensorium-1-ab-0", 0, 2]))
        sneaky = [good[0], good[1], msgpack.packb({"img": ref})]
        s.send_multipart([b"B", b"\xc1"])
        s.send_multipart([b"B", msgpack.packb([relayed, [b"bench.imu", 1], other, sneaky, good])])

        def link_counts() -> dict | None:
            while (msg := sub.recv(timeout_ms=100)) is not None:
                if msg.topic == "bench.imu":
                    got.append(msg)
                elif msg.topic == "sys.link" and msg.body["msgs_in"] >= 1 and msg.body["drops_in"] >= 5:
                    return msg.body
            return None
        got: list = []
        link = wait_until(link_counts, 60, "sys.link counting the batch")
        assert link["msgs_in"] == 1 and link["drops_in"] == 5, link
        assert [(m.header.host, m.header.src, m.header.iid, m.body["ax"]) for m in got] == [("hb", "imu", "imu-1",
                                                                                            1.0)]
        # Fuzz: 300 link messages of random bytes, cut and flipped batches, odd kinds and frame counts; the
        # bridge stays up and still takes the peer's next good message.
        import random

        rng = random.Random(7)
        valid = msgpack.packb([good, other])
        for _ in range(300):
            choice = rng.randrange(4)
            if choice == 0:
                payload = rng.randbytes(rng.randrange(64))
            elif choice == 1:
                payload = valid[:rng.randrange(len(valid))]
            else:
                flipped = bytearray(valid)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                payload = bytes(flipped)
            kind = rng.choice([b"B", b"D", b"B", b"Z"])
            s.send_multipart([kind, payload] + [b"x"] * rng.randrange(3))
        after = Encoder("imu", host="hb", iid="imu-1").encode("bench.imu", 1, time.time_ns(), {"ax": 9.0})
        s.send_multipart([b"B", msgpack.packb([after])])
        wait_until(lambda: link_counts() is not None and any(m.body["ax"] == 9.0 for m in got), 60,
                   "the good message after the fuzz")
        assert proc.poll() is None, "the bridge died of the fuzz"
    finally:
        s.close()
        sub.close()
        proc.terminate()
        proc.wait(timeout=30)


def test_malformed_local_messages_are_dropped_not_exported(ipc_dir, broker):
    """On the export side a local message of one or two frames is counted and never sent on; a good message
    read as the two-frame message's missing part is dropped with it, the ones after come through in order."""
    import time

    import msgpack

    from bus.envelope import LOCAL_MARKER, Encoder

    stores = _keys(ipc_dir, "ours", "hb", trust=(("ours", "hb"),))
    ours, peer = stores["ours"], stores["hb"]
    port = _free_port()
    ctx = zmq.Context.instance()
    proc = _run_bridge(ipc_dir, f'bind = "tcp://127.0.0.1:{port}"\nkeys_dir = "{ours.folder}"\n'
                                '[[actors.bridge.settings.peers]]\nname = "hb"\nexports = ["bench."]\n')
    lines: list[str] = []
    s = _peer_client(ours, peer, port)
    raw = ctx.socket(zmq.XPUB)
    raw.linger = 0
    raw.connect(broker.frontend)
    try:
        wait_until(lambda: _read_until(proc, lines, '"bridge_ready"'), 60, "bridge ready")
        s.send_multipart([b"H", msgpack.packb({"host": "hb", "t1": time.time_ns(), "imports": ["bench."]})])
        assert s.poll(30_000), "a pong: the link is up"
        wait_until(lambda: raw.poll(100) and raw.recv().startswith(b"\x01" + LOCAL_MARKER), 30,
                   "the raw publisher sees the bridge's subscription")
        # One socket for all of it: the broker keeps one sender's order (not across senders).
        enc = Encoder("raw", host="ha")
        good = [enc.encode("bench.x", i, time.time_ns(), {"i": i}) for i in range(4)]
        raw.send(LOCAL_MARKER + b"bench.x")                                  # one frame
        raw.send_multipart([LOCAL_MARKER + b"bench.x", good[0][1]])          # two frames ...
        for frames in good:                                                  # ... the first good one its part
            raw.send_multipart([LOCAL_MARKER + frames[0], *frames[1:]])
        got: list[int] = []
        end = time.monotonic() + 30
        while 3 not in got and time.monotonic() < end:
            if not s.poll(500):
                continue
            frames = s.recv_multipart()
            if frames[0] == b"O":
                continue
            items = msgpack.unpackb(frames[1]) if frames[0] == b"B" else [frames[1:]]
            for topic, header, body in items:
                assert topic == b"bench.x", topic
                decoded = msgpack.unpackb(body)
                assert isinstance(decoded, dict), f"a malformed body went out: {body!r}"
                got.append(decoded.get("i", -1))
        # good[0] is dropped with the two-frame message when the bridge reads it as the missing body; when
        # it had not arrived yet, the cut message is dropped alone and good[0] goes out. Never anything else.
        assert got in ([1, 2, 3], [0, 1, 2, 3]), got
    finally:
        for sock in (s, raw):
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)
