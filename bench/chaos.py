"""Chaos bench: the attacks of issue 14 at full length, and the figures a user wants from them.

Each phase runs its own supervisor (``supervisor.py run``) in a private
runtime folder on real processes and sockets; the short versions of the same
attacks are the tests in ``tests/chaos/`` (whose helpers this reuses):

* **kill loop**: ``--kills`` SIGKILLs of a random actor (two probes, the IMU
  sensor, the monitor), each waiting for the successor's ``ready``: kills
  survived, time back to ready p50/max, actors FAILED (intensity set
  generously: expect 0);
* **heartbeat flood**: valid ``sys.heartbeat`` from 1000 made-up senders as
  fast as one process can send (target >= 20k/s) for ``--flood-s`` at 10
  healthy probes: healthy actors killed (expect 0), control answers and the
  slowest one;
* **control fuzz**: ``--fuzz`` random requests (msgpack maps shaped like
  requests, random msgpack values, random bytes, odd frame lists) at the
  control socket: answered, supervisor exits (expect 0);
* **HTTP**: ``--slow`` slow connections held open at the sensor's HTTP
  source, then malformed requests (``--http-rounds`` rounds of 13 kinds):
  answered with a 4xx within 1 s, the slowest answer, and a well-formed push
  answered meanwhile;
* **malformed messages**: the corpus of ``tests/chaos/corpus.py`` plus
  ``--mutations`` good messages with random bytes changed, at a probe: sent,
  refused by the codec, counted by the actor (``dropped``), lost = refused
  but not counted (expect 0);
* **topic floods**: audio.chunk -> vad, sensor.imu -> gesture,
  speech.transcript -> intent, ctl -> probe for ``--topic-s`` each: sent,
  handled, counted lost (seq gaps), unaccounted (expect 0), restarts.

The machine's load average (1/5/15 min) is printed before and after.

    python bench/chaos.py [--quick] [--out DIR] [--kills N] [--flood-s S] [--fuzz N] [--slow N] ...

Prints a table and the JSON, and writes ``DIR/chaos.json`` (default ``bench/out``).
"""

from __future__ import annotations

from _bootstrap import HERE, ROOT  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np
import zmq

from bus import control
from bus.bodies.audio import AudioChunk, Transcript
from bus.bodies.imu import ImuBatch
from bus.envelope import EnvelopeError, Header, decode, encode
from bus.pubsub import Publisher
from tests.chaos.attacks import account_flood, kill_loop, topic_flood
from tests.chaos.corpus import corpus
from tests.support import Collector, SupervisorProcess, actor_pids, clean_env, wait_until, write_config

GESTURE_STORE = ROOT / "models" / "gestures" / "synthetic.gst"


class Phase:
    """One supervisor in its own runtime folder, with collectors; everything cleaned up on exit."""

    def __init__(self, actors_toml: str, extra_toml: str = "") -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sch", dir="/tmp"))
        self.folder.chmod(0o700)
        self.sup = SupervisorProcess(write_config(self.folder, actors_toml, extra_toml), self.folder)
        self.collectors: list[Collector] = []

    def collector(self, prefixes: list[str]) -> Collector:
        c = Collector(self.sup.frontend, self.sup.backend, prefixes)
        self.collectors.append(c)
        return c

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, *exc: Any) -> None:
        for c in self.collectors:
            c.close()
        self.sup.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- kill loop ----------------------------------------------------------------

def kills(n: int) -> dict[str, Any]:
    from tests.chaos.test_kill_loop import ACTORS, GENEROUS, NAMES

    with Phase(ACTORS, GENEROUS) as p:
        p.sup.wait_running(*NAMES)
        events = p.collector(["sys.actor"])
        seen = kill_loop(p.sup, events, NAMES, n, seed=int(time.time()))
        status = p.sup.wait_running(*NAMES)
        out = seen.summary()
        out["running_after"] = sum(1 for a in status["actors"] if a["state"] == "running")
        out["actors"] = len(NAMES)
        return out


# -- heartbeat flood ------------------------------------------------------------

