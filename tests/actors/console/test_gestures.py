"""Gestures from the API with the synthetic sensor: a recording session that is stopped and resumed, then
saved to the store; practice attempts kept across a console restart. ~20-40 s (the synthetic sensor performs a gesture every 2-4 s)."""

from __future__ import annotations

from typing import Iterator

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("websockets")

from bus import control  # noqa: E402
from tests.actors.console.support import Client, Console, running_console  # noqa: E402

pytestmark = pytest.mark.slow

ACTORS = """
[actors.sensor]
settings = { source = "synthetic", rate_hz = 100.0, batch_s = 0.05 }
[actors.gesture]
after = ["sensor"]
settings = { store = { path = "{gestures}" } }
"""


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    yield from running_console(ACTORS, "sensor", "gesture")


def test_record_stop_resume_and_save(console: Console) -> None:
    client = Client(console.ws_url)
    started = client.ok("record.start", name="api_wave", target=2, countdown_s=0)
    assert not started["resumed"] and started["samples"] == 0
    assert client.call("record.start", name="other")["error"]["code"] == "refused"  # one session at a time
    client.wait_event(lambda e: e.get("type") == "record" and e["state"] == "sample", 120, "the first sample")
    client.ok("record.cancel")
    client.wait_event(lambda e: e.get("type") == "record" and e["state"] == "cancelled", 60, "the stop")
    listed = client.ok("gestures.list")
    assert "api_wave" in listed["paused_sessions"] and "api_wave" not in {g["name"] for g in listed["gestures"]}

    resumed = client.ok("record.start", name="api_wave", target=2, countdown_s=0)
    assert resumed["resumed"] and resumed["samples"] == 1  # the auto-saved sample is still there
    done = client.wait_event(lambda e: e.get("type") == "record" and e["state"] in ("done", "failed"), 120,
                             "the session to complete")
    assert done["state"] == "done" and done["samples"] == 2, done
    listed = client.ok("gestures.list")
    row = {g["name"]: g for g in listed["gestures"]}["api_wave"]
    assert row["samples"] + row["outliers"] == 2 and listed["paused_sessions"] == []
    client.close()


def test_practice_attempts_persist(console: Console) -> None:
    client = Client(console.ws_url)
    client.ok("practice.start", gesture="wave")
    event = client.wait_event(lambda e: e.get("type") == "practice", 120, "a practice attempt")
    attempt = event["attempt"]
    assert attempt["target"] == "wave" and attempt["correct"] == (attempt["recognized"] == "wave")
    client.ok("practice.stop")
    client.close()
    control.request(console.sup.control, "restart", timeout_s=60, actor="console")
    client = Client(console.ws_url)
    history = client.ok("practice.history", gesture="wave")
    assert history["attempts"] and history["by_gesture"]["wave"][0]["attempts"] >= 1
    row = {g["name"]: g for g in client.ok("gestures.list")["gestures"]}["wave"]
    assert row["practice"]["attempts"] >= 1
    client.close()
