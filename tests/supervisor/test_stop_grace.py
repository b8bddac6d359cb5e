"""The grace rule: on Ctrl-C every shipped actor stops within its grace period (no SIGTERM, no SIGKILL).

Runs the embedded default pipeline (every model kind: detector, speech,
audio_events...) plus the recorder, under a real supervisor, sends SIGINT
and reads the supervisor's ``actor_transition`` lines. How long the stop
takes is bench/stop.py's business, not this test's. Costs ~20-60 s (model loads).
"""

from __future__ import annotations

import signal

import pytest

from bus import control
from tests.support import WAIT_S, json_lines, wait_until

pytestmark = pytest.mark.slow


def status_or_none(sup):
    try:
        return sup.status()
    except control.ControlError:
        return None


def test_every_shipped_actor_stops_within_its_grace_period(supervisor_factory, ipc_dir):
    sup = supervisor_factory("", env={  # the default pipeline, not only the (no) actors of the test's file
        "SENSORIUM__REPLACE_DEFAULT_ACTORS": "false",
        "HOME": str(ipc_dir),  # the gesture store: a fresh copy here, not the user's
        "SENSORIUM__ACTORS__MONITOR__SETTINGS__PROMETHEUS_PORT": "0",
        "SENSORIUM__ACTORS__CONSOLE__SETTINGS__PORT": "0",  # any free port: 8080 may be taken
        "SENSORIUM__ACTORS__RECORDER__ENABLED": "true"})
    actors = wait_until(lambda: status_or_none(sup), what="the control socket")["actors"]
    # Disabled actors (foxglove) are "stopped" from the start and stay so; every other one must run.
    names = [a["name"] for a in actors if a["state"] != "stopped"]
    assert {"detector", "speech", "audio_events", "recorder", "intent", "console"} <= set(names)
    sup.wait_running(*names, timeout_s=4 * WAIT_S)
    sup.proc.send_signal(signal.SIGINT)
    assert sup.proc.wait(timeout=WAIT_S) == 0
    moves = [x for x in json_lines((sup.folder / "logs" / "supervisor.log").read_text())
             if x["event"] == "actor_transition"]
    asked = {m["name"]: m["ts"] for m in moves if m["transition"] == "request_stop"}
    stopped = {m["name"] for m in moves if m["transition"] == "stopped"}
    assert stopped == set(names), f"not stopped: {set(names) - stopped}"
    slow = [f"{m['name']} ({m['transition']}: {m['reason']}; asked at {asked.get(m['name'])}, "
            f"escalated at {m['ts']})" for m in moves if m["transition"] in ("escalate_term", "escalate_kill")]
    assert not slow, f"actors that missed their grace period: {'; '.join(slow)}"
