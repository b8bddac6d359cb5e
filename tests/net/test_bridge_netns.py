"""Hosts joined by bridges over real non-loopback addresses: network namespaces, one supervisor each.

Each host is a namespace with its own runtime folder, keys folder and
supervisor (``ip netns exec NS python supervisor.py run``); the test reads
each host's bus through its ipc sockets (unix sockets are not bound to a
network namespace). Needs root; skipped with the reason otherwise. Costs
about 60-90 s on the shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from bus.security import KeyStore, fingerprint
from tests.net.netns import NetLab, remove_stale
from tests.support import ROOT, Collector, SupervisorProcess, clean_env, wait_until, write_config

PORT = 7301
HB_IVL_S, HB_TIMEOUT_S = 0.5, 2.0


@pytest.fixture
def lab() -> Iterator[NetLab]:
    why = NetLab.available()
    if why:
        pytest.skip(f"cannot make network namespaces here: {why}")
    remove_stale()
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def hosts_dir() -> Iterator[Path]:
    folder = Path(f"/tmp/sbr-{secrets.token_hex(3)}")
    folder.mkdir(mode=0o700)
    yield folder
    if not os.environ.get("SBR_KEEP"):  # keep the logs of a run to look into
        shutil.rmtree(folder, ignore_errors=True)


class Hosts:
    """Hosts of one test: keys made and trusted pairwise, configs written, supervisors started and cleaned up."""

    def __init__(self, lab: NetLab, folder: Path, names: list[str]) -> None:
        self.lab, self.folder = lab, folder
        self.stores: dict[str, KeyStore] = {}
        self.sups: dict[str, SupervisorProcess] = {}
        self.collectors: list[Collector] = []
        for name in names:
            lab.add_host(name)
            (folder / name).mkdir(mode=0o700)
            self.stores[name] = KeyStore(folder / name / "keys")
            self.stores[name].init()
        for name in names:
            for other in names:
                if other != name:
                    self.stores[name].trust(other, self.stores[other].keypair().public.decode())

    def start(self, name: str, peers: list[dict], actors: str = "", bind: str = "") -> SupervisorProcess:
        folder = self.folder / name
        peer_toml = ""
        for p in peers:
            peer_toml += "[[actors.bridge.settings.peers]]\n" + "".join(
                f"{k} = {json.dumps(v)}\n" for k, v in p.items()) + "\n"
        bridge = (f'[actors.bridge]\nkind = "bridge"\n[actors.bridge.settings]\nbind = "{bind}"\n'
                  f'keys_dir = "{folder / "keys"}"\nheartbeat_ivl_s = {HB_IVL_S}\n'
                  f'heartbeat_timeout_s = {HB_TIMEOUT_S}\nreport_s = 0.5\ntrust_check_s = 0.5\n\n{peer_toml}')
        config = write_config(folder, actors + "\n" + bridge, f'host = "{name}"')  # still in [bus]
        sup = SupervisorProcess(config, folder, prefix=self.lab.exec_prefix(name))
        self.sups[name] = sup
        return sup

    def collect(self, name: str, prefixes: list[str]) -> Collector:
        sup = self.sups[name]
        c = Collector(sup.frontend, sup.backend, prefixes)
        self.collectors.append(c)
        return c

    def bridge_log(self, name: str) -> list[dict]:
        path = self.folder / name / "logs" / "bridge.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]

    def close(self) -> None:
        for c in self.collectors:
            c.close()
        for sup in self.sups.values():
            sup.cleanup()


@pytest.fixture
def make_hosts(lab: NetLab, hosts_dir: Path) -> Iterator:
    made: list[Hosts] = []

    def make(names: list[str]) -> Hosts:
        h = Hosts(lab, hosts_dir, names)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


SENSOR = """[actors.sensor]
kind = "sensor"
[actors.sensor.settings]
source = "synthetic"
"""


MONITOR = """[actors.monitor]
kind = "monitor"
[actors.monitor.settings]
interval_s = 0.5
prometheus_port = -1
"""


def link_state(c: Collector, peer: str, state: str, after: int = 0, timeout_s: float = 60.0):
    return c.wait_for(lambda m: m.topic == "sys.link" and m.body["peer"] == peer and m.body["state"] == state,
                      timeout_s, f"sys.link {peer} {state}", after=after)


def test_two_hosts_imu_crosses_untrusted_refused_link_heals_and_key_removal_cuts(make_hosts):
    hosts = make_hosts(["ha", "hb"])
    lab = hosts.lab
    addr_a, addr_b = lab.join("ha", "hb")
    # B listens; A dials B. B exports its IMU; A imports it (ctl. would not cross: not configured).
    b = hosts.start("hb", [{"name": "ha", "imports": [], "exports": ["sensor."], "ctl": True}], SENSOR,
                    bind=f"tcp://{addr_b}:{PORT}")
    a = hosts.start("ha", [{"name": "hb", "endpoint": f"tcp://{addr_b}:{PORT}", "imports": ["sensor.", ""],
                            "exports": [], "ctl": True}], MONITOR)
    b.wait_running("bridge", "sensor")
    a.wait_running("bridge", "monitor")
    on_a = hosts.collect("ha", ["sensor.", "sys.link", "ctl.", "monitor."])
    imu = on_a.wait_for(lambda m: m.topic == "sensor.imu", what="sensor.imu from hb on ha")
    assert imu.header.host == "hb" and imu.header.src == "sensor"
    assert not any(m.topic.startswith("ctl.") for m in on_a.messages)
    up = on_a.wait_for(lambda m: m.topic == "sys.link" and m.body["state"] == "up" and m.body["rtt_ms"] is not None,
                       what="sys.link up with a round trip")
    assert up.body["peer"] == "hb" and 0 < up.body["rtt_ms"] < 1000 and abs(up.body["clock_offset_ms"]) < 1000
    # status --hosts shows the other host's actors (the catalogue) and the link; ctl hb/sensor reaches it.
    def hb_listed():
        done = a.cli("status", "--hosts", "--json")
        hosts_seen = json.loads(done.stdout).get("hosts", {}) if done.returncode == 0 else {}
        return hosts_seen if "sensor" in hosts_seen.get("hb", {}).get("actors", {}) else None

    listed = wait_until(hb_listed, 60, "hb's sensor in status --hosts on ha")
    assert listed["hb"]["link"]["state"] == "up" and "bridge" in listed["ha"]["actors"]
    text = a.cli("status", "--hosts", check=True).stdout
    assert "link ha -> hb (client): up" in text
    pong = a.cli("ctl", "hb/sensor", "ping", check=True)
    assert json.loads(pong.stdout) == {"actor": "hb/sensor", "cmd": "ping", "ok": True, "result": "pong",
                                       "error": ""}
    assert not any(m.topic.startswith("ctl.") and m.header.host == "hb" for m in on_a.messages)
    on_a.wait_for(lambda m: m.topic == "monitor.health" and m.body.get("links", {}).get("hb", {}).get("state") == "up"
                  and m.body["links"]["hb"]["msgs_in"] > 0 and "sensor" in m.body["links"]["hb"]["actors"],
                  what="the link, with messages in and hb's actors, in monitor.health (what top shows)")

    # An untrusted client (a fresh key, from A's namespace) gets nothing, and B logs it with key and address.
    stranger = KeyStore(hosts.folder / "stranger")
    pair, _ = stranger.init()
    probe = subprocess.run(
        [*lab.exec_prefix("ha"), sys.executable, "-c", _STRANGER, f"tcp://{addr_b}:{PORT}",
         hosts.stores["hb"].keypair().public.decode(), pair.public.decode(), pair.secret.decode()],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "received 0"
    refused = wait_until(lambda: [e for e in hosts.bridge_log("hb") if e.get("event") == "handshake_refused"],
                         30, "handshake_refused in hb's bridge log")
    assert refused[0]["key"] == fingerprint(pair.public) and refused[0]["address"] == addr_a

    # The link goes down: sys.link says so within the heartbeat timeout (plus a report period and load margin).
    mark = len(on_a.messages)
    cut_ns = time.time_ns()
    lab.set_link("ha", "hb", up=False)
    down = link_state(on_a, "hb", "down", after=mark, timeout_s=HB_TIMEOUT_S + 10)
    assert down.body["downs"] >= 1
    print(f"link down -> sys.link down: {(down.header.ts - cut_ns) / 1e9:.2f} s (timeout {HB_TIMEOUT_S} s)")
    on_a.wait_for(lambda m: m.topic == "monitor.alert" and m.body["metric"] == "link.down"
                  and m.body["state"] == "raised", after=mark, what="the link.down alert")
    mark = len(on_a.messages)
    lab.set_link("ha", "hb", up=True)
    link_state(on_a, "hb", "up", after=mark)
    on_a.wait_for(lambda m: m.topic == "sensor.imu", after=mark, what="sensor.imu after the link came back")
    gaps = {k: v for k, v in on_a.stats.gaps_by_stream.items() if k[0][0] == "hb" and k[1] == "sensor.imu"}
    assert gaps and sum(gaps.values()) > 0, "the messages lost while the link was down are counted as gaps"

    # Removing A's key from B's trusted folder closes the link within seconds, without a restart.
    mark = len(on_a.messages)
    hosts.stores["hb"].untrust("ha")
    link_state(on_a, "hb", "down", after=mark, timeout_s=HB_TIMEOUT_S + 10)
    assert b.proc.poll() is None and a.proc.poll() is None


_STRANGER = """
import sys, time, zmq
endpoint, server, public, secret = sys.argv[1:5]
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server.encode(), public.encode(), secret.encode()
s.linger = 0
s.connect(endpoint)
s.send_multipart([b"H", b"\\x80"])
n = 0
end = time.monotonic() + 3
while time.monotonic() < end:
    if s.poll(100):
        s.recv_multipart(); n += 1
