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

from bus.envelope import Header, encode
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
    GIL) for ``seconds``; its figures: ``sent`` (seq 0..sent-1, then one last message, seq ``sent``, after
    a pause, so that tail losses show as gaps: a consumer's ``in + gaps`` ends at ``sent + 1``), ``rate_hz``."""
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
    return json.loads(out)
