"""The gesture store: templates, their samples and training results, on disk.

One file, written through ``config.storage.GuardedFile``: sealed with its
sha256, saved atomically under a cross-process lock, with timestamped
backups (keep N, retention days) of which the newest is always the current
revision (a seeded store is backed up on its first load). A corrupt file is
quarantined and the newest good backup, its last revision, restored; ``StoreLoad.recovered_from`` tells the caller,
which publishes the alert.

The payload is msgpack::

    {"format": 1, "revision": int, "updated_at": float,
     "calibration": {"a": float, "b": float, "c": float},
     "gestures": {name: {"version", "created_at", "updated_at", "trained_at",
                         "samples": [sample], "outliers": [sample], "superseded": [sample],
                         "accuracy", "class_accuracy", "consistency",
                         "distance_mean", "distance_std", "fingerprint"}}}

and a sample is ``{"id", "t", "acc", "gyro", "quality", "source",
"recorded_at", "origin"}`` with arrays as ``{"dtype", "shape", "data"}``.

**Origin**: a sample is ``shipped`` (the templates the store was seeded
with, ``make_templates.py``) or ``user`` (recorded, added from a file,
migrated; export and import keep a sample's origin). The shipped ones are a
starting point: once a gesture has ``training.MIN_USER_SAMPLES`` (3)
samples of the user's own, training moves its shipped samples to
``superseded`` (kept, never matched) and uses only the user's; deleting the
user's samples (``remove_user_samples``) brings them back at the next
training. Stores written before origins existed have no ``origin`` key: a
sample whose ``source`` starts with ``synthetic`` (what ``make_templates.py``
writes) is shipped, any other one the user's. The format number stays 1:
every new key has a default.

A legacy plain ``templates.json`` (``{name: [sample, ...]}`` with a sample a
list of ``[ax, ay, az, gx, gy, gz]`` rows at ``LEGACY_RATE_HZ``, or a map with
``t``/``acc``/``gyro``) next to the store is migrated on the first load: its
valid samples are imported, the store saved, and the JSON renamed to
``templates.json.migrated``; the migrated gestures are trained right away.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import msgpack
import numpy as np
from pydantic import Field

from config.paths import Locations, resolve_path
from config.schema import Strict
from config.storage import CorruptFileError, GuardedFile, Loaded, unseal, write_atomic


class GestureStoreSettings(Strict):
    path: str = "~/.local/share/sensorium/gestures/store.gst"
    """The gesture store file; relative paths are taken from the repository root."""
    seed_path: str = "models/gestures/synthetic.gst"
    """Copied in as the store when there is none yet ('' : start empty)."""
    keep: int = Field(10, ge=1)
    """Backups kept."""
    retention_days: float = Field(30.0, gt=0)
    """Backups older than this are removed (the newest one always stays), days."""

    def default_paths(self, where: Locations) -> dict[str, Any]:
        return {"path": str(where.resolve(self.path)),
                **({"seed_path": str(where.resolve(self.seed_path))} if self.seed_path else {})}


FORMAT = 1
LEGACY_NAME = "templates.json"
LEGACY_RATE_HZ = 50.0
"""Sample rate assumed for legacy samples given as bare rows."""
MIN_READINGS = 20
"""A sample needs at least this many readings."""
MIN_DURATION_S = 0.2
MAX_DURATION_S = 6.0
MAX_ACC = 16 * 9.80665
"""|acc| above this is not physical for a phone, m/s²."""
MAX_GYRO = 35.0
"""|gyro| above this is not physical for a phone, rad/s."""
MIN_MOTION_RMS = 0.5
"""A sample whose acceleration and rotation barely leave the rest level is no gesture, m/s² (RMS, gyro scaled)."""
SHIPPED = "shipped"
"""Origin of the samples of the shipped templates (the seed)."""
USER = "user"
"""Origin of the samples the user recorded, added, imported or migrated."""
ORIGINS = (SHIPPED, USER)


class SampleError(ValueError):
    """A sample that cannot be a gesture; the message lists every problem."""


class StoreError(ValueError):
    """A request the store cannot honour (unknown gesture, name conflict...)."""


def _pack_array(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _unpack_array(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


@dataclass
class Sample:
    t: np.ndarray
    """float64 (n,), seconds."""
    acc: np.ndarray
    """float32 (n, 3), m/s²."""
    gyro: np.ndarray
    """float32 (n, 3), rad/s."""
    quality: float = 1.0
    """0..1, from the recording (batch quality, signal to noise, duration)."""
    source: str = ""
    """Where it came from: a session id, 'legacy', 'import', 'synthetic'."""
    recorded_at: float = field(default_factory=time.time)
    """Unix time, seconds."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    origin: str = USER
    """``shipped`` (the templates the store started from) or ``user`` (everything the user taught)."""

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"sample origin {self.origin!r}: expected one of {ORIGINS}")
        self.t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        self.acc = np.asarray(self.acc, dtype=np.float32).reshape(-1, 3)
        self.gyro = np.asarray(self.gyro, dtype=np.float32).reshape(-1, 3)

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self.t) else 0.0

    @property
    def shipped(self) -> bool:
        return self.origin == SHIPPED

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "t": _pack_array(self.t), "acc": _pack_array(self.acc), "gyro": _pack_array(self.gyro),
                "quality": float(self.quality), "source": self.source, "recorded_at": float(self.recorded_at),
                "origin": self.origin}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sample":
        source = d.get("source", "")
        origin = d.get("origin") or (SHIPPED if source.startswith("synthetic") else USER)
        return cls(_unpack_array(d["t"]), _unpack_array(d["acc"]), _unpack_array(d["gyro"]), d.get("quality", 1.0),
                   source, d.get("recorded_at", 0.0), d["id"], origin)


