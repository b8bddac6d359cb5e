"""Atomic, sealed, backed-up files: corruption is detected and recovered, a kill never tears a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.storage import CorruptFileError, GuardedFile, LockTimeout, file_lock, seal, unseal, write_atomic
from tests.support import ROOT, clean_env, wait_until


def test_seal_round_trip_and_every_kind_of_damage_is_detected(tmp_path):
    raw = seal(b"payload bytes", version=3)
    payload, header = unseal(raw)
    assert payload == b"payload bytes" and header["version"] == 3 and header["size"] == 13
    flipped = bytearray(raw)
    flipped[-1] ^= 0x01
    for bad, why in ((bytes(flipped), "sha256"), (raw[:-3], "header says"), (b"junk", "magic"),
                     (raw.split(b"\n")[0], "not terminated")):
        with pytest.raises(CorruptFileError, match=why) as info:
            unseal(bad, tmp_path / "x")
        assert info.value.path == tmp_path / "x"


def test_corrupt_file_is_quarantined_and_its_last_revision_restored(tmp_path):
    store = GuardedFile(tmp_path / "db.bin", keep=3)
    for i in range(5):
        store.save(f"v{i}".encode())
    assert len(store.backups()) == 3                      # keep=3 prunes the older ones
    assert unseal(store.backups()[-1].read_bytes())[0] == b"v4"   # the newest backup is the current revision
    assert store.load().payload == b"v4" and store.load().recovered_from is None
    data = bytearray(store.path.read_bytes())
    data[-1] ^= 0xFF                                      # a bit flip on disk
    store.path.write_bytes(bytes(data))
    loaded = store.load()
    assert loaded.payload == b"v4" and loaded.recovered_from == store.backups()[-1]   # no change lost
    assert loaded.quarantined is not None and loaded.quarantined.read_bytes() == bytes(data)
    assert "sha256" in loaded.error
    assert store.load().payload == b"v4" and store.load().recovered_from is None   # restored on disk
    assert len(store.backups()) == 3                      # a load of the restored file adds no copy


def test_no_good_backup_leaves_the_file_in_place_and_a_missing_file_comes_back_from_backup(tmp_path):
    store = GuardedFile(tmp_path / "db.bin")
    with pytest.raises(FileNotFoundError):
        store.load()
    write_atomic(store.path, seal(b"shipped")[:-2])       # a truncated copy that was never loaded
    with pytest.raises(CorruptFileError, match="no good backup.*left in place"):
        store.load()
    assert store.path.exists()                            # never left missing
    assert not store.quarantine_dir.exists()              # nothing to restore: nothing moved away
    store.save(b"one")
    store.save(b"two")
    store.path.unlink()
    loaded = store.load()
    assert loaded.payload == b"two" and loaded.recovered_from == store.backups()[-1] and loaded.error == "file missing"


def test_a_file_written_elsewhere_is_backed_up_at_its_first_load_and_restored_when_truncated(tmp_path):
    """A shipped or seeded file (never saved through GuardedFile) has no backup until its first good load."""
    path = tmp_path / "registry.json"
    write_atomic(path, seal(b'{"models": {}}', kind="shipped"))
    store = GuardedFile(path)
    first = store.load()
    assert first.backed_up is not None and store.backups() == [first.backed_up] and not first.backup_error
    assert store.load().backed_up == first.backed_up      # no second copy of the same revision
    path.write_bytes(path.read_bytes()[:20])              # truncated
    loaded = store.load()
    assert loaded.payload == b'{"models": {}}' and loaded.recovered_from == first.backed_up
    assert path.exists() and loaded.quarantined.read_bytes() == b"SENSORIUM-SEALED 1 {"[:20]


def test_a_check_refusing_the_payload_restores_the_newest_backup_it_accepts(tmp_path):
    store = GuardedFile(tmp_path / "db.bin")
    store.save(b"good")
    store.save(b"sealed but unreadable")

    def check(payload: bytes) -> None:
        if payload != b"good":
            raise ValueError("not a document")

    loaded = store.load(check=check)
    assert loaded.payload == b"good" and "not a document" in loaded.error and loaded.quarantined is not None


def test_retention_drops_old_backups_but_keeps_the_newest(tmp_path):
    store = GuardedFile(tmp_path / "db.bin", keep=10, retention_days=1, keep_min=1)
    store.save(b"a")
    store.save(b"b")
    store.save(b"c")
    old = store.backups()
    for p in old:  # pretend both backups are 2 days old
        stamp = int(p.name.rsplit(".", 1)[1]) - 2 * 86400 * 10**9
        p.rename(p.with_name(f"db.bin.{stamp}"))
    store.prune()
    assert len(store.backups()) == 1


def test_lock_is_exclusive_across_processes_and_freed_when_the_holder_dies(tmp_path):
    target = tmp_path / "db.bin"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from config.storage import file_lock\n"
        f"with file_lock({str(target)!r}):\n    print('locked', flush=True); time.sleep(600)")],
        cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeout):
            with file_lock(target, timeout_s=0.3):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        with file_lock(target, timeout_s=30):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_during_saves_leaves_the_old_or_the_new_version(tmp_path):
    """A writer saving 1 MB versions in a loop is SIGKILLed at random moments; every
    time, the file on disk is a complete, verifiable version."""
    target = tmp_path / "db.bin"
    script = (
        "import sys; from config.storage import GuardedFile\n"
        f"store = GuardedFile({str(target)!r}, keep=2)\n"
        "i = 0\n"
        "while True:\n"
        "    store.save(bytes([i % 251]) * 1_000_000, version=i); i += 1\n"
        "    if i == 3: print('saving', flush=True)\n")
    seen_versions = set()
    for delay_s in (0.05, 0.13, 0.29, 0.41):
        writer = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout.readline().strip() == "saving"
        time.sleep(delay_s)  # a random moment in the middle of the loop is the point of this test
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(30)
        loaded = GuardedFile(target, keep=2).load()
        assert loaded.recovered_from is None
        assert loaded.payload == bytes([loaded.header["version"] % 251]) * 1_000_000
        seen_versions.add(loaded.header["version"])
    assert len(seen_versions) > 1


def test_write_atomic_leaves_no_temp_file(tmp_path):
    write_atomic(tmp_path / "a.json", b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    wait_until(lambda: (tmp_path / "a.json").read_bytes() == b"{}")
