"""The supervisor removes shared-memory segments and direct-link endpoints: an exited actor's at once, dead
sessions' at start."""

from __future__ import annotations

import os
import signal
import subprocess

import numpy as np
import pytest
import zmq

from bus import direct, shm
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


def _endpoints_of(folder, pid: int) -> list[str]:
    return [n for n in direct.endpoints(folder) if direct.owner_pid(n) == pid]


def test_segments_of_a_killed_actor_and_of_dead_sessions_are_removed(supervisor_factory, ipc_dir):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = shm.SHM_DIR / f"sensorium-{dead.pid}-dead-0"
    stale.write_bytes(b"x")
    stale.chmod(0o600)
    folder = direct.folder_for(f"ipc://{ipc_dir}/pub.sock")  # the direct-link folder of the bus below
    folder.mkdir(mode=0o700)
    stale_endpoint = folder / f"{dead.pid}-0.pub"
    stale_endpoint.write_bytes(b"")

    sup = supervisor_factory(CAMERA)
    assert direct.folder_for(sup.frontend) == folder
    status = sup.wait_running("camera@c")
    assert not stale.exists(), "the sweep at start left a dead process's segment"
    assert not stale_endpoint.exists(), "the sweep at start left a dead process's direct endpoint"

    ctx = zmq.Context.instance()
    sub = Subscriber(ctx, sup.backend, ["camera.frame"], shm=True)
    linked = Subscriber(ctx, None, ["camera.frame"], direct_dir=folder)  # no broker: straight from the camera
    try:
        assert sub.wait_subscribed(sup.frontend, WAIT_S)
        for _ in range(3):  # kill -9 while frames go through shared memory; each time the segment goes
            pid = actor_pids(status)["camera@c"]
            for reader in (sub, linked):
                msg = wait_until(lambda: (m := reader.recv(200)) is not None and pid_of_iid(m.header.iid) == pid
                                 and m, what=f"a frame of pid {pid} through shared memory")
                assert msg.body["image"].shape == (480, 640, 3) and msg.body["image"].dtype == np.uint8
            assert _of(pid), "the camera made no segment for a local subscriber"
            assert _endpoints_of(folder, pid), "the camera listens for no direct subscriber"
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _of(pid), what=f"the segment of killed pid {pid} removed")
            wait_until(lambda: not _endpoints_of(folder, pid), what=f"the direct endpoint of killed pid {pid} removed")
            wait_until(lambda: actor_pids(sup.status()).get("camera@c") not in (None, pid), what="a restart")
            status = sup.wait_running("camera@c")
        assert sub.stats.malformed == 0 and linked.stats.malformed == 0
    finally:
        sub.close()
        linked.close()
    pid = actor_pids(status)["camera@c"]
    assert sup.terminate() == 0
    assert not _of(pid), "a camera stopped cleanly left its segment"
    assert not _endpoints_of(folder, pid), "a camera stopped cleanly left its direct endpoint"
