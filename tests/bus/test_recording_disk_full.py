"""A disk that really fills: recordings and recovery on a 2 MiB tmpfs.

Each test mounts its own tmpfs under its tmp folder (root only; skipped
elsewhere, saying why) and unmounts it at teardown. A ballast file takes part
of the space so that deleting it later frees a known amount.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from bus.pubsub import Publisher
from bus.recording import (ACTIVE_SUFFIX, RecordingSession, RecoveryError, ScanReport, SessionSettings, recover,
                           scan)
from tests.bus.test_record_replay import cli, start_record
from tests.support import WAIT_S, received, wait_until, write_config

DISK_BYTES = 2 << 20
BALLAST_BYTES = 1200 << 10
"""Taken before recording; freed before the recovery that must succeed (more than the recording's size)."""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs at TMP/disk, unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip(f"mounting a small tmpfs (a disk that really fills) needs root; running as uid {os.geteuid()}")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount command here to make a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES // (1 << 20)}m", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"`mount -t tmpfs -o size=2m tmpfs {disk}` failed ({done.stderr.strip() or done.returncode}): "
                    "no small disk to fill here (a container without CAP_SYS_ADMIN?)")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=False)  # a process still holds a file: detach


def ballast(disk: Path, size: int | None = BALLAST_BYTES) -> Path:
    """A file taking ``size`` bytes of the disk (None: every byte left)."""
    path = disk / "ballast"
    chunk = b"\xa5" * (64 << 10)
    with open(path, "wb", buffering=0) as f:
        written = 0
        while size is None or written < size:
            try:
                written += f.write(chunk if size is None else chunk[: size - written])
            except OSError as exc:
                if size is None and exc.errno == errno.ENOSPC:
                    break
                raise
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frame(i: int) -> object:
    return received("camera.frame", i, {"image": np.full((100, 100, 3), i % 256, np.uint8), "frame_id": i})


def test_a_session_on_a_full_disk_names_the_active_file_it_left_and_recovery_keeps_its_complete_chunks(
        small_disk):
    room = ballast(small_disk)
    active = small_disk / f"run.mcap{ACTIVE_SUFFIX}"
    session = RecordingSession(lambda: small_disk / "run.mcap",
                               SessionSettings(flush_s=0.05, fsync=False, chunk_bytes=64_000))
    for i in range(200):  # 6 MB of frames for 0.8 MB of room
        session.submit(frame(i), time.time_ns())
        time.sleep(0.002)
        if session.stats.state == "stopped":
            break
    session.close()
    st = session.stats
    assert st.state == "stopped" and st.reason.startswith("disk full"), st.reason
    stopped = [e for e in session.events() if e.event == "stopped"]
    assert stopped and stopped[0].path == str(active) and stopped[0].detail["closed"] is False

    left = st.last_file
    assert left is not None and left.path == active and not left.closed
    assert active.exists() and not (small_disk / "run.mcap").exists()
    said = left.describe()
    assert str(active) in said and "NOT closed" in said and f"sensorium info --recover {active}" in said
    assert f"at least {left.kept} of the {left.messages} message(s)" in said
    report = ScanReport(active)
    readable = len(list(scan(active, report)))
    assert 0 < left.kept <= readable <= left.messages and not report.complete

    # Recovery on the still-full disk: refused, nothing half-written left behind, the original untouched.
    before = sha256(active)
    with pytest.raises(RecoveryError) as failed:
        recover(active)
    assert failed.value.errno == errno.ENOSPC
    message = str(failed.value)
    assert str(active) in message and "untouched" in message and "removed" in message
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast", active.name]
    assert sha256(active) == before

    room.unlink()  # now there is room: the same recovery completes
    done = recover(active)
    assert done.path == small_disk / "run.mcap" and not active.exists() and done.messages == readable
    report = ScanReport(done.path)
    assert len(list(scan(done.path, report))) == readable and report.complete


def test_a_disk_full_before_the_first_byte_leaves_no_file_and_says_so(small_disk):
    ballast(small_disk, None)
    session = RecordingSession(lambda: small_disk / "run.mcap", SessionSettings(flush_s=0.05, fsync=False))
    session.submit(frame(0), time.time_ns())
    wait_until(lambda: session.stats.state == "stopped", what="the session to stop")
    session.close()
    assert session.stats.reason.startswith("disk full") and session.stats.last_file is None
    stopped = [e for e in session.events() if e.event == "stopped"]
    assert stopped and stopped[0].path == ""
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast"]  # no empty .active to trip over later


@pytest.mark.slow
def test_sensorium_record_and_info_recover_on_a_full_disk_name_the_file_they_left(broker, ipc_dir, small_disk):
    """The user's view: ``sensorium record`` stops by itself, its last line names the ``.active``
    file (not the ``.mcap`` it never wrote); ``info --recover`` on the full disk fails without
    litter, and succeeds once there is room."""
    config = write_config(ipc_dir, "")
    room = ballast(small_disk)
    file = small_disk / "run.mcap"
    active = small_disk / f"run.mcap{ACTIVE_SUFFIX}"
    rec = start_record(config, file, "camera.")
    pub = Publisher(broker.ctx, broker.frontend, "camera@test")
    assert pub.wait_for_subscriber("camera.frame", WAIT_S)
    deadline = time.monotonic() + WAIT_S
    i = 0
    while rec.poll() is None and time.monotonic() < deadline:  # until the disk is full and it stops by itself
        pub.publish("camera.frame", {"image": np.full((100, 100, 3), i % 256, np.uint8), "frame_id": i})
        i += 1
        time.sleep(0.005)
    pub.close()
    assert rec.wait(WAIT_S) == 1
    err = rec.stderr.read()
    assert "recording stopped early: disk full" in err, err
    assert f"-> {active} (NOT closed" in err and f"sensorium info --recover {active}" in err, err
    assert active.exists() and not file.exists()

    before = sha256(active)
    refused = cli(config, "info", "--recover", str(active))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert str(active) in refused.stderr and "untouched" in refused.stderr, refused.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast", active.name]  # no .recovering left
    assert sha256(active) == before

    room.unlink()
    done = cli(config, "info", "--recover", str(active))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"into {file}" in done.stderr and "closed properly" in done.stdout
    assert file.exists() and not active.exists()
