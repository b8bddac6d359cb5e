"""``sensorium gesture record``: samples cut from a live sensor.imu stream, a session
killed with SIGKILL resumes where it was, the result lands trained in the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import msgpack
import pytest

from actors.lib.gesture.store import GestureStore
from actors.lib.imu.synthetic import ScriptedStream
from config.storage import GuardedFile
from tests.support import ROOT, WAIT_S, clean_env, wait_until, write_config

pytestmark = pytest.mark.slow


def session_samples(path) -> int:
    try:
        return len(msgpack.unpackb(GuardedFile(path).load().payload, raw=False)["samples"])
    except (FileNotFoundError, ValueError):
        return 0


def test_recording_session_survives_kill_9_and_resumes(broker, ipc_dir, tmp_path, player_factory):
    config = write_config(ipc_dir, "")
    store_path = tmp_path / "store.gst"
    session_path = tmp_path / "sessions" / "lift.session"
    argv = [sys.executable, str(ROOT / "supervisor.py"), "-c", str(config), "gesture", "record", "lift",
            "--samples", "5", "--countdown", "0", "--timeout", "60", "--store", str(store_path)]
    first = subprocess.Popen(argv, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    stream = ScriptedStream(["lift"], seed=11, pause_s=(1.0, 1.5), t0=100.0)
    player_factory(broker.frontend, broker.ctx, stream, speed=4.0, batch_s=0.05).start()
    wait_until(lambda: session_samples(session_path) >= 2 or first.poll() is not None, what="two samples saved")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=WAIT_S)
    kept = session_samples(session_path)
    assert 2 <= kept < 5, first.stderr.read() if first.stderr else ""
    assert not store_path.exists() or "lift" not in GestureStore(store_path).load().db.gestures

    second = subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=WAIT_S * 2)
    assert second.returncode == 0, second.stderr
    assert "resuming session" in second.stderr and f"{kept}/5 samples recorded" in second.stderr
    assert f"sample {kept + 1}/5: go!" in second.stderr and "sample 1/5" not in second.stderr
    # The player's stream is generated (readings exactly 10 ms apart): record says it is no phone.
    assert "looks like the synthetic sensor" in second.stderr and "exactly 10.000 ms apart" in second.stderr
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["name"] == "lift" and summary["samples"] + summary["outliers"] == 5
    assert summary["accuracy"] is not None and summary["version"] == 1    # trained right after recording
    gesture = GestureStore(store_path).load().db.gestures["lift"]
    assert all(0.3 <= s.quality <= 1.0 and 0.3 <= s.duration_s <= 3.5 for s in gesture.samples)
    assert not session_path.exists()                                      # done: the session is gone