def heartbeat_flood(seconds: float) -> dict[str, Any]:
    probes = [f"probe@h{i}" for i in range(10)]
    with Phase("".join(f'[actors."{n}"]\n' for n in probes), "[actor_defaults]\nliveness_timeout_s = 5.0\n") as p:
        before = actor_pids(p.sup.wait_running(*probes))
        events = p.collector(["sys.actor"])
        flooder = subprocess.Popen([sys.executable, "-m", "tests.chaos.flood", p.sup.frontend, str(seconds)],
                                   cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, text=True)
        answers, unanswered, slowest = 0, 0, 0.0
        try:
            while flooder.poll() is None:
                t0 = time.monotonic()
                try:
                    control.request(p.sup.control, "status", timeout_s=5.0)
                    answers += 1
                except control.ControlError:
                    unanswered += 1
                slowest = max(slowest, time.monotonic() - t0)
                time.sleep(0.5)  # pacing the status requests
            flood = json.loads(flooder.communicate(timeout=60)[0])
        finally:
            flooder.kill()
        status = p.sup.status()
        killed = [e for e in events.events() if e["event"] == "exited"]
        return {"sent": flood["sent"], "seconds": flood["seconds"], "rate_hz": flood["rate_hz"],
                "healthy_actors": len(probes), "healthy_killed": len(killed),
                "pids_unchanged": actor_pids(status) == before, "control_answers": answers,
                "control_unanswered": unanswered, "control_slowest_s": round(slowest, 4),
                "supervisor_heartbeats": status.get("heartbeats", {})}


# -- control fuzz ---------------------------------------------------------------

