"""Issue 16 item 6: an outside publisher borrowing the sensor's name makes no false gaps and raises an alert."""

from __future__ import annotations

import os

import pytest

from actors.lib.imu.synthetic import ScriptedStream
from tests.support import actor_pids

pytestmark = pytest.mark.slow


def test_a_second_process_publishing_as_sensor_is_no_gap_and_raises_an_alert_naming_both_pids(
        supervisor_factory, collector_factory, player_factory, store_copy):
    sup = supervisor_factory(f"""
[actors.monitor]
settings = {{ interval_s = 0.5 }}
[actors.sensor]
heartbeat_s = 0.5
settings = {{ source = "synthetic", rate_hz = 100.0, batch_s = 0.05 }}
[actors.gesture]
heartbeat_s = 0.5
settings = {{ store = {{ path = "{store_copy}", seed_path = "" }} }}
""")
    status = sup.wait_running("monitor", "sensor", "gesture")
    sensor_pid = actor_pids(status)["sensor"]
    out = collector_factory(sup, ["monitor.alert", "sys.heartbeat"])

    def gesture_heartbeat(predicate, what, after_ns=0):
        return out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "gesture"
                            and m.header.ts > after_ns and predicate(m.body), what=what)

    gesture_heartbeat(lambda b: b["extra"].get("streams") == 1, "the sensor's stream")
    # The outside publisher: its own process-side Publisher, the actor's name, its own sequence.
    stream = ScriptedStream(["circle", "shake"] * 20, seed=5, t0=5000.0)
    player = player_factory(sup.frontend, out.ctx, stream, speed=1.0, batch_s=0.05, src="sensor").start()
    raised = out.wait_for(lambda m: m.topic == "monitor.alert" and m.body["metric"] == "bus.duplicate_sender"
                          and m.body["state"] == "raised", what="the duplicate-sender alert")
    alert = raised.body
    assert alert["actor"] == "sensor"
    assert str(sensor_pid) in alert["message"] and str(os.getpid()) in alert["message"], alert["message"]
    hb = gesture_heartbeat(lambda b: True, "a heartbeat after the alert", after_ns=raised.header.ts + 10**9).body
    assert hb["extra"]["streams"] == 2 and hb["counters"]["gaps"] == 0, (hb["extra"], hb["counters"])
    assert {p for d in hb["duplicates"] for p in d["pids"]} == {sensor_pid, os.getpid()}, hb["duplicates"]
    player.stop()
    out.wait_for(lambda m: m.topic == "monitor.alert" and m.body["metric"] == "bus.duplicate_sender"
                 and m.body["state"] == "cleared", what="the alert cleared once the outside publisher stopped")
    assert gesture_heartbeat(lambda b: True, "a later heartbeat").body["counters"]["gaps"] == 0