print("received", n)
"""


def test_imported_imu_drives_the_gesture_actor_and_a_killed_peer_heals(make_hosts):
    hosts = make_hosts(["ha", "hb"])
    _, addr_b = hosts.lab.join("ha", "hb")
    peers_b = [{"name": "ha", "exports": ["sensor."]}]
    b = hosts.start("hb", peers_b, SENSOR, bind=f"tcp://{addr_b}:{PORT}")
    store = hosts.folder / "ha" / "gestures.gst"
    gesture = (f'[actors.gesture]\nkind = "gesture"\nsettings = {{ store = {{ path = "{store}", '
               'seed_path = "models/gestures/synthetic.gst" } }\n')
    a = hosts.start("ha", [{"name": "hb", "endpoint": f"tcp://{addr_b}:{PORT}", "imports": ["sensor."]}], gesture)
    b.wait_running("bridge", "sensor")
    a.wait_running("bridge", "gesture")
    on_a = hosts.collect("ha", ["sensor.", "sys.link", "gesture."])
    first = on_a.wait_for(lambda m: m.topic == "sensor.imu", what="sensor.imu from hb")
    # hb's IMU drives ha's gesture recognizer: the synthetic phone on hb performs scripted gestures.
    recognized = on_a.wait_for(lambda m: m.topic == "gesture.recognized", timeout_s=90,
                               what="a gesture recognized on ha from hb's IMU")
    assert recognized.header.host == "ha"
    b.proc.kill()  # SIGKILL: its actors exit by themselves (no orphans)
    b.proc.wait(timeout=30)
    mark = len(on_a.messages)
    link_state(on_a, "hb", "down", after=mark, timeout_s=HB_TIMEOUT_S + 10)
    wait_until(lambda: not b.descendants(), 30, "hb's actors gone")
    b2 = hosts.start("hb", peers_b, SENSOR, bind=f"tcp://{addr_b}:{PORT}")
    b2.wait_running("bridge", "sensor")
    again = on_a.wait_for(lambda m: m.topic == "sensor.imu" and m.header.iid != first.header.iid, after=mark,
                          what="sensor.imu from the restarted hb")
    assert again.header.host == "hb"


def test_triangle_delivers_every_message_exactly_once(make_hosts):
    names = ["ta", "tb", "tc"]
    hosts = make_hosts(names)
    lab = hosts.lab
    lab.join("ta", "tb")
    lab.join("tb", "tc")
    lab.join("tc", "ta")
    ticks = '[actors.probe]\nkind = "probe"\n[actors.probe.settings]\ntick_hz = 20\n'
    # Each pair has one dialer: ta dials tb, tb dials tc, tc dials ta. Every host imports and exports probe.
    dials = {"ta": "tb", "tb": "tc", "tc": "ta"}
    for name in names:
        peers = []
        for other in names:
            if other == name:
                continue
            entry = {"name": other, "imports": ["probe."], "exports": ["probe."]}
            if dials[name] == other:
                entry["endpoint"] = f"tcp://{lab.addresses[(other, name)]}:{PORT}"
            peers.append(entry)
        binds = [lab.addresses[(name, o)] for o in names if o != name and dials[o] == name]
        hosts.start(name, peers, ticks, bind=f"tcp://{binds[0]}:{PORT}")
    for name in names:
        hosts.sups[name].wait_running("bridge", "probe")
    collectors = {name: hosts.collect(name, ["probe.tick"]) for name in names}

    def enough(name: str) -> bool:
        got = Counter(m.header.host for m in list(collectors[name].messages))
        return all(got[o] >= 40 for o in names if o != name)

    for name in names:
        wait_until(lambda: enough(name), 90, f"40 ticks from each other host on {name}")
    for name, c in collectors.items():
        seen = Counter((m.header.host, m.header.src, m.header.iid, m.header.seq) for m in list(c.messages))
        dup = {k: n for k, n in seen.items() if n > 1}
        assert not dup, f"{name} received duplicates: {list(dup)[:5]}"
        assert c.stats.gaps == 0 and c.stats.resets == 0, (name, c.stats)
        assert {h for h, *_ in seen} == set(names)
        # Three hosts each running a "probe" are three senders, not one name published twice.
        assert not c._sub.duplicates(), c._sub.duplicates()