def random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(10 if depth < 3 else 7)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, -2**63, 2**64 - 1, rng.randint(-1000, 1000)])
    if pick == 3:
        return rng.choice([0.0, -1.5, float("inf"), float("nan"), rng.random()])
    if pick == 4:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(12)))
    if pick == 5:
        return rng.randbytes(rng.randrange(12))
    if pick == 6:
        return rng.choice(["status", "start", "stop", "restart", "probe@z", "ghost", ""])
    if pick in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_value(rng, 3) if rng.random() < 0.2 else rng.choice(["cmd", "actor", "token", "x"]):
            random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def fuzz_payload(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.5:
        request = {k: random_value(rng) for k in rng.sample(["cmd", "actor", "token", "wait_s", "x"], rng.randrange(4))}
        if rng.random() < 0.5:
            request["cmd"] = rng.choice(["status", "start", "stop", "restart", "shutdown"])
        return msgpack.packb(request, use_bin_type=True)
    if kind < 0.75:
        return msgpack.packb(random_value(rng), use_bin_type=True)
    return rng.randbytes(rng.randrange(64))


def control_fuzz(n: int) -> dict[str, Any]:
    rng = random.Random(14)
    with Phase('[actors."probe@z"]\n', "[actor_defaults]\nbackoff = { initial_s = 0.1, jitter = 0.0 }\n") as p:
        p.sup.wait_running("probe@z")
        ctx = zmq.Context.instance()
        client = ctx.socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(p.sup.control)
        answered = refused = accepted = unanswered = odd_frames = 0
        slowest = 0.0
        try:
            for i in range(n):
                if rng.random() < 0.1:  # frames without REQ's delimiter, from a throwaway socket: nowhere to answer
                    raw = ctx.socket(zmq.DEALER)
                    raw.setsockopt(zmq.LINGER, 0)
                    raw.connect(p.sup.control)
                    raw.send_multipart([rng.randbytes(rng.randrange(16)) for _ in range(rng.randrange(1, 4))])
                    raw.close()
                    odd_frames += 1
                    continue
                t0 = time.monotonic()
                client.send_multipart([b"", fuzz_payload(rng)])
                if client.poll(10_000):
                    reply = msgpack.unpackb(client.recv_multipart()[-1])
                    answered += 1
                    accepted += bool(reply.get("ok"))
                    refused += not reply.get("ok")
                else:
                    unanswered += 1
                    client.close()
                    client = ctx.socket(zmq.DEALER)
                    client.setsockopt(zmq.LINGER, 0)
                    client.connect(p.sup.control)
                slowest = max(slowest, time.monotonic() - t0)
                if p.sup.proc.poll() is not None:
                    break
        finally:
            client.close()
        exits = 0 if p.sup.proc.poll() is None else 1
        alive = exits == 0 and control.request(p.sup.control, "status", timeout_s=10)["ok"]
        return {"requests": answered + unanswered + odd_frames, "answered": answered, "refused": refused,
                "accepted": accepted, "unanswered": unanswered, "odd_frame_lists": odd_frames,
                "slowest_answer_s": round(slowest, 4), "supervisor_exits": exits, "answers_status_after": alive,
                "invalid_counted": p.sup.status()["control"].get("invalid") if alive else None}


# -- HTTP -----------------------------------------------------------------------

def http_cases() -> list[tuple[str, bytes]]:
    from tests.chaos.test_http_sensor import post

    entry = '{"name": "accelerometer", "time": %s, "values": {"x": 1, "y": 2, "z": 3}}'
    return [
        ("a 400-digit integer", post(('{"payload": [' + entry % ("7" * 400) + "]}").encode())),
        ("a 5000-digit integer", post(('{"payload": [' + entry % ("7" * 5000) + "]}").encode())),
        ("100,000-deep nesting", post(b"[" * 100_000 + b"]" * 100_000)),
        ("Content-Length: \u00b2", post(b"{}", length="\u00b2".encode())),
        ("Content-Length: -1", post(b"{}", length=b"-1")),
        ("a body over the limit", post(b"{}", length=b"999999999999")),
        ("not JSON", post(b"{payload: nope")),
        ("JSON but no payload", post(b'{"x": 1}')),
        ("wrong path", post(b'{"payload": []}', path="/nowhere")),
        ("wrong method", b"DELETE /data HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"),
        ("garbage request line", b"\x00\x01\x02 GARBAGE\r\n\r\n"),
        ("a header over the limit", b"POST /data HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"),
        ("bad chunked body", b"POST /data HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ]


def http(slow_n: int, rounds: int) -> dict[str, Any]:
    from tests.actors.sensor.test_sources import push, sensor_logger_batch
    from tests.chaos.test_http_sensor import exchange

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * slow_n + 512
    if soft < wanted and (hard == resource.RLIM_INFINITY or hard >= wanted):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    slow_n = min(slow_n, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 512) // 2)
    actors = ('[actors.sensor]\nheartbeat_s = 0.5\nsettings = { source = "http", http = { port = 0, '
              'idle_timeout_s = 600.0, backlog = 4096 }, calibration = { enabled = false } }\n')
    with Phase(actors) as p:
        out = p.collector(["sensor.state", "sys.actor"])
        p.sup.wait_running("sensor")
        listening = out.wait_for(lambda m: m.topic == "sensor.state" and m.body["state"] == "listening")
        host, port = listening.body["address"].rsplit(":", 1)
        address = (host, int(port))
        pid = p.sup.actor("sensor")["pid"]
        slow: list[socket.socket] = []
        results: list[tuple[str, int | None, float]] = []
        try:
            for _ in range(slow_n):
                sock = socket.create_connection(address, timeout=30)
                sock.sendall(b"POST /data HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")  # ...and never more
                slow.append(sock)
            for _ in range(rounds):
                for what, raw in http_cases():
                    try:
                        status, _data, took = exchange(address, raw, timeout_s=5.0)
                    except OSError:
                        status, took = None, 5.0
                    results.append((what, status, took))
            push_status = push(f"{address[0]}:{address[1]}", sensor_logger_batch(1, 0, 5))[0]
        finally:
            for sock in slow:
                sock.close()
        prompt = [r for r in results if r[1] is not None and 400 <= r[1] < 500 and r[2] <= 1.0]
        missed = sorted({f"{w}: {s}" for w, s, t in results if not (s is not None and 400 <= s < 500 and t <= 1.0)})
        now = p.sup.actor("sensor")
        return {"slow_connections": slow_n, "malformed_requests": len(results), "answered_4xx_within_1s": len(prompt),
                "max_response_s": round(max(t for _, _, t in results), 3), "missed": missed,
                "codes": sorted({s for _, s, _ in results if s is not None}),
                "push_during_slow_clients": push_status, "sensor_restarted": now["pid"] != pid or now["restarts"] > 0}


# -- malformed messages -----------------------------------------------------------

def mutations(n: int, rng: random.Random) -> list[list[bytes]]:
    """Good messages with 1-4 random bytes changed (or a frame cut short): each may still decode."""
    made = []
    for i in range(n):
        frames = [bytearray(memoryview(f)) for f in encode("chaos.m", Header("mut", i, time.time_ns()),
                                                            {"a": np.arange(8, dtype=np.int32), "s": "text", "n": i})]
        for _ in range(rng.randrange(1, 5)):
            f = frames[rng.randrange(1, len(frames))]  # never the topic: the subscription filter would drop it
            if f and rng.random() < 0.85:
                f[rng.randrange(len(f))] = rng.randrange(256)
            elif f:
                del f[rng.randrange(len(f)):]
        if frames[1][:1].isalpha():  # read as a lone topic frame by a subscriber: not this test's case
            frames[1][0] = 0x85
        made.append([bytes(f) for f in frames])
    return made


def malformed(n_mutations: int) -> dict[str, Any]:
    probe = "probe@m"
    with Phase(f'[actors."{probe}"]\nheartbeat_s = 0.2\nsettings = {{ echo = ["chaos."] }}\n') as p:
        p.sup.wait_running(probe)
        pid = p.sup.actor(probe)["pid"]
        out = p.collector(["probe.echo", "sys.heartbeat"])
        ctx = zmq.Context.instance()
        raw = ctx.socket(zmq.XPUB)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(p.sup.frontend)
        wait_until(lambda: raw.poll(100) and raw.recv().startswith(b"\x01chaos."), what="the probe's subscription")
        messages = list(corpus().values()) + mutations(n_mutations, random.Random(14))
        refused = 0
        for i, frames in enumerate(messages):
            try:
                decode(frames)
            except EnvelopeError:
                refused += 1
            raw.send_multipart(frames)
            if i % 200 == 199:
                time.sleep(0.05)  # within the probe's HWM: a flood is not what this phase measures
        good = Publisher(ctx, p.sup.frontend, "good")
        good.wait_for_subscriber("chaos.marker", 30.0)
        good.publish("chaos.marker", {"n": 1})
        mark = out.wait_for(lambda m: m.topic == "probe.echo" and m.body["topic"] == "chaos.marker")
        beat = out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == probe,
                            after=out.messages.index(mark) + 1).body
        good.close()
        raw.close()
        counted = beat["counters"]["dropped"]
        return {"sent": len(messages), "corpus": len(corpus()), "mutations": n_mutations, "refused_by_codec": refused,
                "counted_by_actor": counted, "lost": refused - counted, "handler_errors": beat["counters"]["errors"],
                "actor_restarted": beat["pid"] != pid, "good_message_after": True}


# -- topic floods -------------------------------------------------------------------

def topic_floods(seconds: float) -> list[dict[str, Any]]:
    results = []
    store = Path(tempfile.mkdtemp(prefix="schg", dir="/tmp")) / "store.gst"
    shutil.copy(GESTURE_STORE, store)
    cases: list[tuple[str, str, str, dict[str, Any], str]] = [
        ("vad", "[actors.vad]\n", AudioChunk.TOPIC,
         AudioChunk(pcm=np.zeros(1600, np.int16), rate=16_000, stream="flood").to_body(), "flooder"),
        ("gesture", f'[actors.gesture]\nsettings = {{ store = {{ path = "{store}", seed_path = "" }} }}\n',
         ImuBatch.TOPIC, ImuBatch(t=np.arange(5.0) / 100, acc=np.zeros((5, 3), np.float32),
                                  gyro=np.zeros((5, 3), np.float32), source="flood").to_body(), "flooder"),
        ("intent", "[actors.intent]\n", Transcript.TOPIC,
         Transcript(text="flood flood", segments=[], language="en", segment_id=1, latency_ms=10.0).to_body(), "speech"),
        ("probe@f", '[actors."probe@f"]\n', "ctl.probe@f", {"cmd": "ping"}, "flooder"),
    ]
    try:
        for actor, toml, topic, body, src in cases:
            with Phase(toml, "[actor_defaults]\nheartbeat_s = 0.5\nliveness_timeout_s = 5.0\n") as p:
                pid = actor_pids(p.sup.wait_running(actor))[actor]
                out = p.collector(["sys.heartbeat", "sys.actor"])
                flood = topic_flood(p.sup.frontend, topic, body, seconds, src=src)
                try:
                    total, beat = account_flood(p.sup.frontend, out, actor, flood, timeout_s=180.0)
                    c = beat["counters"]
                    unaccounted = total - c["in"] - c["gaps"]
                except AssertionError:
                    total, c, unaccounted = flood["sent"], {"in": None, "gaps": None, "dropped": None,
                                                            "errors": None}, None
                now = p.sup.actor(actor)
                results.append({"topic": topic, "actor": actor, "sent": total, "rate_hz": flood["rate_hz"],
                                "handled": c["in"], "counted_lost": c["gaps"], "unaccounted": unaccounted,
                                "dropped": c["dropped"], "errors": c["errors"],
                                "restarts": now["restarts"] + (now["pid"] != pid)})
    finally:
        shutil.rmtree(store.parent, ignore_errors=True)
    return results


# -- report ---------------------------------------------------------------------------

def table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    k = r.get("kill_loop")
    if k:
        rows.append(("kill loop", f"{k['returned_to_ready']}/{k['kills']} kills back to ready, "
                     f"p50 {k['ready_p50_s']} s, max {k['ready_max_s']} s; FAILED {k['failed']}",
                     "every kill back to ready"))
    h = r.get("heartbeat_flood")
    if h:
        rows.append(("heartbeat flood", f"{h['sent']} at {h['rate_hz']}/s for {h['seconds']} s: "
                     f"{h['healthy_killed']}/{h['healthy_actors']} healthy killed; control {h['control_answers']} "
                     f"answered, {h['control_unanswered']} not, slowest {h['control_slowest_s']} s",
                     ">= 20k/s, 0 killed"))
    c = r.get("control_fuzz")
    if c:
        rows.append(("control fuzz", f"{c['requests']} requests ({c['answered']} answered, {c['refused']} refused, "
                     f"{c['odd_frame_lists']} odd frame lists): supervisor exits {c['supervisor_exits']}",
                     "0 exits"))
    w = r.get("http")
    if w:
        rows.append(("HTTP", f"{w['answered_4xx_within_1s']}/{w['malformed_requests']} malformed answered 4xx "
                     f"within 1 s under {w['slow_connections']} slow connections, max {w['max_response_s']} s; "
                     f"push meanwhile {w['push_during_slow_clients']}", "all, 4xx, <= 1 s"))
    m = r.get("malformed")
    if m:
        rows.append(("malformed messages", f"{m['sent']} sent ({m['corpus']} corpus + {m['mutations']} mutated), "
                     f"{m['refused_by_codec']} refused, {m['counted_by_actor']} counted, lost {m['lost']}",
                     "lost 0"))
    for f in r.get("topic_floods", []):
        rows.append((f"flood {f['topic']}", f"{f['sent']} at {f['rate_hz']}/s -> {f['actor']}: handled "
                     f"{f['handled']}, counted lost {f['counted_lost']}, unaccounted {f['unaccounted']}, "
                     f"restarts {f['restarts']}", "unaccounted 0, no restart"))
    rows.append(("load average", f"before {r['load_before']}, after {r['load_after']} ({os.cpu_count()} cores)", ""))
    width = max(len(a) for a, _, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" + (f"   [target: {t}]" if t else "") for a, b, t in rows)


PHASES: dict[str, Callable[[argparse.Namespace], Any]] = {
    "kill_loop": lambda a: kills(a.kills),
    "heartbeat_flood": lambda a: heartbeat_flood(a.flood_s),
    "control_fuzz": lambda a: control_fuzz(a.fuzz),
    "http": lambda a: http(a.slow, a.http_rounds),
    "malformed": lambda a: malformed(a.mutations),
    "topic_floods": lambda a: topic_floods(a.topic_s),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short versions (about a minute)")
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--flood-s", type=float, default=15.0)
    ap.add_argument("--fuzz", type=int, default=2000)
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--http-rounds", type=int, default=4)
    ap.add_argument("--mutations", type=int, default=2000)
    ap.add_argument("--topic-s", type=float, default=5.0)
    ap.add_argument("--only", choices=sorted(PHASES), action="append", help="run only these phases")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    if args.quick:
        args.kills, args.flood_s, args.fuzz, args.slow, args.http_rounds = 10, 5.0, 300, 300, 1
        args.mutations, args.topic_s = 300, 2.0
    result: dict[str, Any] = {"load_before": load(), "cpu_count": os.cpu_count(), "args": {
        k: v for k, v in vars(args).items() if k not in ("out", "only")}}
    failed = []
    for name, run in PHASES.items():
        if args.only and name not in args.only:
            continue
        t0 = time.monotonic()
        print(f"chaos: {name} ...", file=sys.stderr, flush=True)
        try:
            result[name] = run(args)
        except Exception as exc:  # noqa: BLE001 - a failed phase is reported, the others still run
            failed.append(name)
            result[name] = {"error": repr(exc)}
        print(f"chaos: {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    result["load_after"] = load()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chaos.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    print()
    print(table({k: v for k, v in result.items() if not (isinstance(v, dict) and "error" in v)}))
    if failed:
        print(f"chaos: phases that failed to run: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
