"""``sensorium record`` / ``replay`` / ``info`` as real processes on a real broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from bus.envelope import Header, encode
from bus.pubsub import Publisher
from bus.recording import RecordingWriter, scan
from tests.support import ROOT, WAIT_S, clean_env, received, wait_until, write_config

pytestmark = pytest.mark.slow


def cli(config: Path, *args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "-c", str(config), *args], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=timeout)


def start_record(config: Path, file: Path, *prefixes: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "-c", str(config), "record", str(file),
                             *prefixes], cwd=ROOT, env=clean_env(), stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # "record: recording ... to FILE" once the broker holds the subscription
    if not line.startswith("record: recording"):
        proc.kill()
        raise AssertionError(line + proc.stderr.read())
    return proc


def body(i: int) -> dict:
    return {"image": np.full((32, 40, 3), i, np.uint8), "frame_id": i, "acc": np.arange(6, dtype=np.float32) * i,
            "quality": {"blur": 0.5, "ok": True}, "label": f"frame {i}"}


def test_record_then_replay_gives_identical_bodies_in_the_same_order(broker, ipc_dir, collector_factory):
    config = write_config(ipc_dir, "")
    file = ipc_dir / "run.mcap"
    rec = start_record(config, file, "camera.", "sensor.imu")
    pub = Publisher(broker.ctx, broker.frontend, "camera@test")
    assert pub.wait_for_subscriber("camera.frame", WAIT_S)
    sent = []
    for i in range(60):
        topic = "camera.frame" if i % 3 else "sensor.imu"
        pub.publish(topic, body(i), corr=f"corr-{i}")
        sent.append((topic, i))
        time.sleep(0.002)
    pub.publish("other.topic", {"x": 1})  # not recorded
    wait_until(lambda: file.with_name(file.name + ".active").stat().st_size > 60 * 3600, what="data on disk")
    time.sleep(1.5)  # the last messages reach the recorder (no event to wait on across processes)
    rec.send_signal(signal.SIGINT)
    assert rec.wait(WAIT_S) == 0, rec.stderr.read()
    assert "60 message(s)" in rec.stderr.read()

    info = cli(config, "info", str(file), "--json")
    assert info.returncode == 0, info.stderr
    import json
    summary = json.loads(info.stdout)
    assert summary["complete"] and summary["messages"] == 60 and summary["gaps"] == []
    assert summary["topics"]["camera.frame"]["count"] == 40 and summary["topics"]["sensor.imu"]["count"] == 20
    assert summary["topics"]["camera.frame"]["senders"] == ["camera@test"]

    recorded = [r.decode() for r in scan(file)]
    listener = collector_factory(broker, ["camera.", "sensor."])
    done = cli(config, "replay", str(file), "--speed", "0")
    assert done.returncode == 0, done.stderr
    assert "60 message(s) sent" in done.stderr
    listener.wait_for(lambda m: m.body.get("frame_id") == 59, what="the last replayed message")
    got = [m for m in listener.messages if m.header.src == "replay"]
    assert [(m.topic, m.body["frame_id"]) for m in got] == sent
    for m, orig in zip(got, recorded):
        expect = body(m.body["frame_id"])
        assert m.body.keys() == expect.keys()
        assert np.array_equal(m.body["image"], expect["image"]) and np.array_equal(m.body["acc"], expect["acc"])
        assert m.body["quality"] == expect["quality"] and m.body["label"] == expect["label"]
        assert m.header.ts == orig.header.ts and m.header.corr == orig.header.corr  # original timestamps kept
    assert listener.stats.gaps == 0


def _v2_frames(topic: str, seq: int) -> list[bytes]:
    frames = [bytes(f) for f in encode(topic, Header("old", seq, time.time_ns()), {"n": seq})]
    frames[1] = msgpack.packb({"v": 2, "src": "old", "seq": seq, "ts": time.time_ns()})
    return frames


def test_replay_handles_other_envelope_versions_and_unknown_topics_explicitly(broker, ipc_dir, collector_factory):
    config = write_config(ipc_dir, "")
    file = ipc_dir / "mixed.mcap"
    w = RecordingWriter(file)
    for seq in range(4):
        w.write(received("test.now", seq, {"n": seq}, "new"), time.time_ns())
        old = received("test.old", seq, {"n": seq}, "old")
        old.frames = _v2_frames("test.old", seq)
        w.write(old, time.time_ns())
    w.close()

    listener = collector_factory(broker, ["test."])
    done = cli(config, "replay", str(file), "--speed", "0")
    assert done.returncode == 0, done.stderr
    assert "4 message(s) sent" in done.stderr
    assert "skipped 4 message(s) of envelope version 2" in done.stderr
    listener.wait_for(lambda m: m.topic == "test.now" and m.body["n"] == 3)
    assert {m.topic for m in listener.messages} == {"test.now"}

    missing = cli(config, "replay", str(file), "--topics", "camera.frame")
    assert missing.returncode == 2 and "no messages on camera.frame" in missing.stderr
    assert "test.now" in missing.stderr  # names what the file has


def test_info_reports_what_a_damaged_file_lost(ipc_dir):
    config = write_config(ipc_dir, "")
    file = ipc_dir / "d.mcap"
    w = RecordingWriter(file)
    for seq in range(30):
        w.write(received("sensor.imu", seq, {"n": seq}, "imu"), time.time_ns())
        if seq % 10 == 9:
            w.flush()
    w.close()
    data = file.read_bytes()
    torn = ipc_dir / "torn.mcap.active"
    torn.write_bytes(data[: len(data) // 2])
    done = cli(config, "info", str(torn))
    assert done.returncode == 1
    assert "NOT closed" in done.stdout and "DAMAGE" in done.stdout and "file ends inside" in done.stdout
    recovered = cli(config, "info", "--recover", str(torn))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "closed properly" in recovered.stdout and "recovered from torn.mcap.active" in recovered.stdout
    assert (ipc_dir / "torn.mcap").exists() and not torn.exists()
    bad = ipc_dir / "bad.mcap"
    bad.write_bytes(b"nothing like mcap")
    done = cli(config, "info", str(bad))
    assert done.returncode == 2 and "not an MCAP file" in done.stderr
