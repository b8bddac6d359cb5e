"""The kill loop: kill -9 of random actors, again and again, each followed by a return to ready.

A supervisor runs two probes, the IMU sensor (synthetic source) and the
monitor; 15 times a random one of them is SIGKILLed, and the next kill waits
for the supervisor's ``ready`` of its successor. The intensity rule is set
generously (100 restarts a minute), so no actor may end FAILED; afterwards
the monitor's view (``monitor.health``) names every actor's new process,
none stale, and no ``actor.failed`` alert is active. Costs ~12-30 s.
"""

from __future__ import annotations

import pytest

from tests.chaos.attacks import kill_loop
from tests.support import WAIT_S, actor_pids

pytestmark = pytest.mark.slow

KILLS = 15
NAMES = ["probe@a", "probe@b", "sensor", "monitor"]
ACTORS = """
[actors."probe@a"]
[actors."probe@b"]
[actors.sensor]
settings = { source = "synthetic", calibration = { enabled = false } }
[actors.monitor]
settings = { interval_s = 0.5, prometheus_port = -1, gpu = "off" }
"""
GENEROUS = """
[actor_defaults]
heartbeat_s = 0.5
liveness_timeout_s = 10.0
backoff = { initial_s = 0.1, factor = 1.0, max_s = 1.0, jitter = 0.0 }
intensity = { max_restarts = 100, window_s = 60.0, recovery_s = 2.0 }
"""


def test_every_kill_is_followed_by_a_return_to_ready_and_the_monitor_agrees(supervisor_factory, collector_factory):
    sup = supervisor_factory(ACTORS, GENEROUS)
    sup.wait_running(*NAMES)
    events = collector_factory(sup, ["sys.actor", "monitor."])
    seen = kill_loop(sup, events, NAMES, KILLS, seed=14)
    print(f"\nkill loop: {seen.summary()}")
    assert len(seen.back_to_ready_s) == KILLS
    assert not seen.failed, f"the circuit opened though the intensity allows 100 restarts: {seen.failed}"
    status = sup.wait_running(*NAMES)
    restarts = {a["name"]: a["restarts"] for a in status["actors"]}
    assert sum(restarts.values()) == KILLS and all(restarts[n] == seen.killed.count(n) for n in NAMES), restarts
    pids = actor_pids(status)

    def agrees(m) -> bool:
        if m.topic != "monitor.health":
            return False
        view = m.body["actors"]
        return all(n in view and view[n]["pid"] == pids[n] and not view[n]["stale"] and view[n]["state"] == "ready"
                   for n in NAMES)

    mark = len(events.messages)
    events.wait_for(agrees, timeout_s=WAIT_S, what=f"monitor.health naming the live processes {pids}", after=mark)
    active = [m for m in events.messages if m.topic == "monitor.active_alerts"]
    if active:  # the latest set, if any was published: no actor left FAILED
        assert not [a for a in active[-1].body["alerts"] if a["metric"] == "actor.failed"], active[-1].body
