"""The attacks of issue 14 as functions, shared by the chaos tests (short runs) and ``bench/chaos.py``
(the long versions): a kill -9 loop and a topic flood from a separate process.

Each returns plain figures (counts, seconds), so a test asserts on them and the bench prints them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from bus.envelope import Header, encode, encode_header
from tests.support import ROOT, WAIT_S, Collector, SupervisorProcess, actor_pids, clean_env


@dataclass
class KillLoop:
    """What a kill loop saw: one entry per kill."""

    killed: list[str] = field(default_factory=list)
    """Actor names, in the order they were killed."""
    back_to_ready_s: list[float] = field(default_factory=list)
    """Per kill: SIGKILL -> the supervisor's ``ready`` event of the new process (its own clock, wall ns)."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    """``failed`` events seen (the circuit opened)."""

    def summary(self) -> dict[str, Any]:
        times = sorted(self.back_to_ready_s)
        return {"kills": len(self.killed), "returned_to_ready": len(times), "failed": len(self.failed),
                "ready_p50_s": round(times[len(times) // 2], 3) if times else None,
                "ready_max_s": round(times[-1], 3) if times else None}


def kill_loop(sup: SupervisorProcess, events: Collector, names: list[str], kills: int, *, seed: int = 0,
              max_s: float = 600.0) -> KillLoop:
    """SIGKILL a random one of ``names`` ``kills`` times (or until ``max_s``), each time waiting for the
    supervisor's ``ready`` of its successor before the next kill. ``events``: a collector of ``sys.actor``
    made before the loop."""
    rng = random.Random(seed)
    seen = KillLoop()
    end = time.monotonic() + max_s
    for n in range(kills):
        if time.monotonic() > end:
            break
        name = rng.choice(names)
        status = sup.wait_running(*names)
        pid = actor_pids(status)[name]
        readies = len([e for e in events.events(name) if e["event"] == "ready"])
        killed_at = time.time_ns()
        os.kill(pid, signal.SIGKILL)
        ready = events.wait_event(name, "ready", count=readies + 1, timeout_s=WAIT_S)[-1]
        assert ready.get("pid") != pid, f"kill {n}: {name}'s ready event names the killed pid {pid}"
        seen.killed.append(name)
        seen.back_to_ready_s.append(max(0.0, (ready["ts"] - killed_at) / 1e9))
    seen.failed = [e for e in events.events() if e["event"] == "failed"]
    return seen


def topic_flood(frontend: str, topic: str, body: dict[str, Any], seconds: float, *, rate_hz: float = 0.0,
                src: str = "flooder") -> dict[str, Any]:
    """Flood ``topic`` with ``body`` from ``python -m tests.chaos.flood topic`` (its own process: no shared
    GIL) for ``seconds``; its figures: ``sent`` (seq 0..sent-1), ``rate_hz``, and the sender (``src``,
    ``iid``, ``parts``) for ``account_flood``."""
    frames = [bytes(memoryview(f)) for f in encode(topic, Header(src, 0, 0), body)]
    parts = [frames[0], *frames[2:]]  # the topic, the body, the arrays: the flooder writes its own headers
    proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.flood", "topic", frontend, str(seconds),
                             str(rate_hz), src], cwd=ROOT, env=clean_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(msgpack.packb(parts), timeout=seconds + WAIT_S)
    finally:
        proc.kill()
    if proc.returncode != 0:
        raise AssertionError(f"the flood of {topic} exited {proc.returncode}")
    return dict(json.loads(out), src=src, parts=parts)


def account_flood(frontend: str, out: Collector, actor: str, flood: dict[str, Any],
                  timeout_s: float = 2 * WAIT_S) -> tuple[int, dict[str, Any]]:
    """After a flood, continue its sequence (same sender) one message at a time until a heartbeat of
    ``actor`` accounts for every message up to the last one sent: ``in + gaps == total``. A message
    sent while the consumer's queues are still full may be dropped like any other, so one is sent
    every half second until one gets through: then every earlier loss shows as a gap. Returns
    (total, that heartbeat's body). ``out`` collects ``sys.heartbeat``."""
    topic, body, *arrays = flood["parts"]
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(frontend)
    seq = flood["sent"]
    end = time.monotonic() + timeout_s
    try:
        while time.monotonic() < end:
            mark = len(out.messages)
            head = encode_header(Header(flood["src"], seq, time.time_ns(), iid=flood["iid"]))
            sock.send_multipart([topic, head, body, *arrays])
            total = seq + 1
            try:
                beat = out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == actor
                                    and m.body["counters"]["in"] + m.body["counters"]["gaps"] >= total,
                                    timeout_s=0.5, after=mark, what="")
                return total, beat.body
            except AssertionError:
                seq += 1
    finally:
        sock.close()
    raise AssertionError(f"{actor} never accounted for the flood of {topic!r} within {timeout_s:g} s")
