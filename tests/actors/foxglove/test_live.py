"""The foxglove actor under a real supervisor, watched by a real WebSocket viewer (``foxglove.sdk.v1``)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import time

import numpy as np
import pytest
import zmq

from bus.bodies.audio import Transcript
from bus.pubsub import Publisher
from tests.actors.foxglove.protobuf_decode import decode
from tests.actors.foxglove.viewer import SUBPROTOCOL, Viewer

pytest.importorskip("foxglove")
pytest.importorskip("cv2")
websockets = pytest.importorskip("websockets")

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 64, 48


def actors_toml(extra: str = "") -> str:
    return f"""
[actors.camera]
settings = {{ source = "synthetic", width = {WIDTH}, height = {HEIGHT}, max_fps = 10.0 }}
[actors.foxglove]
settings = {{ port = 0, prefixes = ["camera.", "speech.", "monitor.", "sys.actor"] {extra} }}
"""


def foxglove_port(sup, collector_factory) -> int:
    beats = collector_factory(sup, ["sys.heartbeat"])
    sup.wait_running("camera", "foxglove")
    hb = beats.wait_for(lambda m: m.header.src == "foxglove" and m.body["extra"].get("port"), what="the port")
    return hb.body["extra"]["port"]


async def keep_publishing(pub: Publisher, topic: str, body: dict) -> None:
    """A transcript every 0.2 s: a channel is advertised at its topic's first message, and a viewer gets
    what is sent after it subscribed."""
    while True:
        pub.publish(topic, body)
        await asyncio.sleep(0.2)


def test_a_viewer_decodes_the_camera_as_raw_image_and_a_transcript_as_json(supervisor_factory, collector_factory):
    sup = supervisor_factory(actors_toml())
    port = foxglove_port(sup, collector_factory)
    watch_beats = collector_factory(sup, ["sys.heartbeat"])
    pub = Publisher(zmq.Context.instance(), sup.frontend, "speech")
    transcript = Transcript(text="turn left at the lights", segments=[], language="en", segment_id=1,
                            latency_ms=80.0).to_body()

    async def watch() -> None:
        talker = asyncio.create_task(keep_publishing(pub, "speech.transcript", transcript))
        try:
            async with Viewer(f"ws://127.0.0.1:{port}") as viewer:
                assert viewer.subprotocol == SUBPROTOCOL
                await viewer.subscribe("camera.frame", "speech.transcript")
                _, payload = await viewer.next_message("camera.frame")
                name, encoding, schema = viewer.schema("camera.frame")
                assert (name, encoding, viewer.channels["camera.frame"]["encoding"]) == (
                    "foxglove.RawImage", "protobuf", "protobuf")
                image = decode(name, schema, payload)
                assert (image.width, image.height, image.encoding) == (WIDTH, HEIGHT, "bgr8")
                pixels = np.frombuffer(image.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
                assert pixels.std() > 1.0  # a synthetic scene, not a blank frame

                _, payload = await viewer.next_message("speech.transcript")
                name, encoding, schema = viewer.schema("speech.transcript")
                assert (name, encoding) == ("sensorium.Transcript", "jsonschema")
                assert "text" in json.loads(schema)["properties"]
                body = json.loads(payload)
                assert body["text"] == "turn left at the lights" and body["_bus"]["src"] == "speech"
        finally:
            talker.cancel()

    try:
        asyncio.run(watch())
    except AssertionError as exc:
        beats = [m.body["extra"] for m in list(watch_beats.messages) if m.header.src == "foxglove"]
        raise AssertionError(f"{exc}; the foxglove actor's last heartbeat: {beats[-1:]}; "
                             f"camera: {sup.actor('camera')}") from None
    finally:
        pub.close()


def test_off_loopback_without_tls_and_token_is_refused_at_start(supervisor_factory, collector_factory):
    sup = supervisor_factory(actors_toml(', host = "0.0.0.0"'))
    done = sup.cli("validate")
    assert done.returncode != 0 and "refusing to listen on 0.0.0.0" in done.stdout + done.stderr


@pytest.fixture
def token_and_cert(tmp_path):
    token = secrets.token_urlsafe(24)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return token, token_file, cert, key


def test_with_a_token_only_a_viewer_that_has_it_gets_in_over_tls(supervisor_factory, collector_factory,
                                                                 token_and_cert):
    import ssl

    token, token_file, cert, key = token_and_cert
    sup = supervisor_factory(actors_toml(f', token_file = "{token_file}", tls_cert = "{cert}", tls_key = "{key}"'))
    port = foxglove_port(sup, collector_factory)
    tls = ssl.create_default_context(cafile=str(cert))

    async def attempts() -> None:
        for url in (f"wss://127.0.0.1:{port}", f"wss://127.0.0.1:{port}/?token=wrong{token}"):
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with Viewer(url, ssl=tls):
                    pass
            assert refused.value.response.status_code == 401
        async with Viewer(f"wss://127.0.0.1:{port}/?token={token}", ssl=tls) as viewer:
            await viewer.subscribe("camera.frame")
            _, payload = await viewer.next_message("camera.frame")
            assert decode(*viewer.schema("camera.frame")[::2], payload).width == WIDTH

    asyncio.run(attempts())
    assert os.stat(token_file).st_mode & 0o077 == 0


def test_services_and_client_publishing_only_as_configured(supervisor_factory, collector_factory, tmp_path):
    token = secrets.token_urlsafe(24)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    sup = supervisor_factory(actors_toml(f', services = ["ping", "stop"], client_publish = ["test."], '
                                         f'token_file = "{token_file}"'))
    port = foxglove_port(sup, collector_factory)
    bus = collector_factory(sup, ["test.", "ctl."])

    async def use() -> None:
        async with Viewer(f"ws://127.0.0.1:{port}/?token={token}") as viewer:
            ok, reply = await viewer.call("ctl/ping", {"actor": "camera"}, call_id=1)
            assert ok and json.loads(reply) == {"actor": "camera", "cmd": "ping", "ok": True, "result": "pong",
                                                "error": ""}
            ok, why = await viewer.call("ctl/stop", {"actor": "camera"}, call_id=2)  # no token in the request
            assert not ok and "token" in why
            assert "ctl/status" not in viewer.services
            await viewer.advertise(1, "test.from_viewer")
            await viewer.advertise(2, "ctl.camera")  # not configured: refused
            await viewer.publish(2, {"cmd": "stop"})
            await viewer.publish(1, {"n": 7})
            bus.wait_for(lambda m: m.topic == "test.from_viewer", what="the viewer's message")

    asyncio.run(use())
    assert [m.body for m in bus.messages if m.topic == "test.from_viewer"] == [{"n": 7}]
    assert not [m for m in bus.messages if m.topic == "ctl.camera" and m.body.get("cmd") == "stop"]
    assert sup.actor("camera")["state"] == "running"


def test_destructive_services_and_control_topics_need_the_token_in_the_settings():
    from pydantic import ValidationError

    from actors.foxglove.settings import FoxgloveSettings

    with pytest.raises(ValidationError, match="token_file"):
        FoxgloveSettings(services=["ping", "unload_head"])
    with pytest.raises(ValidationError, match="control"):
        FoxgloveSettings(client_publish=["ctl."])
    assert FoxgloveSettings(services=["ping", "stats"]).services == ["ping", "stats"]


def test_a_slow_viewer_gets_the_newest_frame_not_a_backlog_and_the_bus_does_not_wait(supervisor_factory,
                                                                                    collector_factory):
    # 320x240 frames (230 kB) at 20/s to a viewer that reads 4 a second: without the newest-only relay it would
    # fall further behind every second (the SDK's queue alone holds 64 messages: 16 s of this viewer's reading).
    # The viewer's own buffers are kept small (a 64 kB socket buffer, a one-message queue) so that what it
    # measures is what the server side holds back.
    sup = supervisor_factory(actors_toml().replace(f"width = {WIDTH}, height = {HEIGHT}, max_fps = 10.0",
                                                   "width = 320, height = 240, max_fps = 20.0"))
    port = foxglove_port(sup, collector_factory)
    frames = collector_factory(sup, ["camera.frame", "sys.heartbeat"])

    async def watch_slowly() -> list[float]:
        async with Viewer(f"ws://127.0.0.1:{port}", read_delay_s=0.25, rcvbuf=64 * 1024,
                          max_queue=1) as viewer:
            await viewer.subscribe("camera.frame")
            await viewer.next_message("camera.frame")
            start = viewer.counts["camera.frame"]
            await viewer.wait(lambda: viewer.counts["camera.frame"] >= start + 24, 60.0, "24 more frames")
            return [(arrival - log_time) / 1e9 for arrival, log_time in list(viewer.arrival_ns["camera.frame"])[-8:]]

    first = len(frames.messages)
    t0 = time.monotonic()
    late_s = asyncio.run(watch_slowly())
    elapsed = time.monotonic() - t0
    assert max(late_s) < 3.0, f"the slow viewer got frames {late_s} s old"
    hb = frames.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "foxglove"
                         and m.body["extra"]["replaced_for_slow_viewers"] > 0, after=first,
                         what="frames replaced for the slow viewer").body
    assert hb["extra"]["logged"] > 0
    # The camera kept its pace while the viewer lagged: the bus did not wait for the viewer.
    published = [m for m in frames.messages[first:] if m.topic == "camera.frame"]
    assert len(published) > 0.5 * 20 * elapsed, (len(published), elapsed)