def sample_problems(sample: Sample) -> list[str]:
    """Why ``sample`` cannot be a gesture; empty when it is plausible."""
    problems = []
    n = len(sample.t)
    if not (len(sample.acc) == len(sample.gyro) == n):
        return [f"t, acc, gyro lengths differ ({n}, {len(sample.acc)}, {len(sample.gyro)})"]
    if n < MIN_READINGS:
        problems.append(f"{n} readings, at least {MIN_READINGS} needed")
    if not (np.isfinite(sample.t).all() and np.isfinite(sample.acc).all() and np.isfinite(sample.gyro).all()):
        problems.append("NaN or inf readings")
        return problems
    if n >= 2 and not (np.diff(sample.t) > 0).all():
        problems.append("timestamps are not strictly increasing")
    if n and not MIN_DURATION_S <= sample.duration_s <= MAX_DURATION_S:
        problems.append(f"duration {sample.duration_s:.2f} s outside {MIN_DURATION_S}..{MAX_DURATION_S} s")
    if n and float(np.linalg.norm(sample.acc, axis=1).max()) > MAX_ACC:
        problems.append(f"|acc| reaches {float(np.linalg.norm(sample.acc, axis=1).max()):.0f} m/s² (> 16 g)")
    if n and float(np.linalg.norm(sample.gyro, axis=1).max()) > MAX_GYRO:
        problems.append(f"|gyro| reaches {float(np.linalg.norm(sample.gyro, axis=1).max()):.0f} rad/s (> 35)")
    if n and not problems:
        from actors.lib.gesture.segmenter import motion_energy  # noqa: PLC0415 - keeps the store importable alone

        rms = float(np.sqrt(np.mean(motion_energy(sample.acc, sample.gyro))))
        if rms < MIN_MOTION_RMS:
            problems.append(f"no motion: energy RMS {rms:.2f} < {MIN_MOTION_RMS}")
    return problems


def validate_sample(sample: Sample, what: str = "sample") -> Sample:
    problems = sample_problems(sample)
    if problems:
        raise SampleError(f"{what}: " + "; ".join(problems))
    return sample


