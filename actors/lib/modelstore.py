"""The model store in ``models/``: versioned backbone and heads, the registry, the version rules.

Layout::

    models/registry.json            sealed (config.storage.GuardedFile): backed up, checksummed, locked
    models/backbone/vN.pt           the shared backbone, version N
    models/heads/SIGNAL/vN.pt       one head per signal, version N
    models/heads/SIGNAL/vN.split.json   the train/validation split it was trained on
    models/heads/SIGNAL/vN.curve.png    its training curve

The registry holds, per model (``backbone`` or a signal name), the active
version, the history of active versions (for rollback) and per version its
metadata: file, sha256, bytes, created, metrics, parent, backbone (heads),
data split, notes. Every change is one read-modify-write of the registry
under its lock, saved atomically, so the active version switches atomically
for every reader.

Version rules (``VersionRules``): the first version of a model promotes
itself; a new head version promotes itself when its validation F1 beats the
active version's by more than ``promote_margin_points`` (F1 in points,
0..100); otherwise it waits for ``promote``. ``rollback`` returns to the
previous active version. ``cleanup`` keeps the newest N versions and never
removes an active one (nor a backbone an active head needs).

No torch here: the supervisor's ``validate`` uses ``verify`` without it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from config.paths import REPO_ROOT
from config.storage import CorruptFileError, GuardedFile, sha256_bytes, sha256_file, write_atomic

ROOT = REPO_ROOT
DEFAULT_STORE = ROOT / "models"
BACKBONE = "backbone"
SIGNAL_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
REGISTRY_FORMAT = 1


class StoreError(ValueError):
    """A request the store cannot satisfy (unknown signal or version, nothing to roll back to...)."""


def check_signal(name: str) -> str:
    if name == BACKBONE or not SIGNAL_RE.fullmatch(name or ""):
        raise StoreError(f"signal name {name!r}: expected lowercase letters, digits and '_' "
                         f"(1-40, starting with a letter), not {BACKBONE!r}")
    return name


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class VersionRules:
    promote_margin_points: float = 2.0
    """A new version promotes itself when its F1 beats the active one's by more than this, in F1 points (0..100)."""

    def decide(self, new_f1: float | None, active_f1: float | None, has_active: bool) -> tuple[bool, str]:
        """(promote?, why) for a freshly registered version."""
        if not has_active:
            return True, "first version: promoted itself"
        if new_f1 is None:
            return False, "no F1 measured: waits for a manual promote"
        if active_f1 is None:
            return False, "the active version has no F1 to compare with: waits for a manual promote"
        gain = (new_f1 - active_f1) * 100.0
        if gain > self.promote_margin_points:
            return True, f"F1 {new_f1:.3f} beats the active {active_f1:.3f} by {gain:+.1f} points " \
                         f"(> {self.promote_margin_points:g}): promoted"
        return False, f"F1 {new_f1:.3f} vs the active {active_f1:.3f}: {gain:+.1f} points " \
                      f"(not > {self.promote_margin_points:g}): waits for a manual promote"


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    promoted: bool
    reason: str


@dataclass(frozen=True)
class Problem:
    name: str
    version: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        v = f" v{self.version}" if self.version is not None else ""
        return f"{self.name}{v}: {self.path}: {self.reason}"


