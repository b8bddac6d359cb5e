"""A heartbeat flood from made-up senders costs dropped messages, never a healthy actor.

A raw PUB (tests/chaos/flood.py, its own process) sends valid ``sys.heartbeat``
messages from 1000 made-up senders as fast as this machine lets it for
FLOOD_S, while three probe actors run under a supervisor. Costs ~25 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bus import control
from tests.support import ROOT, actor_pids, clean_env

pytestmark = pytest.mark.slow

FLOOD_S = 10.0
PROBES = ("probe@a", "probe@b", "probe@c")
ACTORS = "".join(f'[actors."{name}"]\n' for name in PROBES)


def test_a_heartbeat_flood_kills_no_healthy_actor_and_control_answers(supervisor_factory, collector_factory):
    sup = supervisor_factory(ACTORS, "[actor_defaults]\nliveness_timeout_s = 5.0\n")
    before = actor_pids(sup.wait_running(*PROBES))
    events = collector_factory(sup, ["sys.actor"])
    flooder = subprocess.Popen([sys.executable, "-m", "tests.chaos.flood", sup.frontend, str(FLOOD_S)], cwd=ROOT,
                               env=clean_env(), stdout=subprocess.PIPE, text=True)
    answers, slowest = 0, 0.0
    try:
        while flooder.poll() is None:  # control must answer all through the flood
            t0 = time.monotonic()
            status = control.request(sup.control, "status", timeout_s=5.0)
            slowest = max(slowest, time.monotonic() - t0)
            answers += 1
            time.sleep(0.5)  # pacing the probe requests, not synchronisation
        flood = json.loads(flooder.communicate(timeout=30)[0])
    finally:
        flooder.kill()
    status = sup.status()
    hb = status["heartbeats"]
    print(f"\nflood: {flood}; supervisor heartbeats: {hb}; {answers} status answers, slowest {slowest:.2f} s")
    killed = [e for e in events.events() if e["event"] == "exited"]
    assert not killed, f"healthy actors were killed during the flood: {killed}"
    assert actor_pids(status) == before and all(a["state"] == "running" for a in status["actors"])
    assert answers >= 3
    assert hb["foreign"] > 0, "the flood never reached the supervisor"
    assert hb["accepted"] > 0
