"""The console page in a real headless Chromium (Debian's ``chromium``, driven by Playwright's Python API).

The embedded default pipeline (every kind: Whisper and TensorFlow included; ports and stores moved into
a private folder) with its console; the page must list every actor, restart one, show a transcript (one
injected, so the test does not wait on Whisper hearing the demo), the camera image with boxes, promote
and roll back a model, and record a gesture with the synthetic sensor. Screenshots go under the test's
output folder (printed). ~30-120 s, most of it the model loads.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest
import zmq

pytest.importorskip("aiohttp")
CHROMIUM = os.environ.get("SENSORIUM_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it when root)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser tests drive "
                                                            "the system Chromium through it)")

from actors.lib.modelstore import ModelStore  # noqa: E402
from bus.bodies.audio import Transcript  # noqa: E402
from bus.pubsub import Publisher  # noqa: E402
from tests.actors.console.support import Console, running_console  # noqa: E402
from tests.support import Collector, wait_until  # noqa: E402

pytestmark = pytest.mark.slow
WAIT_MS = 90_000

@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    yield from running_console(None, wait_s=240)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("console-screenshots")
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def page(console: Console) -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                     headless=True, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 412, "height": 915})  # a phone screen
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(console.url)
        sync_api.expect(page.locator("#conn")).to_have_text("connected", timeout=WAIT_MS)
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
        browser.close()


def tab(page: object, name: str) -> None:
    page.click(f"nav button[data-tab={name}]")


def test_page_lists_the_pipeline_and_restarts_an_actor(page: object, console: Console, shots: Path) -> None:
    tab(page, "actors")
    names = [a["name"] for a in console.sup.status()["actors"] if a["state"] != "stopped"]  # not the disabled recorder
    assert {"camera", "detector", "speech", "audio_events", "sensor", "gesture", "console"} <= set(names)
    console.sup.wait_running(*names, timeout_s=240)
    for name in names:
        sync_api.expect(page.locator(f'#actorTable tr[data-actor="{name}"] td.state')).to_have_text(
            "running", timeout=WAIT_MS)
    sync_api.expect(page.locator('#actorTable tr[data-actor="recorder"] td.state')).to_have_text("stopped")
    page.screenshot(path=str(shots / "actors.png"), full_page=True)
    events = Collector(console.sup.frontend, console.sup.backend, ["sys.actor"])
    try:
        pid = console.sup.actor("probe@echo")["pid"]
        page.click('#actorTable tr[data-actor="probe@echo"] button.restart')
        events.wait_event("probe@echo", "stopped", timeout_s=60)
        events.wait_event("probe@echo", "ready", timeout_s=60)
        assert console.sup.actor("probe@echo")["pid"] != pid
    finally:
        events.close()
    sync_api.expect(page.locator("#message")).to_contain_text("restart probe@echo: done", timeout=WAIT_MS)


def test_live_transcript_and_camera_with_boxes(page: object, console: Console, shots: Path) -> None:
    tab(page, "live")
    pub = Publisher(zmq.Context.instance(), console.sup.frontend, "speech", linger_ms=1000)
    text = "the console shows what was said"
    try:
        assert pub.wait_for_subscriber("speech.transcript", 60)
        body = Transcript(text=text, segments=[], language="en", segment_id=1, latency_ms=12.0).to_body()

        def shown() -> bool:
            pub.publish("speech.transcript", body)
            return text in page.locator("#transcripts").inner_text()

        wait_until(shown, 60, "the transcript on the page")
    finally:
        pub.close()
    canvas = page.locator("#camera")
    wait_until(lambda: int(canvas.get_attribute("data-boxes") or 0) > 0, WAIT_MS / 1000, "boxes on the camera view")
    spread = page.evaluate("""() => { const c = document.querySelector('#camera');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let lo = 255, hi = 0;
        for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i + 1]); hi = Math.max(hi, d[i + 1]); }
        return {w: c.width, h: c.height, lo, hi}; }""")
    assert spread["w"] >= 64 and spread["hi"] - spread["lo"] > 50, spread  # a picture, not a blank canvas
    page.screenshot(path=str(shots / "live.png"), full_page=True)


def test_promote_and_rollback_from_the_page(page: object, console: Console, shots: Path) -> None:
    store = ModelStore.layered(user=console.data / "sensorium" / "models")
    reg = store.add_head("circle", store.read_verified("circle", "1"), backbone="1", metrics={"f1": 0.5},
                         active_f1=0.998, notes="browser test")
    assert reg.version == "u1" and store.active("circle") == "1"
    page.fill("#token", console.token)
    page.click("#tokenForm button")
    sync_api.expect(page.locator("#message")).to_have_text("token accepted", timeout=WAIT_MS)
    tab(page, "models")
    page.click("#refreshModels")
    row = page.locator('.model[data-model="circle"] tr[data-version="u1"] button.promote')
    sync_api.expect(row).to_be_enabled(timeout=WAIT_MS)
    row.click()
    wait_until(lambda: store.active("circle") == "u1", 60, "circle u1 active")
    sync_api.expect(page.locator('.model[data-model="circle"] .active')).to_have_text("u1", timeout=WAIT_MS)
    page.screenshot(path=str(shots / "models-promoted.png"), full_page=True)
    page.click('.model[data-model="circle"] button.rollback')
    wait_until(lambda: store.active("circle") == "1", 60, "circle back on v1")
    sync_api.expect(page.locator('.model[data-model="circle"] .active')).to_have_text("1", timeout=WAIT_MS)


def test_record_a_gesture_from_the_page(page: object, console: Console, shots: Path) -> None:
    tab(page, "gestures")
    page.fill("#recName", "page_wave")
    page.fill("#recTarget", "2")
    page.fill("#recCountdown", "1")
    page.click("#recordForm button[type=submit], #recordForm button:not([type])")
    status = page.locator("#recStatus")
    wait_until(lambda: status.get_attribute("data-state") in ("done", "failed", "paused"), 180,
               "the recording session to end")
    assert status.get_attribute("data-state") == "done", status.inner_text()
    page.click("#refreshGestures")
    sync_api.expect(page.locator('#gestureTable tr[data-gesture="page_wave"]')).to_be_visible(timeout=WAIT_MS)
    page.screenshot(path=str(shots / "gestures.png"), full_page=True)
    time.sleep(0)  # noqa: the session file is gone once the samples are in the store
    assert not list((console.data.parent).glob("**/sessions/page_wave.session"))


def test_train_a_head_from_the_page(page: object, console: Console, shots: Path) -> None:
    from actors.lib.scenes import write_dataset

    data = console.folder / "crosses"
    write_dataset(data, 40, ["circle", "cross"], seed=3)
    tab(page, "models")
    page.fill("#trainSignal", "cross")
    page.fill("#trainData", str(data))
    page.fill("#trainEpochs", "8")
    page.click("#trainForm button")
    job = page.locator(".job").first
    sync_api.expect(job).to_have_attribute("data-state", "done", timeout=240_000)
    sync_api.expect(job.locator(".decision")).to_contain_text("first version: promoted itself")
    sync_api.expect(page.locator('.model[data-model="cross"] .active')).to_have_text("u1", timeout=WAIT_MS)
    page.screenshot(path=str(shots / "models-trained.png"), full_page=True)
