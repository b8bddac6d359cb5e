"""The Actor base class with real sockets: handlers, timers, errors, commands, stopping."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid

import msgpack
import numpy as np
import pytest
import zmq
from pydantic import BaseModel

from actors import Actor, Registry, handles
from bus.endpoints import Endpoints
from bus.envelope import Header, Message, encode
from bus.pubsub import Publisher
from tests.support import ROOT, WAIT_S, clean_env, wait_until, write_config


class Doubler(Actor):
    """Doubles numbers; a body without one is a bug in the sender, a negative one a bug here."""

    kind = "doubler"

    def setup(self) -> None:
        self.ticks = 0
        self.torn_down = False
        self.every(0.05, self.on_tick)

    @handles("test.number")
    def on_test_number(self, msg: Message) -> None:
        if msg.body["x"] < 0:
            raise RuntimeError("negative numbers are not supported")
        self.publish("test.doubled", {"x": msg.body["x"] * 2, "arr": np.asarray(msg.body["arr"]) * 2})

    def on_tick(self) -> None:
        self.ticks += 1

    def ctl_scale(self, factor: float) -> float:
        return factor * 2

    def teardown(self) -> None:
        self.torn_down = True


@pytest.fixture
def doubler(broker, ipc_dir):
    endpoints = Endpoints(broker.frontend, broker.backend, f"ipc://{ipc_dir}/control.sock")
    actor = Doubler("doubler@t", None, endpoints, heartbeat_s=0.2)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", actor.run()), daemon=True)
    thread.start()
    yield actor, thread, result
    actor.stop("test over")
    thread.join(10)


def test_actor_handles_topics_survives_handler_errors_and_reports_them(doubler, broker, collector_factory):
    actor, thread, result = doubler
    out = collector_factory(broker, ["test.doubled", "sys.heartbeat"])
    pub = Publisher(broker.ctx, broker.frontend, "tester")
    assert pub.wait_for_subscriber("test.number", WAIT_S)
    pub.publish("test.number", {"x": 2, "arr": np.arange(3)})
    pub.publish("test.number", {"x": -1, "arr": np.arange(3)})   # handler bug: counted, logged, survived
    pub.publish("test.number", {"y": 1})                          # bad body: counted as dropped
    pub.publish("test.number", {"x": 5, "arr": np.arange(3)})
    xs = [out.wait_for(lambda m, v=v: m.topic == "test.doubled" and m.body["x"] == v).body for v in (4, 10)]
    np.testing.assert_array_equal(xs[0]["arr"], [0, 2, 4])
    hb = out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "doubler@t"
                      and m.body["counters"]["errors"] >= 2)
    counters = hb.body["counters"]
    assert counters["in"] >= 4 and counters["out"] >= 2 and counters["dropped"] >= 1
    assert hb.body["state"] == "ready" and hb.body["rss"] > 0 and hb.body["kind"] == "doubler"
    assert hb.body["latency_ms"]["n"] >= 4 and hb.body["latency_ms"]["p99"] >= hb.body["latency_ms"]["p50"]
    assert actor.ticks > 0 and thread.is_alive()
    pub.close()


def test_ctl_commands_are_answered_with_the_same_corr(doubler, broker, collector_factory):
    actor, thread, result = doubler
    replies = collector_factory(broker, ["ctl.reply"])
    pub = Publisher(broker.ctx, broker.frontend, "tester")
    assert pub.wait_for_subscriber("ctl.doubler@t", WAIT_S)
    for cmd, args in (("ping", {}), ("scale", {"factor": 3}), ("stats", {}), ("explode", {})):
        corr = uuid.uuid4().hex
        pub.publish("ctl.doubler@t", {"cmd": cmd, "args": args}, corr=corr)
        reply = replies.wait_for(lambda m: m.header.corr == corr, what=f"reply to {cmd}").body
        if cmd == "ping":
            assert reply["ok"] and reply["result"] == "pong"
        elif cmd == "scale":
            assert reply["ok"] and reply["result"] == 6
        elif cmd == "stats":
            assert reply["ok"] and "counters" in reply["result"]
        else:
            assert not reply["ok"] and "unknown command" in reply["error"]
    pub.publish("ctl.doubler@t", {"cmd": "stop"}, corr="bye")
    thread.join(WAIT_S)
    assert not thread.is_alive() and result["code"] == 0 and actor.torn_down
    pub.close()


def test_malformed_messages_reach_a_live_actor_and_are_counted_as_dropped(doubler, broker, collector_factory):
    actor, thread, result = doubler
    out = collector_factory(broker, ["test.doubled", "sys.heartbeat"])
    raw = broker.ctx.socket(zmq.XPUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(broker.frontend)
    wait_until(lambda: raw.poll(100) and b"test.number" in raw.recv(), what="actor subscription")
    garbage = [[b"test.number", b"\x01\x02"], [b"test.number", b"\xc1", b"\xc1"],
               [b"test.number", msgpack.packb({"v": 1, "src": "x", "seq": 0, "ts": 0}),
                msgpack.packb({"x": msgpack.ExtType(5, b"")})]]
    for frames in garbage:
        raw.send_multipart(frames)
    raw.send_multipart(encode("test.number", Header(src="raw", seq=0, ts=0), {"x": 21, "arr": np.ones(2)}),
                       copy=False)
    out.wait_for(lambda m: m.topic == "test.doubled" and m.body["x"] == 42)
    hb = out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "doubler@t"
                      and m.body["counters"]["dropped"] >= len(garbage))
    assert hb.body["counters"]["dropped"] == len(garbage)
    assert thread.is_alive()
    raw.close()


def test_actor_process_stops_on_sigterm_with_exit_0(ipc_dir, broker):
    config = write_config(ipc_dir, '[actors."probe@p"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "actors", "probe", "--name", "probe@p", "-c", str(config)],
                            cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        pub = Publisher(broker.ctx, broker.frontend, "tester")
        assert pub.wait_for_subscriber("ctl.probe@p", WAIT_S), "actor never subscribed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
        assert '"event": "stopped"' in proc.stderr.read()
        pub.close()
    finally:
        proc.kill()


def test_runner_rejects_unknown_kinds_and_bad_settings(ipc_dir):
    done = subprocess.run([sys.executable, "-m", "actors", "teleporter"], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 2 and "unknown actor kind 'teleporter'" in done.stderr
    check = subprocess.run([sys.executable, "-m", "actors", "--check", "monitor", "probe", "nope"], cwd=ROOT,
                           env=clean_env(), capture_output=True, text=True, timeout=WAIT_S)
    assert check.returncode == 1 and '"monitor": "ok"' in check.stdout and "unknown actor kind" in check.stdout


def test_every_kind_has_a_settings_model_and_a_class():
    specs = Registry.for_config().specs()
    assert len(specs) == 11
    for spec in specs:
        assert issubclass(spec.settings, BaseModel) and spec.description
        assert spec.actor_class().kind == spec.name
        assert all(body.TOPIC for body in spec.publishes)
