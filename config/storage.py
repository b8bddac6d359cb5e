"""How Sensorium writes files: atomically, checksummed, backed up, locked.

DESIGN.md ("Storage and models"): everything written goes to a temp file in
the same folder, is fsynced, renamed over the target, and the folder is
fsynced. Stored artifacts carry a sha256; a mismatch on load is corruption:
the file is quarantined and the newest good backup restored. This module is
the one implementation of those rules; the gesture store, the model
registry, session files and the supervisor's resolved config all use it.

It lives in ``config`` because both the supervisor and the actors need it and
``config`` imports nothing of the project above it.

``GuardedFile`` is the whole recipe for a small document (JSON, msgpack):

    store = GuardedFile(Path("gestures/templates.db"), keep=10, retention_days=30)
    store.save(payload)            # lock, write sealed, back up the new revision, prune
    loaded = store.load()          # verify; on corruption quarantine and restore the last revision
    if loaded.recovered_from:      # the caller publishes an alert
        ...
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

SEAL_MAGIC = b"SENSORIUM-SEALED 1 "
"""First bytes of a sealed file: magic, then a JSON header line, then the payload."""


class CorruptFileError(ValueError):
    """A stored file whose checksum or framing does not match; names the path."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class LockTimeout(TimeoutError):
    """Another process held the lock longer than we were willing to wait."""


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str, chunk_bytes: int = 1 << 20) -> str:
    """sha256 of a file, read in chunks (weights can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(folder: Path | str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path | str, data: bytes | memoryview) -> None:
    """Temp file in the same folder, fsync, rename, fsync of the folder.

    A reader (or a process killed mid-write) sees the old file or the new
    one, never a torn one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def file_lock(path: Path | str, timeout_s: float = 30.0) -> Iterator[None]:
    """An exclusive advisory lock on ``PATH.lock``, shared by every process.

    flock is released by the kernel when the holder dies, so a process
    killed with SIGKILL never leaves a stale lock behind.
    """
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{lock_path}: held by another process for more than {timeout_s:g} s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def seal(payload: bytes, **meta: object) -> bytes:
    """Frame ``payload`` with its size and sha256 (and any ``meta``) in a header line."""
    header = {"sha256": sha256_bytes(payload), "size": len(payload), "sealed_at": time.time(), **meta}
    return SEAL_MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def unseal(raw: bytes, path: Path | str = "<bytes>") -> tuple[bytes, dict]:
    """The payload and header of a sealed file; raises CorruptFileError on any mismatch."""
    if not raw.startswith(SEAL_MAGIC):
        raise CorruptFileError(path, "not a sealed file (magic missing)")
    end = raw.find(b"\n", len(SEAL_MAGIC))
    if end < 0:
        raise CorruptFileError(path, "header line not terminated")
    try:
        header = json.loads(raw[len(SEAL_MAGIC):end])
        size, digest = int(header["size"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(path, f"bad header: {exc}") from exc
    payload = raw[end + 1:]
    if len(payload) != size:
        raise CorruptFileError(path, f"payload is {len(payload)} bytes, header says {size}")
    actual = sha256_bytes(payload)
    if actual != digest:
        raise CorruptFileError(path, f"sha256 {actual[:12]}... does not match {digest[:12]}...")
    return payload, header


@dataclass(frozen=True)
class Loaded:
    payload: bytes
    header: dict
    """The seal's header: sha256, size, sealed_at (s since the epoch), and the meta given to save()."""
    recovered_from: Path | None = None
    """The backup restored because the file was corrupt or missing, or None."""
    quarantined: Path | None = None
    """Where the corrupt file was moved, or None."""
    error: str = ""
    """What was wrong with the file when a backup was restored."""
    backed_up: Path | None = None
    """The backup this load took of a good file that had none (a seeded or shipped file)."""
    backup_error: str = ""
    """Why that backup could not be written (a read-only folder...): the file loaded all the same."""


Check = Callable[[bytes], object]
"""Judges a verified payload; raises CorruptFileError (or ValueError) when it cannot be used."""


class GuardedFile:
    """One document on disk: sealed with its sha256, saved atomically under a
    cross-process lock, with timestamped backups that corruption is recovered from.

    Backups live in ``FOLDER/.backups/NAME.<ns timestamp>``, and the newest
    one is always the current revision: ``save()`` backs up what it has just
    written (and, first, a good current file that no backup holds yet), and a
    ``load()`` of a good file that no backup holds (a seeded or shipped file
    never saved through here) backs it up. So a corrupt file is restored to
    its last revision, never to the one before: no change is lost. The newest
    ``keep`` backups are kept, and none older than ``retention_days`` beyond
    those ``keep_min`` newest; ``keep = 0`` takes no backups (an export). A
    corrupt file goes to ``FOLDER/.quarantine/`` only when a good backup
    replaces it: with none, it stays where it is (never a missing file) and
    ``load()`` raises.

    ``read_only``: a file this process must never write (the shipped model
    registry in the checkout): loads take no lock and no backup, corruption
    is reported (``CorruptFileError``) and left as it is, ``save()`` refuses.
    """

    def __init__(self, path: Path | str, *, keep: int = 10, retention_days: float = 30.0, keep_min: int = 1,
                 lock_timeout_s: float = 30.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.keep = keep
        self.retention_s = retention_days * 86400.0
        self.keep_min = keep_min
        self.lock_timeout_s = lock_timeout_s
        self.backup_dir = self.path.parent / ".backups"
        self.quarantine_dir = self.path.parent / ".quarantine"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock across a read-modify-write of several steps."""
        with file_lock(self.path, self.lock_timeout_s):
            yield

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, payload: bytes, *, lock: bool = True, **meta: object) -> None:
        """Replace the file atomically; its new revision becomes the newest backup."""
        if self.read_only:
            raise PermissionError(f"{self.path} is read-only here (shipped with the product)")
        if lock:
            with self.locked():
                self._save(payload, meta)
        else:
            self._save(payload, meta)

    def _save(self, payload: bytes, meta: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            current = self.path.read_bytes()
            try:
                unseal(current, self.path)
            except CorruptFileError:
                pass  # a corrupt file is never kept as a backup
            else:
                self.back_up(current)  # a good file no save of ours wrote (seeded, shipped): keep it too
        sealed = seal(payload, **meta)
        write_atomic(self.path, sealed)
        self.back_up(sealed)
        self.prune()

    def back_up(self, raw: bytes) -> Path | None:
        """Store ``raw`` (a sealed revision) as the newest backup unless the newest already holds it;
        the backup that holds it, or None when ``keep`` is 0."""
        if self.keep <= 0:
            return None
        backups = self.backups()
        if backups and backups[-1].read_bytes() == raw:
            return backups[-1]
        stamp = time.time_ns()
        if backups:  # strictly newer than the newest, whatever the clock's resolution
            stamp = max(stamp, _stamp(backups[-1]) + 1)
        self.backup_dir.mkdir(exist_ok=True)
        target = self.backup_dir / f"{self.path.name}.{stamp}"
        write_atomic(target, raw)
        return target

    def load(self, *, lock: bool = True, check: Check | None = None) -> Loaded:
        """The verified payload. On corruption (a bad seal, or ``check`` refusing the payload):
        quarantine, restore the newest backup that verifies (``Loaded.recovered_from`` says which),
        and return it. Raises FileNotFoundError when there is neither file nor backup, and
        CorruptFileError when the file is bad and no backup verifies (the file is then left in place)."""
        if self.read_only:
            raw = self.path.read_bytes()
            try:
                payload, header = self._verify(raw, self.path, check)
            except CorruptFileError as exc:
                raise CorruptFileError(self.path, f"{exc.reason}; no good backup: this shipped file is read-only "
                                       "here and left as it is (reinstall, or restore it from git)") from None
            return Loaded(payload, header)
        if lock:
            with self.locked():
                return self._load(check)
        return self._load(check)

    def _verify(self, raw: bytes, path: Path, check: Check | None) -> tuple[bytes, dict]:
        payload, header = unseal(raw, path)
        if check is not None:
            try:
                check(payload)
            except CorruptFileError:
                raise
            except ValueError as exc:
                raise CorruptFileError(path, f"unusable content: {exc}") from exc
        return payload, header

    def _load(self, check: Check | None) -> Loaded:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if not self.backups():
                raise
            return self._restore(None, "file missing", check)
        try:
            payload, header = self._verify(raw, self.path, check)
        except CorruptFileError as exc:
            return self._restore(raw, exc.reason, check)
        try:
            backed_up, backup_error = self.back_up(raw), ""
        except OSError as exc:
            backed_up, backup_error = None, f"{self.backup_dir}: {exc.strerror or exc}"
        return Loaded(payload, header, backed_up=backed_up, backup_error=backup_error)

    def _restore(self, corrupt: bytes | None, error: str, check: Check | None) -> Loaded:
        """Put the newest good backup in place; the corrupt file (if any) goes to quarantine first."""
        for backup in reversed(self.backups()):
            raw = backup.read_bytes()
            try:
                payload, header = self._verify(raw, backup, check)
            except CorruptFileError:
                continue
            quarantined = None
            if corrupt is not None:
                self.quarantine_dir.mkdir(exist_ok=True)
                quarantined = self.quarantine_dir / f"{self.path.name}.{time.time_ns()}"
                os.replace(self.path, quarantined)
            write_atomic(self.path, raw)
            return Loaded(payload, header, recovered_from=backup, quarantined=quarantined, error=error)
        where = "; the file is left in place" if corrupt is not None else ""
        raise CorruptFileError(self.path, f"{error}; no good backup in {self.backup_dir}{where}")

    def backups(self) -> list[Path]:
        """Backups, oldest first."""
        if not self.backup_dir.is_dir():
            return []
        prefix = self.path.name + "."
        found = []
        for p in self.backup_dir.iterdir():
            stamp = p.name[len(prefix):]
            if p.name.startswith(prefix) and stamp.isdigit():
                found.append((int(stamp), p))
        return [p for _, p in sorted(found)]

    def prune(self) -> list[Path]:
        """Drop backups beyond ``keep`` and those older than the retention (the newest ``keep_min`` stay)."""
        backups = self.backups()
        cutoff_ns = (time.time() - self.retention_s) * 1e9
        removed = []
        for i, p in enumerate(backups):
            from_newest = len(backups) - i
            too_many = from_newest > self.keep
            too_old = _stamp(p) < cutoff_ns and from_newest > self.keep_min
            if too_many or too_old:
                p.unlink(missing_ok=True)
                removed.append(p)
        return removed


def _stamp(backup: Path) -> int:
    """The ns timestamp at the end of a backup's name."""
    return int(backup.name.rsplit(".", 1)[1])
