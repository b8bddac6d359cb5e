"""Training a head from the console: a ``sensorium models train`` job with live progress that survives a
console restart, and the promotion decision at the end. ~10-40 s (torch import, 8 epochs of a head on
40 images on a 2-core machine)."""

from __future__ import annotations

import json
from typing import Iterator

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("websockets")
pytest.importorskip("torch")

from actors.lib.modelstore import ModelStore  # noqa: E402
from actors.lib.scenes import write_dataset  # noqa: E402
from bus import control  # noqa: E402
from tests.actors.console.support import Client, Console, running_console  # noqa: E402
from tests.support import wait_until  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    yield from running_console("")


def test_a_training_job_reports_progress_and_survives_a_console_restart(console: Console) -> None:
    data = console.folder / "crosses"
    write_dataset(data, 40, ["circle", "cross"], seed=3)
    client = Client(console.ws_url)
    job = client.ok("models.train", signal="cross", data=str(data), epochs=8)
    assert job["state"] == "running" and job["signal"] == "cross"
    again = client.call("models.train", signal="cross", data=str(data))
    assert again["error"]["code"] == "refused" and "already running" in again["error"]["message"]
    progress = client.wait_event(lambda e: e.get("type") == "job" and e["job"]["progress"].get("epoch"), 180,
                                 "a progress event")
    assert progress["job"]["progress"]["epochs"] == 8 and progress["job"]["curve"]
    client.close()

    # The console restarts (a closed page, a crash): the job runs on and the new console follows it.
    old_pid = console.sup.actor("console")["pid"]
    reply = control.request(console.sup.control, "restart", timeout_s=60, actor="console")
    assert reply["running"] and reply["actor"]["pid"] != old_pid
    client = Client(console.ws_url)
    listed = {j["id"]: j for j in client.ok("jobs.list")}
    assert job["id"] in listed and listed[job["id"]]["progress"].get("epoch")

    def finished() -> dict | None:
        j = client.ok("jobs.get", job=job["id"])
        return j if j["state"] != "running" else None

    done = wait_until(finished, 240, "the training job to end")
    assert done["state"] == "done", done.get("log_tail")
    assert done["result"]["version"] == "u1" and done["result"]["promoted"], done["result"]
    assert "first version: promoted itself" in done["result"]["decision"]
    assert len(done["curve"]) >= 2
    store = ModelStore.layered(user=console.data / "sensorium" / "models")
    assert store.active("cross") == "u1"
    saved = json.loads((console.data / "sensorium" / "console" / "jobs" / f"{job['id']}.json").read_text())
    assert saved["state"] == "done" and saved["result"]["version"] == "u1"
    models = {m["name"]: m for m in client.ok("models.list")["models"]}
    assert models["cross"]["versions"][-1]["curve"]["val_f1"]  # the training curve, for the page's plot
    client.close()
