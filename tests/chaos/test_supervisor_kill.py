"""kill -9 of the supervisor, whatever its actors are doing: every one exits by itself (no orphans).

tests/supervisor/test_supervision.py covers idle probes; here the actors are
caught in the states where an exit is hardest: one still inside a long
``setup()`` (a model load), one hung in a handler loop (no heartbeat, no
message loop), the sensor publishing, and the monitor. The watchdog thread of
``actors/base.py`` must end each of them within a few seconds. Costs ~15 s.
"""

from __future__ import annotations

import time

import psutil
import pytest

from tests.support import WAIT_S, wait_until

pytestmark = pytest.mark.slow

EXIT_S = 15.0
"""The watchdog polls every 0.25 s and forces the exit 3 s after asking: generous for a loaded machine."""
ACTORS = """
[actors."probe@loading"]
start_timeout_s = 300.0
settings = { setup_delay_s = 300.0 }
[actors."probe@hung"]
liveness_timeout_s = 300.0
heartbeat_s = 0.2
settings = { hang_after_s = 3.0 }
[actors.sensor]
settings = { source = "synthetic", calibration = { enabled = false } }
[actors.monitor]
settings = { prometheus_port = -1, gpu = "off" }
"""


def test_actors_loading_hung_or_busy_all_exit_when_the_supervisor_is_killed(supervisor_factory, collector_factory):
    sup = supervisor_factory(ACTORS)
    beats = collector_factory(sup, ["sys.heartbeat"])  # before probe@hung hangs, 3 s after its ready
    sup.wait_running("probe@hung", "sensor", "monitor")
    beats.wait_for(lambda m: m.header.src == "probe@hung", what="a heartbeat of probe@hung")

    def hung() -> bool:  # no heartbeat of probe@hung for a while: it is inside its endless loop
        last = max(m.header.ts for m in list(beats.messages) if m.header.src == "probe@hung")
        return time.time_ns() - last > 2e9

    wait_until(hung, what="probe@hung to hang")
    assert {a["name"]: a["state"] for a in sup.status()["actors"]}["probe@loading"] == "starting"
    actors = sup.descendants()
    names = {p.pid: " ".join(p.cmdline()[-4:]) for p in actors}
    assert len(actors) >= 4, names

    sup.proc.kill()
    sup.proc.wait(timeout=WAIT_S)
    killed_at = time.monotonic()
    _, alive = psutil.wait_procs(actors, timeout=EXIT_S)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    print(f"\n{len(actors)} processes exited {time.monotonic() - killed_at:.1f} s after the supervisor's kill")
    assert not alive, f"orphans {EXIT_S:g} s after the supervisor died: {[names[p.pid] for p in alive]}"
