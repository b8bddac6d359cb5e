"""The supervisor removes shared-memory segments: an exited actor's at once, dead sessions' at start."""

from __future__ import annotations

import os
import signal
import subprocess

import numpy as np
import pytest
import zmq

from bus import shm
from bus.pubsub import Subscriber
from bus.senders import pid_of_iid
from tests.support import WAIT_S, actor_pids, wait_until

pytestmark = pytest.mark.slow

CAMERA = """
[actors."camera@c"]
backoff = { initial_s = 0.2, jitter = 0.0 }
intensity = { max_restarts = 20, window_s = 60.0, recovery_s = 2.0 }
settings = { width = 640, height = 480, max_fps = 30.0, min_fps = 30.0 }
"""


def _of(pid: int) -> list[str]:
    return [n for n in shm.segments() if shm.owner_pid(n) == pid]


def test_segments_of_a_killed_actor_and_of_dead_sessions_are_removed(supervisor_factory):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = shm.SHM_DIR / f"sensorium-{dead.pid}-dead-0"
    stale.write_bytes(b"x")
    stale.chmod(0o600)

    sup = supervisor_factory(CAMERA)
    status = sup.wait_running("camera@c")
    assert not stale.exists(), "the sweep at start left a dead process's segment"

    sub = Subscriber(zmq.Context.instance(), sup.backend, ["camera.frame"], shm=True)
    try:
        assert sub.wait_subscribed(sup.frontend, WAIT_S)
        for _ in range(3):  # kill -9 while frames go through shared memory; each time the segment goes
            pid = actor_pids(status)["camera@c"]
            msg = wait_until(lambda: (m := sub.recv(200)) is not None and pid_of_iid(m.header.iid) == pid and m,
                             what=f"a frame of pid {pid} through shared memory")
            assert msg.body["image"].shape == (480, 640, 3) and msg.body["image"].dtype == np.uint8
            assert _of(pid), "the camera made no segment for a local subscriber"
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _of(pid), what=f"the segment of killed pid {pid} removed")
            wait_until(lambda: actor_pids(sup.status()).get("camera@c") not in (None, pid), what="a restart")
            status = sup.wait_running("camera@c")
        assert sub.stats.malformed == 0
    finally:
        sub.close()
    pid = actor_pids(status)["camera@c"]
    assert sup.terminate() == 0
    assert not _of(pid), "a camera stopped cleanly left its segment"
