"""The console's WebSocket API against a real supervisor, console and actors (docs/api.md).

One running pipeline for the module (console, monitor, probe@echo), plus a TLS console and a refused one;
~15-30 s on the shared 2-core machine.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Iterator

import pytest
import zmq

pytest.importorskip("aiohttp")
pytest.importorskip("websockets")

from actors.lib.modelstore import ModelStore  # noqa: E402
from bus.pubsub import Publisher  # noqa: E402
from tests.support import wait_until  # noqa: E402
from tests.actors.console.support import Client, Console, running_console  # noqa: E402

pytestmark = pytest.mark.slow

ACTORS = """
[actors.monitor]
settings = { interval_s = 0.5, prometheus_port = 0 }
[actors."probe@echo"]
settings = { echo = ["test."] }
"""


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    yield from running_console(ACTORS, "monitor", "probe@echo")


@pytest.fixture
def client(console: Console) -> Iterator[Client]:
    c = Client(console.ws_url)
    yield c
    c.close()


def test_info_and_actors(client: Client, console: Console) -> None:
    wait_until(lambda: f'"url": "{console.url}"' in console.sup.output(), 30, "the console's address on the "
               "supervisor's output")
    info = client.ok("info")
    assert info["loopback"] and not info["token_required"] and "models.promote" in info["destructive"]
    rows = {a["name"]: a for a in client.ok("actors")["actors"]}
    assert {"console", "monitor", "probe@echo"} <= set(rows)
    assert rows["probe@echo"]["state"] == "running" and rows["probe@echo"]["restarts"] == 0


def test_origin_and_host_are_checked(console: Console) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        Client(console.ws_url, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        Client(console.ws_url, origin=f"http://127.0.0.1:{console.port + 1}")  # another local page
    same = Client(console.ws_url, origin=f"http://127.0.0.1:{console.port}")
    assert same.ok("info")["loopback"]
    same.close()
    # DNS rebinding: a page of another name that resolves to 127.0.0.1 sends its own Host.
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
    conn.putrequest("GET", "/ws", skip_host=True)
    for key, value in {"Host": f"evil.example:{console.port}", "Upgrade": "websocket", "Connection": "Upgrade",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}.items():
        conn.putheader(key, value)
    conn.endheaders()
    assert conn.getresponse().status == 403
    conn.close()


def test_bad_input_gets_errors_and_the_connection_goes_on(client: Client, console: Console) -> None:
    client.send_raw("{not json")
    assert client.reply(None)["error"]["code"] == "bad_json"
    client.send_raw("[1, 2]")
    assert client.reply(None)["error"]["code"] == "bad_request"
    client.send_raw(json.dumps({"id": "x", "cmd": "no.such"}))
    assert client.reply("x")["error"]["code"] == "unknown_command"
    assert client.call("subscribe", topic=5)["error"]["code"] == "bad_args"
    assert client.call("subscribe")["error"]["code"] == "bad_args"
    assert client.call("subscribe", topic="a.b", color="red")["error"]["code"] == "bad_args"
    assert client.call("subscribe", topic="bad topic!")["error"]["code"] == "bad_args"
    assert client.call("models.cleanup", console.token, keep=True)["error"]["code"] == "bad_args"
    client.send_raw(json.dumps({"id": "big", "cmd": "info", "args": {}, "pad": "x" * 70_000}))
    assert client.reply("big")["error"]["code"] == "too_large"
    client.send_raw(b"\x00\x01")
    assert client.reply(None)["error"]["code"] == "bad_request"
    assert client.call("unsubscribe", topic="never.subscribed")["error"]["code"] == "bad_args"
    # Too fast: a burst far over the budget is partly refused, nothing else happens.
    for i in range(300):
        client.send_raw(json.dumps({"id": f"f{i}", "cmd": "info"}))
    codes = [client.reply(f"f{i}").get("error", {}).get("code") for i in range(300)]
    assert codes.count("rate_limited") > 50 and codes.count(None) >= 50
    # Still connected and answering, once the budget refills.
    wait_until(lambda: "error" not in client.call("info"), 30, "the request budget to refill")


def test_subscribe_gets_the_latest_value_at_most_max_hz(client: Client, console: Console) -> None:
    assert client.ok("subscribe", topic="test.burst", max_hz=2)["max_hz"] == 2
    pub = Publisher(zmq.Context.instance(), console.sup.frontend, "burst", linger_ms=1000)
    try:
        assert pub.wait_for_subscriber("test.burst", 30)
        for n in range(500):
            pub.publish("test.burst", {"n": n})
        last = client.wait_event(lambda e: e.get("topic") == "test.burst" and e["body"]["n"] == 499, 30,
                                 "the latest value of test.burst")
    finally:
        pub.close()
    got = [e["body"]["n"] for e in client.events if e.get("topic") == "test.burst"]
    assert last["src"] == "burst" and len(got) <= 5, got  # latest values, not 500 messages
    client.ok("unsubscribe", topic="test.burst")


def test_publish_to_allowed_prefixes_only(client: Client) -> None:
    client.ok("subscribe", topic="probe.echo")
    seq = client.ok("publish", topic="test.hello", body={"n": 7})["seq"]
    assert seq >= 0
    echo = client.wait_event(lambda e: e.get("topic") == "probe.echo", 30, "the probe's echo")
    assert echo["body"]["body"]["n"] == 7 if "body" in echo["body"] else echo["body"]
    r = client.call("publish", topic="ctl.monitor", body={"cmd": "stop"})
    assert r["error"]["code"] == "forbidden_topic"
    assert client.call("publish", topic="test.x", body=[1])["error"]["code"] == "bad_args"


def test_ctl_commands_and_replies(client: Client, console: Console) -> None:
    reply = client.ok("ctl", actor="probe@echo", command="ping")
    assert reply == {"actor": "probe@echo", "cmd": "ping", "ok": True, "result": "pong", "error": ""}
    stats = client.ok("ctl", actor="probe@echo", command="stats")
    assert stats["ok"] and stats["result"]["state"] == "ready"
    bad = client.ok("ctl", actor="probe@echo", command="fly")
    assert not bad["ok"] and "unknown command" in bad["error"]
    assert client.call("ctl", actor="nobody", command="ping")["error"]["code"] == "no_actor"
    assert client.call("ctl", actor="probe@echo", command="stop")["error"]["code"] == "unauthorized"
    assert client.call("ctl", actor="probe@echo", command="ping", timeout_s=500)["error"]["code"] == "bad_args"


def test_supervisor_commands(client: Client, console: Console) -> None:
    status = client.ok("supervisor", command="status")
    assert {a["name"] for a in status["actors"]} >= {"console", "probe@echo"}
    client.ok("subscribe", topic="sys.actor")
    pid = console.sup.actor("probe@echo")["pid"]
    done = client.ok("supervisor", command="restart", actor="probe@echo")
    assert done["running"] and done["actor"]["pid"] != pid
    client.wait_event(lambda e: e.get("topic") == "sys.actor" and e["body"]["actor"] == "probe@echo"
                      and e["body"]["event"] == "ready", 30, "probe@echo ready again")
    assert client.call("supervisor", command="stop", actor="probe@echo")["error"]["code"] == "unauthorized"
    assert console.sup.actor("probe@echo")["state"] == "running"
    assert client.ok("supervisor", console.token, command="stop", actor="probe@echo")["ok"]
    assert console.sup.actor("probe@echo")["state"] == "stopped"
    assert client.ok("supervisor", command="start", actor="probe@echo")["running"]
    assert client.call("supervisor", command="restart", actor="ghost")["error"]["code"] == "refused"
    assert client.call("supervisor", command="explode", actor="probe@echo")["error"]["code"] == "bad_args"
    assert client.call("supervisor", command="stop", actor="console", token=console.token)["error"]["code"] == "refused"
    assert client.call("auth", token="wrong")["error"]["code"] == "unauthorized"


def user_store(console: Console) -> ModelStore:
    return ModelStore.layered(user=console.data / "sensorium" / "models")


def test_models_promote_rollback_cleanup(client: Client, console: Console) -> None:
    store = user_store(console)
    shipped = store.read_verified("circle", "1")
    reg = store.add_head("circle", shipped, backbone="1", metrics={"f1": 0.5}, active_f1=0.998, notes="test")
    assert not reg.promoted and reg.version == "u1"
    models = {m["name"]: m for m in client.ok("models.list")["models"]}
    assert models["circle"]["active"] == "1"
    assert [v["version"] for v in models["circle"]["versions"]] == ["1", "u1"]
    assert models["circle"]["versions"][0]["f1"] == pytest.approx(0.998, abs=1e-3)
    before = store.registry.path.read_bytes()
    assert client.call("models.promote", signal="circle", version="u1")["error"]["code"] == "unauthorized"
    assert client.call("models.promote", console.token, signal="circle", version="u9")["error"]["code"] == "refused"
    assert client.call("models.promote", console.token, signal="nope", version="1")["error"]["code"] == "refused"
    assert store.registry.path.read_bytes() == before  # refused: nothing written
    done = client.ok("models.promote", console.token, signal="circle", version="u1")
    assert done["changed"] and store.active("circle") == "u1"
    assert client.ok("models.history", signal="circle")["active"] == "u1"
    back = client.ok("models.rollback", signal="circle")  # the token is remembered for the connection
    assert back["version"] == "1" and store.active("circle") == "1"
    assert client.call("models.rollback", signal="circle")["error"]["code"] == "refused"
    assert client.ok("models.cleanup", keep=1)["removed"] == []
    fresh = Client(console.ws_url)
    assert fresh.call("models.cleanup", keep=1)["error"]["code"] == "unauthorized"
    fresh.close()


def test_jobs_and_gestures_refuse_bad_input(client: Client, console: Console) -> None:
    assert client.ok("jobs.list") == []
    r = client.call("models.train", signal="circle", data=str(console.folder / "missing"))
    assert r["error"]["code"] == "refused" and "does not exist" in r["error"]["message"]
    assert client.call("models.train", signal="circle", data="/", epochs=0)["error"]["code"] == "bad_args"
    assert client.call("jobs.get", job="nope")["error"]["code"] == "refused"
    gestures = client.ok("gestures.list")
    assert gestures["gestures"] and all("accuracy" in g for g in gestures["gestures"])
    assert client.call("record.start", name="Bad Name!")["error"]["code"] == "refused"
    assert client.call("record.start", name="wave", target=0)["error"]["code"] == "refused"
    assert client.call("record.cancel")["error"]["code"] == "refused"
    assert client.call("gestures.delete", name="circle_cw")["error"]["code"] == "unauthorized"
    assert client.call("gestures.delete", console.token, name="no_such")["error"]["code"] == "refused"
    exported = client.ok("gestures.export")
    assert exported["gestures"] == len(gestures["gestures"])
    assert client.ok("practice.history") == {"attempts": [], "by_gesture": {}}
    assert client.ok("alerts") == [] or isinstance(client.ok("alerts"), list)
    time.sleep(0)  # noqa: the module's last request: the connection is still good
    assert client.ok("info")


def test_off_loopback_without_tls_is_refused_at_start(supervisor_factory, ipc_dir) -> None:
    from actors.console import check_address
    from actors.console.settings import ConsoleSettings

    checks = check_address("console", ConsoleSettings(host="0.0.0.0", port=0))
    assert [c.status for c in checks] == ["fail"] and "tls_cert" in checks[0].detail
    sup = supervisor_factory('[actors.console]\nrestart = "temporary"\nsettings = { host = "0.0.0.0", port = 0 }\n')
    log = ipc_dir / "logs" / "console.log"
    wait_until(lambda: log.exists() and "serves other machines only over TLS" in log.read_text(), 60,
               "the console's refusal in its log")
    wait_until(lambda: sup.actor("console")["state"] in ("exited", "failed", "stopped"), 60, "the console to end")


def test_tls_serves_https_and_wss(tmp_path) -> None:
    import shutil
    import ssl
    import subprocess
    import urllib.request

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    for console in running_console("", console_settings=f', tls_cert = "{cert}", tls_key = "{key}"'):
        trust = ssl.create_default_context(cafile=str(cert))
        page = urllib.request.urlopen(f"https://127.0.0.1:{console.port}/", context=trust, timeout=30).read()
        assert b"<title>Sensorium console</title>" in page
        import asyncio

        import aiohttp

        async def info_over_wss() -> dict:
            # aiohttp's client: every step bounded by one timeout (a stuck TLS handshake fails, never hangs).
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.ws_connect(f"wss://127.0.0.1:{console.port}/ws", ssl=trust) as ws:
                    await ws.send_str(json.dumps({"id": 1, "cmd": "info"}))
                    return json.loads((await ws.receive(timeout=30)).data)["result"]

        info = asyncio.run(info_over_wss())
        assert info["url"].startswith("https://") and info["loopback"]
        with pytest.raises(Exception):  # plain http to a TLS port is no page
            urllib.request.urlopen(f"http://127.0.0.1:{console.port}/", timeout=10).read()


def test_a_client_that_does_not_read_holds_back_nothing(console: Console) -> None:
    from websockets.sync.client import connect

    stuck = connect(console.ws_url, max_queue=1, open_timeout=20, close_timeout=1, legacy=True)
    stuck.send(json.dumps({"id": 1, "cmd": "subscribe", "args": {"topic": "test.flood", "max_hz": 20}}))
    other = Client(console.ws_url)
    other.ok("subscribe", topic="test.flood", max_hz=20)
    pub = Publisher(zmq.Context.instance(), console.sup.frontend, "flood", linger_ms=1000)
    try:
        assert pub.wait_for_subscriber("test.flood", 30)
        pad = "x" * 60_000
        for n in range(300):  # ~18 MB the stuck client never reads
            pub.publish("test.flood", {"n": n, "pad": pad})
        pub.publish("test.flood", {"n": "last", "pad": ""})
        other.wait_event(lambda e: e.get("topic") == "test.flood" and e["body"]["n"] == "last", 60,
                         "the last flood message at the reading client")
        assert other.ok("ctl", actor="probe@echo", command="ping")["result"] == "pong"
        console_row = {a["name"]: a for a in other.ok("actors")["actors"]}["console"]
        assert console_row["state"] == "running" and console_row["heard_s_ago"] < 5
    finally:
        pub.close()
        stuck.close()
        other.close()