@dataclass
class Gesture:
    name: str
    version: int = 0
    """Bumped by every training that changes the template (samples or outliers)."""
    samples: list[Sample] = field(default_factory=list)
    """Samples in use (outliers removed)."""
    outliers: list[Sample] = field(default_factory=list)
    """Samples training set aside as outliers (kept for inspection; never matched against)."""
    superseded: list[Sample] = field(default_factory=list)
    """Shipped samples set aside because the user has samples of their own (kept; never matched against)."""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    trained_at: float = 0.0
    """Unix time of the last training; 0: never trained."""
    accuracy: float | None = None
    """k-fold cross-validation accuracy of this gesture's samples, 0..1."""
    consistency: float | None = None
    """0..1: 1 - mean distance among its samples / mean distance to other gestures' samples."""
    distance_mean: float | None = None
    """Mean DTW distance of a held-out sample to its nearest same-gesture sample (CV)."""
    distance_std: float | None = None
    fingerprint: str = ""
    """Ids of the samples the last training used; a change bumps the version."""

    @property
    def trained(self) -> bool:
        return self.trained_at > 0 and self.distance_mean is not None

    @property
    def all_samples(self) -> list[Sample]:
        """In use, outliers and superseded: everything training judges afresh."""
        return self.samples + self.outliers + self.superseded

    @property
    def user_samples(self) -> int:
        return sum(not s.shipped for s in self.all_samples)

    @property
    def shipped_samples(self) -> int:
        return sum(s.shipped for s in self.all_samples)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "samples": [s.to_dict() for s in self.samples],
                "outliers": [s.to_dict() for s in self.outliers],
                "superseded": [s.to_dict() for s in self.superseded], "created_at": self.created_at,
                "updated_at": self.updated_at, "trained_at": self.trained_at, "accuracy": self.accuracy,
                "consistency": self.consistency, "distance_mean": self.distance_mean,
                "distance_std": self.distance_std, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> "Gesture":
        return cls(name, d["version"], [Sample.from_dict(s) for s in d["samples"]],
                   [Sample.from_dict(s) for s in d.get("outliers", [])],
                   [Sample.from_dict(s) for s in d.get("superseded", [])], d.get("created_at", 0.0),
                   d.get("updated_at", 0.0), d.get("trained_at", 0.0), d.get("accuracy"), d.get("consistency"),
                   d.get("distance_mean"), d.get("distance_std"), d.get("fingerprint", ""))

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "samples": len(self.samples),
                "outliers": len(self.outliers), "superseded": len(self.superseded),
                "user_samples": self.user_samples, "shipped_samples": self.shipped_samples, "accuracy": self.accuracy, "consistency": self.consistency,
                "distance_mean": self.distance_mean, "distance_std": self.distance_std,
                "trained_at": self.trained_at, "updated_at": self.updated_at}


@dataclass
class GestureDB:
    gestures: dict[str, Gesture] = field(default_factory=dict)
    revision: int = 0
    """Bumped by every save."""
    calibration: dict[str, float] = field(default_factory=dict)
    """Logistic map from match features to confidence, fitted on cross-validation (training)."""
    accuracy: float | None = None
    """Overall k-fold cross-validation accuracy, 0..1."""
    updated_at: float = 0.0

    def encode(self) -> bytes:
        return msgpack.packb({"format": FORMAT, "revision": self.revision, "updated_at": self.updated_at,
                              "calibration": self.calibration, "accuracy": self.accuracy,
                              "gestures": {n: g.to_dict() for n, g in sorted(self.gestures.items())}},
                             use_bin_type=True)

    @classmethod
    def decode(cls, payload: bytes, path: Path | str = "<bytes>") -> "GestureDB":
        try:
            d = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            if d.get("format") != FORMAT:
                raise CorruptFileError(path, f"unknown gesture store format {d.get('format')!r}")
            return cls({n: Gesture.from_dict(n, g) for n, g in d["gestures"].items()}, d["revision"],
                       d.get("calibration", {}), d.get("accuracy"), d.get("updated_at", 0.0))
        except (ValueError, KeyError, TypeError, AttributeError, msgpack.UnpackException) as exc:
            if isinstance(exc, CorruptFileError):
                raise
            raise CorruptFileError(path, f"not a gesture store: {exc!r}") from exc

    def gesture(self, name: str) -> Gesture:
        try:
            return self.gestures[name]
        except KeyError:
            raise StoreError(f"no gesture {name!r}; known: {', '.join(sorted(self.gestures)) or 'none'}") from None

    def add_samples(self, name: str, samples: list[Sample]) -> Gesture:
        for i, s in enumerate(samples):
            validate_sample(s, f"{name} sample {i}")
        g = self.gestures.setdefault(name, Gesture(name))
        g.samples.extend(samples)
        g.updated_at = time.time()
        return g

    def remove_user_samples(self, name: str) -> int:
        """Drop the user's samples of ``name`` (its shipped ones come back at the next training); the count.

        A gesture with no shipped samples is removed altogether."""
        g = self.gesture(name)
        n = g.user_samples
        if not g.shipped_samples:
            del self.gestures[name]
            return n
        g.samples = [s for s in g.samples if s.shipped]
        g.outliers = [s for s in g.outliers if s.shipped]
        g.updated_at = time.time()
        return n


