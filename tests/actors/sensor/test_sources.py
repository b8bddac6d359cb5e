"""The sensor actor under a real supervisor: Sensor Logger pushes from a real HTTP
client, a TCP source that reconnects with backoff, and the default synthetic pipeline."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from actors.lib.imu.synthetic import GESTURES
from bus.bodies.imu import ConnectionState, ImuBatch, ImuFlag
from tests.support import wait_until

pytestmark = pytest.mark.slow

T0_NS = 1_700_000_000_000_000_000


def push(address: str, body: bytes | dict, path: str = "/data") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{address}{path}", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def sensor_logger_batch(message_id: int, first: int, n: int, *, acc=None) -> dict:
    """n readings at 100 Hz from reading ``first`` on: accelerometer and gyroscope, 2 ms apart, plus gravity."""
    payload = []
    for k in range(first, first + n):
        t = T0_NS + k * 10_000_000
        a = acc(k) if acc else {"x": 0.5, "y": -0.25, "z": 0.125}
        payload.append({"name": "accelerometer", "time": t, "values": a})
        payload.append({"name": "gyroscope", "time": t + 2_000_000, "values": {"x": 0.01 * k, "y": 0.0, "z": -0.1}})
        payload.append({"name": "gravity", "time": t, "values": {"x": 0.0, "y": 0.0, "z": 9.81}})
    return {"messageId": message_id, "sessionId": "test-session", "deviceId": "pixel-test", "payload": payload}


def test_sensor_logger_http_push_good_and_malformed(supervisor_factory, collector_factory):
    sup = supervisor_factory("""
[actors.sensor]
heartbeat_s = 0.5
settings = { source = "http", http = { port = 0 }, calibration = { enabled = false }, align_wait_s = 0.05 }
""")
    out = collector_factory(sup, ["sensor.", "sys.heartbeat"])
    sup.wait_running("sensor")
    listening = out.wait_for(lambda m: m.topic == "sensor.state" and m.body["state"] == "listening")
    address = listening.body["address"]
    assert listening.body["source"] == "http" and address.startswith("127.0.0.1:")

    status, reply = push(address, sensor_logger_batch(1, 0, 20))
    assert status == 200 and reply == {"ok": True, "readings": 40}
    out.wait_for(lambda m: m.topic == "sensor.state" and m.body["state"] == "streaming")
    batches = []

    def have(n):
        batches[:] = [ImuBatch.from_body(m.body) for m in out.messages if m.topic == "sensor.imu"]
        return sum(len(b) for b in batches) >= n

    out.wait_for(lambda m: have(20), what="20 readings on sensor.imu")
    t = np.concatenate([b.t for b in batches])
    gyro = np.concatenate([b.gyro for b in batches])
    acc = np.concatenate([b.acc for b in batches])
    np.testing.assert_allclose(t, T0_NS / 1e9 + np.arange(20) * 0.01)
    np.testing.assert_allclose(acc[0], [0.5, -0.25, 0.125])
    # Gyro is sampled 2 ms after each acc reading: interpolated back onto acc times.
    np.testing.assert_allclose(gyro[1:19, 0], 0.01 * (np.arange(1, 19) - 0.2), atol=1e-5)
    assert batches[0].device == "pixel-test" and batches[0].source == "http"

    malformed = [
        (b"{not json", "not JSON"),
        (json.dumps({"messageId": 2, "deviceId": "x"}).encode(), "no 'payload'"),
        (json.dumps({"payload": {"name": "accelerometer"}}).encode(), "expected a list"),
        (json.dumps({"payload": [{"name": "accelerometer", "time": T0_NS, "values": {"x": 1, "y": 2}}]}).encode(),
         "lacks 'z'"),
    ]
    for body, reason in malformed:
        status, reply = push(address, body)
        assert status == 400 and reason in reply["error"], (status, reply)
    assert push(address, b"{}", path="/elsewhere")[0] == 404

    # Readings that are not physical are dropped with flags; the good ones still come through.
    def odd(k):
        if k == 25:
            return {"x": 300.0, "y": 0, "z": 0}    # > 16 g
        return {"x": 0.5, "y": -0.25, "z": 0.125}

    status, _ = push(address, sensor_logger_batch(3, 20, 10, acc=odd))
    assert status == 200
    status, _ = push(address, sensor_logger_batch(4, 25, 10))      # overlaps: 5 timestamps seen already
    assert status == 200
    flagged = out.wait_for(lambda m: m.topic == "sensor.imu" and ImuFlag.ACC_RANGE.value in m.body["flags"])
    assert flagged.body["quality"] < 1.0
    out.wait_for(lambda m: m.topic == "sensor.imu" and (ImuFlag.DUPLICATE.value in m.body["flags"]
                                                      or ImuFlag.NON_MONOTONIC.value in m.body["flags"]))
    hb = out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "sensor"
                      and m.body["extra"].get("source_rejected") == 4 and m.body["extra"].get("source_pushes") == 3)
    extra = hb.body["extra"]
    assert extra["dropped"]["acc_out_of_range"] == 1 and extra["dropped"].get("duplicate_timestamp", 0) >= 1
    assert extra["readings_published"] == 20 + 9 + 5


def test_tcp_source_reconnects_with_growing_backoff(supervisor_factory, collector_factory):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]    # reserved, but not listening yet: connects are refused
    sup = supervisor_factory(f"""