class ModelStore:
    def __init__(self, root: Path | str = DEFAULT_STORE, rules: VersionRules | None = None,
                 on_recovered: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.rules = rules or VersionRules()
        self.registry = GuardedFile(self.root / "registry.json", keep=20)
        self._on_recovered = on_recovered

    # -- the registry document -------------------------------------------------

    def read(self) -> dict[str, Any]:
        """The registry (empty when the store is new). A corrupt registry is
        quarantined and its newest good backup restored (``on_recovered`` hears of it)."""
        empty = {"format": REGISTRY_FORMAT, "models": {}}
        if not self.registry.exists() and not self.registry.backups():
            return empty  # a new store: nothing to lock (locking would create the folder)
        try:
            loaded = self.registry.load()
        except FileNotFoundError:
            return empty
        if loaded.recovered_from is not None and self._on_recovered:
            self._on_recovered(f"{self.registry.path}: {loaded.error}; restored {loaded.recovered_from.name}")
        doc = json.loads(loaded.payload)
        if doc.get("format") != REGISTRY_FORMAT:
            raise StoreError(f"{self.registry.path}: registry format {doc.get('format')!r}, expected {REGISTRY_FORMAT}")
        return doc

    def _update(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        """One atomic read-modify-write of the registry under its lock."""
        with self.registry.locked():
            try:
                loaded = self.registry.load(lock=False)
                doc = json.loads(loaded.payload)
            except FileNotFoundError:
                doc = {"format": REGISTRY_FORMAT, "models": {}}
            result = change(doc)
            self.registry.save(json.dumps(doc, indent=1, sort_keys=True).encode(), lock=False)
        return result

    # -- queries ------------------------------------------------------------------

    def names(self, doc: dict[str, Any] | None = None) -> list[str]:
        return sorted((doc or self.read())["models"])

    def signals(self, doc: dict[str, Any] | None = None) -> list[str]:
        return [n for n in self.names(doc) if n != BACKBONE]

    def entry(self, name: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = doc or self.read()
        try:
            return doc["models"][name]
        except KeyError:
            raise StoreError(f"no model {name!r} in {self.registry.path}; known: "
                             f"{', '.join(self.names(doc)) or 'none'}") from None

    def active(self, name: str, doc: dict[str, Any] | None = None) -> int | None:
        return self.entry(name, doc).get("active")

    def meta(self, name: str, version: int, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        versions = self.entry(name, doc)["versions"]
        try:
            return versions[str(version)]
        except KeyError:
            raise StoreError(f"{name} has no version {version}; versions: "
                             f"{', '.join(sorted(versions, key=int)) or 'none'}") from None

    def path(self, name: str, version: int, doc: dict[str, Any] | None = None) -> Path:
        return self.root / self.meta(name, version, doc)["file"]

    def read_verified(self, name: str, version: int, doc: dict[str, Any] | None = None) -> bytes:
        """The weight file's bytes, after checking its sha256 against the registry (CorruptFileError if not)."""
        meta = self.meta(name, version, doc)
        path = self.root / meta["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptFileError(path, "weight file missing") from None
        actual = sha256_bytes(data)
        if actual != meta["sha256"]:
            raise CorruptFileError(path, f"sha256 {actual[:12]}... does not match the registry's {meta['sha256'][:12]}...")
        return data

    def candidates(self, name: str, doc: dict[str, Any] | None = None) -> list[int]:
        """Versions to try when loading, best first: the active one, earlier active ones (newest first), the rest."""
        entry = self.entry(name, doc)
        order: list[int] = []
        for v in reversed(entry.get("history", [])):
            if v not in order and str(v) in entry["versions"]:
                order.append(v)
        for v in sorted((int(k) for k in entry["versions"]), reverse=True):
            if v not in order:
                order.append(v)
        return order

    # -- adding versions ------------------------------------------------------------

    def _add(self, name: str, data: bytes, meta: dict[str, Any], extra_files: dict[str, bytes],
             decide: Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str]]) -> Registered:
        def change(doc: dict[str, Any]) -> Registered:
            entry = doc["models"].setdefault(name, {"active": None, "history": [], "versions": {}})
            version = max((int(k) for k in entry["versions"]), default=0) + 1
            folder = BACKBONE if name == BACKBONE else f"heads/{name}"
            rel = f"{folder}/v{version}.pt"
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            files = {}
            for suffix, content in extra_files.items():
                extra_rel = f"{folder}/v{version}.{suffix}"
                write_atomic(self.root / extra_rel, content)
                files[suffix] = {"file": extra_rel, "sha256": sha256_bytes(content)}
            write_atomic(self.root / rel, data)
            info = {"version": version, "file": rel, "sha256": sha256_bytes(data), "bytes": len(data),
                    "created": utc_now(), "files": files, **meta}
            promote, reason = decide(entry, info)
            info["decision"] = reason
            entry["versions"][str(version)] = info
            if promote:
                self._activate(entry, version)
            return Registered(name, version, promote, reason)

        return self._update(change)

    @staticmethod
    def _activate(entry: dict[str, Any], version: int) -> None:
        entry["active"] = version
        entry["history"].append(version)
        entry["versions"][str(version)]["promoted"] = utc_now()

    def add_backbone(self, data: bytes, *, metrics: dict[str, Any] | None = None, parent: int | None = None,
                     data_split: dict[str, Any] | None = None, notes: str = "",
                     extra_files: dict[str, bytes] | None = None) -> Registered:
        """A new backbone version; the first one promotes itself, later ones wait for ``promote backbone V``
        (every head is tied to the backbone it was trained on)."""
        meta = {"metrics": metrics or {}, "parent": parent, "data": data_split or {}, "notes": notes}

        def decide(entry: dict[str, Any], _info: dict[str, Any]) -> tuple[bool, str]:
            if entry["active"] is None:
                return True, "first version: promoted itself"
            return False, "a new backbone waits for a manual promote (heads trained on it must exist)"

        return self._add(BACKBONE, data, meta, extra_files or {}, decide)

    def add_head(self, signal: str, data: bytes, *, backbone: int, metrics: dict[str, Any] | None = None,
                 active_f1: float | None = None, parent: int | None = None,
                 data_split: dict[str, Any] | None = None, notes: str = "",
                 extra_files: dict[str, bytes] | None = None) -> Registered:
        """A new head version trained on backbone version ``backbone``, promoted by the version rules.

        ``active_f1``: the active version's F1 measured on the same validation
        data (the fair comparison); when None, the F1 stored with the active version is used.
        """
        check_signal(signal)
        metrics = metrics or {}
        meta = {"metrics": metrics, "parent": parent, "backbone": backbone, "data": data_split or {}, "notes": notes}

        def decide(entry: dict[str, Any], info: dict[str, Any]) -> tuple[bool, str]:
            current = entry["active"]
            baseline = active_f1
            if current is not None and baseline is None:
                baseline = entry["versions"][str(current)].get("metrics", {}).get("f1")
            if current is not None:
                info["compared_with"] = {"version": current, "f1": baseline}
            return self.rules.decide(metrics.get("f1"), baseline, current is not None)

        return self._add(signal, data, meta, extra_files or {}, decide)

    # -- changing the active version ------------------------------------------------

    def promote(self, name: str, version: int) -> Registered:
        """Make ``version`` active (its weights must verify)."""
        self.read_verified(name, version)

        def change(doc: dict[str, Any]) -> Registered:
            entry = self.entry(name, doc)
            self.meta(name, version, doc)
            if entry["active"] == version:
                return Registered(name, version, False, f"v{version} is already active")
            self._activate(entry, version)
            return Registered(name, version, True, "promoted by request")

        return self._update(change)

    def rollback(self, name: str) -> Registered:
        """Return to the version that was active before the current one."""

        def change(doc: dict[str, Any]) -> Registered:
            entry = self.entry(name, doc)
            history = [v for v in entry["history"] if str(v) in entry["versions"]]
            current = entry["active"]
            while history and history[-1] == current:
                history.pop()
            if not history:
                raise StoreError(f"{name}: no earlier active version to roll back to (active: v{current})")
            previous = history[-1]
            entry["history"] = history  # the rolled-back version leaves the history
            entry["active"] = previous
            entry["versions"][str(current)]["rolled_back"] = utc_now()
            return Registered(name, previous, True, f"rolled back from v{current} to v{previous}")

        return self._update(change)

    def cleanup(self, keep: int = 3) -> list[str]:
        """Delete all but the newest ``keep`` versions of every model; never an
        active version, nor a backbone version an active head was trained on."""
        if keep < 1:
            raise StoreError(f"cleanup keep={keep}: keep at least 1 version")

        def change(doc: dict[str, Any]) -> list[str]:
            removed = []
            needed_backbones = {e["versions"][str(e["active"])].get("backbone") for n, e in doc["models"].items()
                                if n != BACKBONE and e["active"] is not None}
            for name, entry in doc["models"].items():
                versions = sorted((int(k) for k in entry["versions"]), reverse=True)
                for v in versions[keep:]:
                    if v == entry["active"] or (name == BACKBONE and v in needed_backbones):
                        continue
                    meta = entry["versions"].pop(str(v))
                    for rel in [meta["file"], *(f["file"] for f in meta.get("files", {}).values())]:
                        (self.root / rel).unlink(missing_ok=True)
                    entry["history"] = [h for h in entry["history"] if h != v]
                    removed.append(f"{name} v{v}")
            return removed

        return self._update(change)

    # -- checking -----------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Every stored file against its sha256; an empty list means all good."""
        problems: list[Problem] = []
        try:
            doc = self.read()
        except (CorruptFileError, StoreError, ValueError) as exc:
            return [Problem("registry", None, str(self.registry.path), str(exc))]
        for name, entry in doc["models"].items():
            for key, meta in entry["versions"].items():
                files = [(meta["file"], meta["sha256"])] + [(f["file"], f["sha256"])
                                                             for f in meta.get("files", {}).values()]
                for rel, digest in files:
                    path = self.root / rel
                    if not path.exists():
                        problems.append(Problem(name, int(key), rel, "missing"))
                    elif sha256_file(path) != digest:
                        problems.append(Problem(name, int(key), rel, "sha256 mismatch"))
            if entry["active"] is not None and str(entry["active"]) not in entry["versions"]:
                problems.append(Problem(name, entry["active"], "registry.json", "active version not registered"))
        return problems

    def count_files(self, doc: dict[str, Any] | None = None) -> int:
        doc = doc or self.read()
        return sum(1 + len(m.get("files", {})) for e in doc["models"].values() for m in e["versions"].values())