@dataclass(frozen=True)
class StoreLoad:
    db: GestureDB
    recovered_from: Path | None = None
    """The backup restored because the store file was corrupt."""
    quarantined: Path | None = None
    error: str = ""
    """What was wrong with the corrupt file."""
    migrated_from: Path | None = None
    """The legacy templates.json migrated by this load."""
    skipped: tuple[str, ...] = ()
    """Legacy samples left out by the migration, with the reason."""
    seeded_from: Path | None = None
    """The shipped store copied in because there was none (its first backup is taken at once)."""
    backed_up: Path | None = None
    """The backup this load took of a store that had none (a seeded one)."""
    backup_error: str = ""
    """Why that backup could not be written; the store loaded all the same."""


def valid_name(name: str) -> str:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "_-." for c in name):
        raise StoreError(f"gesture name {name!r}: use 1-64 letters, digits, '_', '-', '.'")
    return name


class GestureStore:
    """The gesture database file, with its backups, lock, migration and export."""

    @classmethod
    def from_settings(cls, s: Any, *, lock_timeout_s: float = 30.0) -> "GestureStore":
        """From ``config.schema.GestureStoreSettings``."""
        return cls(resolve_path(s.path), keep=s.keep, retention_days=s.retention_days,
                   seed_path=resolve_path(s.seed_path) if s.seed_path else None, lock_timeout_s=lock_timeout_s)

    def __init__(self, path: Path | str, *, keep: int = 10, retention_days: float = 30.0,
                 seed_path: Path | str | None = None, lock_timeout_s: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self.file = GuardedFile(self.path, keep=keep, retention_days=retention_days, lock_timeout_s=lock_timeout_s)
        self.legacy_path = self.path.parent / LEGACY_NAME
        self.seed_path = Path(seed_path).expanduser() if seed_path else None

    def signature(self) -> tuple[int, int, int] | None:
        """(inode, size, mtime_ns) of the file, None when absent: changes on every save."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def load(self) -> StoreLoad:
        """The database; an empty one when there is no store, no legacy file and no seed."""
        with self.file.locked():
            return self._load_locked()

    def _load_locked(self) -> StoreLoad:
        self._remove_stale_temp_files()
        seeded = None
        if not self.path.exists() and not self.file.backups():
            if self.legacy_path.exists():
                return self._migrate()
            if self.seed_path is not None and self.seed_path.exists():
                raw = self.seed_path.read_bytes()
                GestureDB.decode(unseal(raw, self.seed_path)[0], self.seed_path)  # refuse a bad seed
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.path, raw)
                seeded = self.seed_path
            else:
                return StoreLoad(GestureDB())
        # A file sealed correctly but not a store we can read gets the same recovery as a bad checksum.
        loaded: Loaded = self.file.load(lock=False, check=lambda payload: GestureDB.decode(payload, self.path))
        db = GestureDB.decode(loaded.payload, self.path)
        return StoreLoad(db, loaded.recovered_from, loaded.quarantined, loaded.error, seeded_from=seeded,
                         backed_up=loaded.backed_up, backup_error=loaded.backup_error)

    def save(self, db: GestureDB) -> None:
        with self.file.locked():
            self._save_locked(db)

    def _save_locked(self, db: GestureDB) -> None:
        db.revision += 1
        db.updated_at = time.time()
        self.file.save(db.encode(), lock=False, kind="gesture-store", revision=db.revision)

    @contextmanager
    def edit(self) -> Iterator[GestureDB]:
        """Read-modify-write under the lock: concurrent editors never lose each other's changes."""
        with self.file.locked():
            db = self._load_locked().db
            yield db
            self._save_locked(db)

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writers killed mid-save (their pid is gone)."""
        if not self.path.parent.is_dir():
            return
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                pid = int(tmp.name.split(".")[-3])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
                tmp.unlink(missing_ok=True)

    # -- legacy migration ------------------------------------------------

    def _migrate(self) -> StoreLoad:
        try:
            legacy = json.loads(self.legacy_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.legacy_path}: cannot migrate, not readable JSON: {exc}") from exc
        if not isinstance(legacy, dict):
            raise StoreError(f"{self.legacy_path}: cannot migrate, expected {{name: [samples]}}, "
                             f"got {type(legacy).__name__}")
        db = GestureDB()
        skipped = []
        for name, samples in legacy.items():
            if not isinstance(samples, list):
                skipped.append(f"{name}: not a list of samples")
                continue
            good = []
            for i, raw in enumerate(samples):
                try:
                    good.append(validate_sample(legacy_sample(raw), f"{name}[{i}]"))
                except (SampleError, ValueError, TypeError, KeyError) as exc:
                    skipped.append(f"{name}[{i}]: {exc}")
            if good:
                try:
                    db.add_samples(valid_name(name), good)
                except StoreError as exc:
                    skipped.append(str(exc))
        from actors.lib.gesture.training import train  # noqa: PLC0415 - training imports this module

        train(db)
        self._save_locked(db)
        migrated = self.legacy_path.with_name(LEGACY_NAME + ".migrated")
        os.replace(self.legacy_path, migrated)
        return StoreLoad(db, migrated_from=migrated, skipped=tuple(skipped))

    # -- one-file exchange -------------------------------------------------

    def export(self, dest: Path | str, names: list[str] | None = None) -> int:
        """Write the store (or some gestures of it) to ``dest`` as one sealed file; returns the count."""
        db = self.load().db
        chosen = names or sorted(db.gestures)
        out = GestureDB({n: db.gesture(n) for n in chosen}, revision=0, calibration=db.calibration,
                        accuracy=db.accuracy)
        GuardedFile(Path(dest), keep=0).save(out.encode(), kind="gesture-export", revision=0)
        return len(chosen)

    def import_file(self, src: Path | str, *, overwrite: bool = False) -> list[str]:
        """Add the gestures of an exported file (verified by its seal); names in use need ``overwrite``."""
        src = Path(src)
        try:
            raw = src.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {src}: {exc.strerror}") from exc
        incoming = GestureDB.decode(unseal(raw, src)[0], src)
        with self.edit() as db:
            clash = sorted(set(incoming.gestures) & set(db.gestures))
            if clash and not overwrite:
                raise StoreError(f"{src}: gestures {clash} exist already; use --overwrite to replace them")
            for name, g in incoming.gestures.items():
                for s in g.samples:
                    validate_sample(s, f"{src}: {name} sample {s.id}")
                old = db.gestures.get(name)
                g.version = max(g.version, old.version + 1 if old else 0)
                db.gestures[name] = g
        return sorted(incoming.gestures)


def legacy_sample(raw: Any) -> Sample:
    """A sample of the legacy JSON: rows of 6 numbers at LEGACY_RATE_HZ, or a map with t/acc/gyro."""
    if isinstance(raw, dict):
        acc = np.asarray(raw["acc"], dtype=np.float64)
        gyro = np.asarray(raw.get("gyro", np.zeros_like(acc)), dtype=np.float64)
        t = np.asarray(raw["t"], dtype=np.float64) if "t" in raw else np.arange(len(acc)) / LEGACY_RATE_HZ
        return Sample(t, acc, gyro, source="legacy")
    rows = np.asarray(raw, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 6:
        raise ValueError(f"expected rows of 6 numbers, got shape {rows.shape}")
    return Sample(np.arange(len(rows)) / LEGACY_RATE_HZ, rows[:, :3], rows[:, 3:], source="legacy")