[actors.sensor]
settings.source = "tcp"
settings.tcp = {{ port = {port}, connect_timeout_s = 2.0 }}
settings.reconnect = {{ initial_s = 0.2, factor = 2.0, max_s = 5.0, jitter = 0.0, reset_after_s = 60.0 }}
""")
    out = collector_factory(sup, ["sensor."])
    sup.wait_running("sensor")

    def backoffs():
        return [m.body for m in list(out.messages)
                if m.topic == "sensor.state" and m.body["state"] == ConnectionState.BACKOFF.value]

    wait_until(lambda: len(backoffs()) >= 3, what="three refused connects")
    backoffs = backoffs()
    attempts = [b["attempt"] for b in backoffs[:3]]
    assert attempts == list(range(attempts[0], attempts[0] + 3))     # one streak, counted up
    assert [b["delay_s"] for b in backoffs[:3]] == [min(0.2 * 2 ** (a - 1), 5.0) for a in attempts]
    assert "refused" in backoffs[0]["reason"].lower()

    server.listen(1)
    server.settimeout(30)
    conn, _ = server.accept()
    out.wait_for(lambda m: m.topic == "sensor.state" and m.body["state"] == "connected")
    lines = "".join(json.dumps({"t": 50.0 + k * 0.01, "acc": [0.1, 0.2, 0.3], "gyro": [0.0, 0.0, 0.5]}) + "\n"
                    for k in range(30))
    conn.sendall(lines.encode())
    out.wait_for(lambda m: m.topic == "sensor.imu" and m.body["t"][0] >= 50.0)
    conn.close()                                  # the peer goes away: back off and come back
    after_close = len(out.messages)
    out.wait_for(lambda m: m.topic == "sensor.state" and m.body["state"] == "backoff"
                 and "closed" in m.body["reason"], after=after_close)
    conn2, _ = server.accept()
    out.wait_for(lambda m: m.topic == "sensor.state" and m.body["state"] == "connected", after=after_close)
    conn2.close()
    server.close()


def test_default_pipeline_recognises_the_synthetic_gestures(supervisor_factory, collector_factory, tmp_path):
    """The sensor and gesture actors as config/default.toml runs them (store seeded from the shipped one)."""
    sup = supervisor_factory(f"""
[actors.sensor]
settings = {{ source = "synthetic", synthetic = {{ pause_s = [0.8, 1.2] }} }}
[actors.gesture]
after = ["sensor"]
settings = {{ store = {{ path = "{tmp_path}/store.gst", seed_path = "models/gestures/synthetic.gst" }} }}
""")
    out = collector_factory(sup, ["gesture.", "sensor.imu"])
    sup.wait_running("sensor", "gesture")
    first = out.wait_for(lambda m: m.topic == "gesture.recognized")
    assert first.body["name"] in GESTURES and first.body["confidence"] > 0.5
    imu = [m for m in out.messages if m.topic == "sensor.imu"]
    assert imu[-1].body["source"] == "synthetic"
    assert ImuFlag.UNCALIBRATED.value not in imu[-1].body["flags"]   # rest periods calibrated it
    assert (tmp_path / "store.gst").exists()


def test_udp_lines_and_replay_of_a_recorded_file(supervisor_factory, collector_factory, tmp_path):
    recording = tmp_path / "later" / "imu.jsonl"
    sup = supervisor_factory(f"""
