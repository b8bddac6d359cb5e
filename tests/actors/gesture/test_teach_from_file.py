"""``sensorium gesture add NAME --from FILE --start T --end T``: samples cut from a Sensor Logger
JSON-lines file or a Sensorium recording, as a user runs it (real processes, real files); and
``gesture delete NAME --user`` bringing the shipped samples back."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from actors.lib.gesture.store import SHIPPED, USER, GestureStore
from bus.bodies.imu import ImuBatch
from bus.recording import RecordingWriter
from tests.actors.gesture.test_cli import gesture
from tests.actors.gesture.userlike import user_stream
from tests.support import received

pytestmark = pytest.mark.slow

BASE_NS = 1_700_000_000_000_000_000
"""Sensor Logger times are Unix nanoseconds."""


def sensor_logger_file(path, stream, seconds: float) -> float:
    """``seconds`` of ``stream`` as Sensor Logger entries (accelerometer and gyroscope apart, each with
    clock jitter, plus gravity entries and one bad line); returns the stream time of the first reading."""
    t, acc, gyro = stream.read_until(stream.t0 + seconds)
    rng = np.random.default_rng(0)
    acc_ns = BASE_NS + np.round((t - t[0]) * 1e9 + rng.normal(0, 2e5, len(t))).astype(np.int64)
    gyro_ns = acc_ns + 3_000_000 + rng.integers(-100_000, 100_000, len(t))
    lines = []
    for i in range(len(t)):
        lines.append({"name": "accelerometer", "time": int(acc_ns[i]),
                      "values": dict(zip("xyz", map(float, acc[i])))})
        lines.append({"name": "gyroscope", "time": int(gyro_ns[i]), "values": dict(zip("xyz", map(float, gyro[i])))})
        if i % 10 == 0:
            lines.append({"name": "gravity", "time": int(acc_ns[i]), "values": {"x": 0.0, "y": 0.0, "z": 9.81}})
    text = [json.dumps(entry) for entry in lines]
    text.insert(50, '{"name": "accelerometer", "time": "soon"}')
    path.write_text("\n".join(text) + "\n")
    return float(t[0])


def recording_file(path, stream, seconds: float, source: str) -> float:
    """``seconds`` of ``stream`` as sensor.imu batches of 0.1 s in a Sensorium recording."""
    writer = RecordingWriter(path, fsync=False)
    first = None
    for k in range(int(seconds * 10)):
        t, acc, gyro = stream.read_until(stream.t0 + (k + 1) * 0.1)
        first = float(t[0]) if first is None else first
        body = ImuBatch(t=t, acc=acc, gyro=gyro, source=source).to_body()
        writer.write(received("sensor.imu", k, body, src="sensor"), time.time_ns())
    writer.close()
    return first


def test_add_from_a_sensor_logger_file_takes_precedence_and_delete_user_brings_the_shipped_back(store_copy, tmp_path):
    stream = user_stream(["wave"], seed=21, pause_s=(1.5, 2.0))
    log_file = tmp_path / "phone.jsonl"
    first = sensor_logger_file(log_file, stream, 12.0)
    waves = [e for e in stream.events if e.t_end < stream.t0 + 11.0][:3]
    assert len(waves) == 3
    store = str(store_copy)
    runs = []
    for e in waves:   # labelled loosely, 0.4 s around the motion: the segmenter cuts it like `record` would
        start, end = e.t_start - first - 0.4, e.t_end - first + 0.4
        runs.append(gesture("add", "wave", "--from", str(log_file), "--start", f"{start:.2f}", "--end", f"{end:.2f}",
                            "--store", store))
        assert runs[-1].returncode == 0, runs[-1].stderr
    assert "1 bad line(s) skipped" in runs[0].stderr and "entries of other sensors ignored" in runs[0].stderr
    assert "looks like the synthetic sensor" not in runs[0].stderr          # jittered clock: a phone
    assert "wave: your 1 sample(s) are used alongside the 10 shipped ones" in runs[0].stderr
    assert "wave: your 3 samples replace the 10 shipped ones" in runs[2].stderr
    summary = json.loads(runs[2].stdout.strip().splitlines()[-1])
    assert summary["user_samples"] == 3 and summary["superseded"] == 10 and summary["samples"] == 3
    wave = GestureStore(store_copy).load().db.gestures["wave"]
    assert [s.origin for s in wave.samples] == [USER] * 3 and all(s.source.startswith("file:phone.jsonl@")
                                                                   for s in wave.samples)
    # Cut as `record` cuts, by the segmenter: the motion (with its context), not the label around it.
    for run, e in zip(runs, waves):
        start, end = map(float, re.search(r"sample (\d+\.\d+)\.\.(\d+\.\d+) s of", run.stderr).groups())
        motion_start, motion_end = e.t_start - first, e.t_end - first
        assert motion_start - 0.25 < start < motion_start + 0.3 and motion_end - 0.4 < end < motion_end + 0.1, \
            (start, end, e)
    listed = gesture("list", "--store", store)
    assert "samples: yours (3; 10 shipped superseded)" in listed.stdout
    back = gesture("delete", "wave", "--user", "--store", store)
    assert back.returncode == 0 and "deleted your 3 sample(s) of 'wave': its 10 shipped samples are in use again" \
        in back.stderr, back.stderr
    wave = GestureStore(store_copy).load().db.gestures["wave"]
    assert all(s.origin == SHIPPED for s in wave.samples + wave.outliers) and wave.superseded == [] and wave.trained
    again = gesture("delete", "wave", "--user", "--store", store)
    assert again.returncode == 1 and "no samples of yours" in again.stderr


def test_add_from_a_recording_says_when_the_stream_is_synthetic(store_copy, tmp_path):
    stream = user_stream(["punch"], seed=5, pause_s=(1.5, 2.0), t0=300.0)
    rec = tmp_path / "session.mcap"
    first = recording_file(rec, stream, 8.0, source="synthetic")
    e = stream.events[0]
    done = gesture("add", "punch", "--from", str(rec), "--start", f"{e.t_start - first - 0.5:.2f}", "--end",
                   f"{e.t_end - first + 0.5:.2f}", "--store", str(store_copy))
    assert done.returncode == 0, done.stderr
    assert "looks like the synthetic sensor" in done.stderr and "'synthetic' source" in done.stderr
    punch = GestureStore(store_copy).load().db.gestures["punch"]
    mine = [s for s in punch.samples if s.origin == USER]
    assert punch.user_samples == 1 and len(mine) == 1 and 0.5 * (e.t_end - e.t_start) < mine[0].duration_s < 3.0


def test_add_errors_are_clear_and_change_nothing(store_copy, tmp_path):
    stream = user_stream(["lift"], seed=8, pause_s=(3.0, 3.5))
    log_file = tmp_path / "phone.jsonl"
    first = sensor_logger_file(log_file, stream, 6.0)
    before = store_copy.read_bytes()
    store = ["--store", str(store_copy)]

    def add(*args: str):
        return gesture("add", "lift", *args, *store)

    missing = add("--from", str(tmp_path / "nope.jsonl"), "--start", "1", "--end", "2")
    assert missing.returncode == 1 and "nope.jsonl: cannot read" in missing.stderr
    garbage = tmp_path / "notes.txt"
    garbage.write_text("dear diary\n")
    bad = add("--from", str(garbage), "--start", "1", "--end", "2")
    assert bad.returncode == 1 and "not a Sensor Logger JSON-lines file" in bad.stderr
    past = add("--from", str(log_file), "--start", "40", "--end", "42")
    assert past.returncode == 1 and "no IMU readings in that range" in past.stderr
    e = stream.events[0]
    rest = add("--from", str(log_file), "--start", "0.2", "--end", f"{e.t_start - first - 0.8:.2f}")
    assert rest.returncode == 1 and "no motion found inside the range" in rest.stderr
    backwards = add("--from", str(log_file), "--start", "3", "--end", "2")
    assert backwards.returncode == 1 and "--end must be after --start" in backwards.stderr
    torn = tmp_path / "torn.mcap"
    recording_file(torn, user_stream(["lift"], seed=1), 3.0, source="http")
    torn.write_bytes(torn.read_bytes()[:60])
    nothing = add("--from", str(torn), "--start", "0", "--end", "1")
    assert nothing.returncode == 1 and "no IMU readings in the file" in nothing.stderr
    assert store_copy.read_bytes() == before