[actors."sensor@udp"]
kind = "sensor"
heartbeat_s = 0.5
settings = {{ source = "udp", udp = {{ port = 0 }} }}
[actors."sensor@replay"]
kind = "sensor"
settings.source = "replay"
settings.replay = {{ path = "{recording}", speed = 5.0, loop = false }}
settings.reconnect = {{ initial_s = 0.2, factor = 1.5, max_s = 1.0, jitter = 0.0 }}
""")
    out = collector_factory(sup, ["sensor.", "sys.heartbeat"])
    sup.wait_running("sensor@udp", "sensor@replay")
    # UDP: datagrams of JSON lines, one of them broken.
    listening = out.wait_for(lambda m: m.topic == "sensor.state" and m.header.src == "sensor@udp"
                             and m.body["state"] == "listening")
    host, port = listening.body["address"].rsplit(":", 1)
    lines = [json.dumps({"t": 10.0 + k * 0.01, "acc": [0.0, 1.0, 0.0], "gyro": [0.0, 0.0, 0.1]}) for k in range(20)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto("\n".join(lines[:10] + ["{broken"]).encode(), (host, int(port)))
        udp.sendto("\n".join(lines[10:]).encode(), (host, int(port)))
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "sensor@udp"
                 and m.body["extra"]["readings_published"] == 20 and m.body["extra"].get("source_bad_lines") == 1)
    # Replay: the file does not exist yet (backoff), then appears and plays to its end.
    out.wait_for(lambda m: m.topic == "sensor.state" and m.header.src == "sensor@replay"
                 and m.body["state"] == "backoff" and "No such file" in m.body["reason"])
    recording.parent.mkdir()
    rows = [json.dumps({"name": name, "time": T0_NS + k * 10_000_000, "values": {"x": 0.1, "y": 0.2, "z": 0.3}})
            for k in range(150) for name in ("accelerometer", "gyroscope")]
    recording.write_text("\n".join(rows) + "\n")
    out.wait_for(lambda m: m.topic == "sensor.state" and m.header.src == "sensor@replay" and m.body["state"] == "ended")
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "sensor@replay"
                 and m.body["extra"]["readings_published"] == 150)
    replayed = [ImuBatch.from_body(m.body) for m in out.messages
                if m.topic == "sensor.imu" and m.header.src == "sensor@replay"]
    t = np.concatenate([b.t for b in replayed])
    np.testing.assert_allclose(t, T0_NS / 1e9 + np.arange(150) * 0.01)
    assert len(replayed) >= 2       # played over time (1.5 s at 5x: ~0.3 s), not in one lump


def test_the_http_source_off_loopback_needs_a_token_and_with_one_refuses_pushes_without_it(
        supervisor_factory, collector_factory, tmp_path):
    from actors.registry import load_config
    from config import ConfigError

    bad = tmp_path / "open.toml"
    bad.write_text('[actors.sensor]\nsettings = { source = "http", http = { host = "0.0.0.0" } }\n')
    with pytest.raises(ConfigError, match="token_file"):
        load_config(bad, environ={})

    token = "t0k3n-" + "x" * 20
    token_file = tmp_path / "push.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    sup = supervisor_factory(f"""
[actors.sensor]
settings = {{ source = "http", http = {{ port = 0, token_file = "{token_file}" }}, calibration = {{ enabled = false }} }}
""")
    out = collector_factory(sup, ["sensor.state"])
    sup.wait_running("sensor")
    address = out.wait_for(lambda m: m.topic == "sensor.state" and m.body["state"] == "listening").body["address"]
    batch = sensor_logger_batch(1, 0, 5)
    assert push(address, batch)[0] == 401
    assert push(address, batch, path="/data?token=wrong")[0] == 401
    status, reply = push(address, batch, path=f"/data?token={token}")
    assert status == 200 and reply["readings"] == 10
    data = json.dumps(batch).encode()
    req = urllib.request.Request(f"http://{address}/data", data=data, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    token_file.chmod(0o644)   # readable by others: validate names the file
    done = sup.cli("validate")
    assert done.returncode == 1 and "readable by other users" in done.stdout
