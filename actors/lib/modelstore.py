"""The model store: versioned backbone and heads, the registry, the version rules, the layering.

Layout of one store folder::

    registry.json                 sealed (config.storage.GuardedFile): backed up, checksummed, locked
    backbone/vN.pt                the shared backbone, version N (a user store: backbone/uN.pt)
    heads/SIGNAL/vN.pt            one head per signal, version N (a user store: heads/SIGNAL/uN.pt)
    heads/SIGNAL/vN.split.json    the train/validation split it was trained on
    heads/SIGNAL/vN.curve.png     its training curve

Two layers (``layered``): the shipped store (the repository's ``models/``,
read-only: using the product never writes there) and the user's store
(``$XDG_DATA_HOME/sensorium/models`` by default), where trained versions and
every promote/rollback go. Version names are strings: shipped versions are
numbers (``"1"``, ``"2"``), a store's own versions carry its namespace
(``"u1"``, ``"u2"`` in the user store), so a user's version never collides
with a version a later release ships. The active version of a model is the
user registry's when it names one (any version of either layer), else the
shipped registry's; the history is the shipped history followed by the
user's.

The registry holds, per model (``backbone`` or a signal name), the active
version, the history of active versions (for rollback) and per version its
metadata: file, sha256, bytes, created, metrics, parent, backbone (heads),
data split, notes. Every change is one read-modify-write of the (user)
registry under its lock, saved atomically, so the active version switches
atomically for every reader.

Version rules (``VersionRules``): the first version of a model promotes
itself; a new head version promotes itself when its validation F1 beats the
active version's by more than ``promote_margin_points`` (F1 in points,
0..100); otherwise it waits for ``promote``. ``rollback`` returns to the
previous active version (a user store: back to the shipped one when the
user's history is used up). ``cleanup`` keeps the newest N versions of a
store's own and never removes an active one (nor a backbone an active head needs).

No torch here: the supervisor's ``validate`` uses ``verify`` without it.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from config.paths import REPO_ROOT, default_data_dir, resolve_path
from config.storage import CorruptFileError, GuardedFile, sha256_bytes, sha256_file, write_atomic

ROOT = REPO_ROOT
DEFAULT_STORE = ROOT / "models"
"""The shipped store (read-only)."""
BACKBONE = "backbone"
SIGNAL_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
VERSION_RE = re.compile(r"([a-z]*)([1-9][0-9]*)")
REGISTRY_FORMAT = 1
USER_NAMESPACE = "u"
"""Prefix of the versions made in a user store: u1, u2... (shipped versions are bare numbers)."""


class StoreError(ValueError):
    """A request the store cannot satisfy (unknown signal or version, nothing to roll back to...)."""


def check_signal(name: str) -> str:
    if name == BACKBONE or not SIGNAL_RE.fullmatch(name or ""):
        raise StoreError(f"signal name {name!r}: expected lowercase letters, digits and '_' "
                         f"(1-40, starting with a letter), not {BACKBONE!r}")
    return name


def version_label(version: int | str) -> str:
    """The canonical name of a version: ``2``, ``"2"`` and ``"v2"`` are ``"2"``; ``"u3"`` stays ``"u3"``."""
    text = str(version).strip()
    if text.startswith("v") and text[1:].isdigit():
        text = text[1:]
    if not VERSION_RE.fullmatch(text):
        raise StoreError(f"version {version!r}: expected a shipped number (1, 2...) or a user version (u1, u2...)")
    return text


def show(version: str | int) -> str:
    """How a version is written for people: ``v1`` (shipped), ``u1`` (the user's)."""
    text = str(version)
    return f"v{text}" if text.isdigit() else text


def user_models_dir(setting: str = "") -> Path:
    """The user model store: ``setting`` when given (``~`` expanded, relative to the repository root),
    else $XDG_DATA_HOME/sensorium/models (~/.local/share/sensorium/models)."""
    return resolve_path(setting) if setting else default_data_dir() / "models"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _empty_entry() -> dict[str, Any]:
    return {"active": None, "history": [], "versions": {}}


def _normalize(doc: dict[str, Any]) -> dict[str, Any]:
    """Version references as labels (a registry written by an earlier release holds numbers)."""
    def lab(v: Any) -> Any:
        return None if v is None else version_label(v)

    for entry in doc.get("models", {}).values():
        entry["active"] = lab(entry.get("active"))
        entry["history"] = [version_label(v) for v in entry.get("history", [])]
        for key, meta in list(entry.get("versions", {}).items()):
            for field in ("version", "backbone", "parent"):
                if meta.get(field) is not None:
                    meta[field] = version_label(meta[field])
            if isinstance(meta.get("compared_with"), dict) and meta["compared_with"].get("version") is not None:
                meta["compared_with"]["version"] = version_label(meta["compared_with"]["version"])
            if version_label(key) != key:
                entry["versions"][version_label(key)] = entry["versions"].pop(key)
    return doc


def _number(label: str, namespace: str) -> int | None:
    m = VERSION_RE.fullmatch(label)
    return int(m.group(2)) if m and m.group(1) == namespace else None


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
    version: str
    promoted: bool
    reason: str


@dataclass(frozen=True)
class Problem:
    name: str
    version: str | None
    path: str
    reason: str

    def __str__(self) -> str:
        v = f" {show(self.version)}" if self.version is not None else ""
        return f"{self.name}{v}: {self.path}: {self.reason}"


class ModelStore:
    """One store folder; with ``base``, the writable layer over a read-only one (see the module docstring).

    ``namespace`` prefixes the versions this store makes ('' for the shipped
    store and plain stores: 1, 2...; ``USER_NAMESPACE`` for a user store: u1, u2...).
    """

    def __init__(self, root: Path | str = DEFAULT_STORE, rules: VersionRules | None = None,
                 on_recovered: Callable[[str], None] | None = None, *, namespace: str = "",
                 base: "ModelStore | None" = None, read_only: bool = False) -> None:
        self.root = Path(root)
        self.rules = rules or VersionRules()
        # The shipped layer is read-only: reading it never writes a lock or a backup into the checkout.
        self.registry = GuardedFile(self.root / "registry.json", keep=20, read_only=read_only)
        self._on_recovered = on_recovered
        self.namespace = namespace
        self.base = base

    @classmethod
    def layered(cls, shipped: Path | str = DEFAULT_STORE, user: Path | str | None = None,
                rules: VersionRules | None = None,
                on_recovered: Callable[[str], None] | None = None) -> "ModelStore":
        """The user store (``user``, default ``user_models_dir()``) over the read-only shipped one."""
        base = ModelStore(shipped, on_recovered=on_recovered, read_only=True)
        return cls(user if user is not None else user_models_dir(), rules, on_recovered,
                   namespace=USER_NAMESPACE, base=base)

    def describe(self) -> str:
        return f"{self.root} over {self.base.root}" if self.base is not None else str(self.root)

    # -- the registry document -------------------------------------------------

    def read_own(self) -> dict[str, Any]:
        """This folder's registry alone (empty when the store is new). A corrupt registry is
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
        return self._parse(loaded.payload)

    def _parse(self, payload: bytes) -> dict[str, Any]:
        doc = json.loads(payload)
        if doc.get("format") != REGISTRY_FORMAT:
            raise StoreError(f"{self.registry.path}: registry format {doc.get('format')!r}, expected {REGISTRY_FORMAT}")
        return _normalize(doc)

    def read(self) -> dict[str, Any]:
        """The registry every query reads: this store's, over the base's when layered."""
        own = self.read_own()
        return own if self.base is None else self._merge(own)

    def _merge(self, own: dict[str, Any]) -> dict[str, Any]:
        """The layered view: the base's versions (``store: shipped``) and ours (``store: user``);
        our active version wins when we name one; the history is the base's, then ours."""
        if self.base is None:
            return own
        base = self.base.read()
        merged: dict[str, Any] = {"format": REGISTRY_FORMAT, "models": {}}
        for name in sorted(set(base["models"]) | set(own["models"])):
            b = base["models"].get(name, _empty_entry())
            o = own["models"].get(name, _empty_entry())
            versions = {k: {**m, "store": "shipped"} for k, m in b["versions"].items()}
            versions.update({k: {**m, "store": "user"} for k, m in o["versions"].items()})
            merged["models"][name] = {"active": o["active"] if o["active"] is not None else b["active"],
                                      "history": [*b["history"], *o["history"]], "versions": versions}
        return merged

    def _update(self, change: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Any:
        """One atomic read-modify-write of this store's registry under its lock:
        ``change(own, merged)`` edits ``own``; ``merged`` is the layered view before the change."""
        with self.registry.locked():
            try:
                doc = self._parse(self.registry.load(lock=False).payload)
            except FileNotFoundError:
                doc = {"format": REGISTRY_FORMAT, "models": {}}
            result = change(doc, self._merge(json.loads(json.dumps(doc))))
            self.registry.save(json.dumps(doc, indent=1, sort_keys=True).encode(), lock=False)
        return result

    def signature(self) -> tuple[Any, ...]:
        """Changes whenever a registry this store reads changes (stat of each registry file)."""
        out = []
        for store in (self, self.base):
            if store is None:
                continue
            try:
                st = os.stat(store.registry.path)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

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
            raise StoreError(f"no model {name!r} in {self.describe()}; known: "
                             f"{', '.join(self.names(doc)) or 'none'}") from None

    def active(self, name: str, doc: dict[str, Any] | None = None) -> str | None:
        return self.entry(name, doc).get("active")

    def meta(self, name: str, version: int | str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        versions = self.entry(name, doc)["versions"]
        try:
            return versions[version_label(version)]
        except KeyError:
            raise StoreError(f"{name} has no version {version}; versions: "
                             f"{', '.join(sort_versions(versions)) or 'none'}") from None

    def root_of(self, meta: dict[str, Any]) -> Path:
        """The folder a version's files are relative to (the base's for a shipped version)."""
        return self.base.root if meta.get("store") == "shipped" and self.base is not None else self.root

    def path(self, name: str, version: int | str, doc: dict[str, Any] | None = None) -> Path:
        meta = self.meta(name, version, doc)
        return self.root_of(meta) / meta["file"]

    def file(self, name: str, version: int | str, suffix: str, doc: dict[str, Any] | None = None) -> Path:
        """The path of a version's extra file (``split.json``, ``curve.png``)."""
        meta = self.meta(name, version, doc)
        try:
            return self.root_of(meta) / meta["files"][suffix]["file"]
        except KeyError:
            raise StoreError(f"{name} {show(version)} has no {suffix}") from None

    def read_verified(self, name: str, version: int | str, doc: dict[str, Any] | None = None) -> bytes:
        """The weight file's bytes, after checking its sha256 against the registry (CorruptFileError if not)."""
        meta = self.meta(name, version, doc)
        path = self.root_of(meta) / meta["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptFileError(path, "weight file missing") from None
        actual = sha256_bytes(data)
        if actual != meta["sha256"]:
            raise CorruptFileError(path, f"sha256 {actual[:12]}... does not match the registry's {meta['sha256'][:12]}...")
        return data

    def candidates(self, name: str, doc: dict[str, Any] | None = None) -> list[str]:
        """Versions to try when loading, best first: the active one, earlier active ones (newest first), the rest."""
        entry = self.entry(name, doc)
        order: list[str] = []
        if entry.get("active") is not None and entry["active"] in entry["versions"]:
            order.append(entry["active"])
        for v in reversed(entry.get("history", [])):
            if v not in order and v in entry["versions"]:
                order.append(v)
        for v in reversed(sort_versions(entry["versions"])):
            if v not in order:
                order.append(v)
        return order

    # -- adding versions ------------------------------------------------------------

    def _add(self, name: str, data: bytes, meta: dict[str, Any], extra_files: dict[str, bytes],
             decide: Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str]]) -> Registered:
        def change(doc: dict[str, Any], merged: dict[str, Any]) -> Registered:
            entry = doc["models"].setdefault(name, _empty_entry())
            view = merged["models"].get(name, _empty_entry())
            number = max((n for n in (_number(k, self.namespace) for k in entry["versions"]) if n), default=0) + 1
            version = f"{self.namespace}{number}"
            stem = version if self.namespace else f"v{version}"
            folder = BACKBONE if name == BACKBONE else f"heads/{name}"
            rel = f"{folder}/{stem}.pt"
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            files = {}
            for suffix, content in extra_files.items():
                extra_rel = f"{folder}/{stem}.{suffix}"
                write_atomic(self.root / extra_rel, content)
                files[suffix] = {"file": extra_rel, "sha256": sha256_bytes(content)}
            write_atomic(self.root / rel, data)
            info = {"version": version, "file": rel, "sha256": sha256_bytes(data), "bytes": len(data),
                    "created": utc_now(), "files": files, **meta}
            promote, reason = decide(view, info)
            info["decision"] = reason
            entry["versions"][version] = info
            if promote:
                self._activate(entry, version)
            return Registered(name, version, promote, reason)

        return self._update(change)

    @staticmethod
    def _activate(entry: dict[str, Any], version: str) -> None:
        entry["active"] = version
        entry["history"].append(version)
        if version in entry["versions"]:
            entry["versions"][version]["promoted"] = utc_now()

    def add_backbone(self, data: bytes, *, metrics: dict[str, Any] | None = None, parent: str | None = None,
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

    def add_head(self, signal: str, data: bytes, *, backbone: int | str, metrics: dict[str, Any] | None = None,
                 active_f1: float | None = None, parent: int | str | None = None,
                 data_split: dict[str, Any] | None = None, notes: str = "",
                 extra_files: dict[str, bytes] | None = None) -> Registered:
        """A new head version trained on backbone version ``backbone``, promoted by the version rules.

        ``active_f1``: the active version's F1 measured on the same validation
        data (the fair comparison); when None, the F1 stored with the active version is used.
        """
        check_signal(signal)
        metrics = metrics or {}
        meta = {"metrics": metrics, "parent": None if parent is None else version_label(parent),
                "backbone": version_label(backbone), "data": data_split or {}, "notes": notes}

        def decide(entry: dict[str, Any], info: dict[str, Any]) -> tuple[bool, str]:
            current = entry["active"]
            baseline = active_f1
            if current is not None and baseline is None:
                baseline = entry["versions"].get(current, {}).get("metrics", {}).get("f1")
            if current is not None:
                info["compared_with"] = {"version": current, "f1": baseline}
            return self.rules.decide(metrics.get("f1"), baseline, current is not None)

        return self._add(signal, data, meta, extra_files or {}, decide)

    # -- changing the active version ------------------------------------------------

    def promote(self, name: str, version: int | str) -> Registered:
        """Make ``version`` (of either layer) active; its weights must verify."""
        label = version_label(version)
        self.read_verified(name, label)

        def change(doc: dict[str, Any], merged: dict[str, Any]) -> Registered:
            view = self.entry(name, merged)
            self.meta(name, label, merged)
            if view["active"] == label:
                return Registered(name, label, False, f"{show(label)} is already active")
            self._activate(doc["models"].setdefault(name, _empty_entry()), label)
            return Registered(name, label, True, "promoted by request")

        return self._update(change)

    def rollback(self, name: str) -> Registered:
        """Return to the version that was active before the current one (in a
        layered store: back to the shipped active version once the user's history is used up)."""

        def change(doc: dict[str, Any], merged: dict[str, Any]) -> Registered:
            view = self.entry(name, merged)
            current = view["active"]
            entry = doc["models"].get(name, _empty_entry())
            history = [v for v in entry["history"] if v in view["versions"]]
            while history and history[-1] == current:
                history.pop()
            if history:
                previous, entry["active"] = history[-1], history[-1]
            elif self.base is not None and entry["active"] is not None:
                previous = self.base.read()["models"].get(name, _empty_entry())["active"]
                if previous is None or previous == current:
                    raise StoreError(f"{name}: no earlier active version to roll back to (active: {show(current)})")
                entry["active"] = None  # follow the shipped registry again
            else:
                where = " (the shipped version; promote another one instead)" if self.base is not None else ""
                raise StoreError(f"{name}: no earlier active version to roll back to (active: {show(current)}{where})")
            entry["history"] = history  # the rolled-back version leaves the history
            if current in entry["versions"]:
                entry["versions"][current]["rolled_back"] = utc_now()
            return Registered(name, previous, True, f"rolled back from {show(current)} to {show(previous)}")

        return self._update(change)

    def cleanup(self, keep: int = 3) -> list[str]:
        """Delete all but the newest ``keep`` of this store's own versions of every model; never an
        active version, nor a backbone version an active head was trained on (the shipped layer is read-only)."""
        if keep < 1:
            raise StoreError(f"cleanup keep={keep}: keep at least 1 version")

        def change(doc: dict[str, Any], merged: dict[str, Any]) -> list[str]:
            removed = []
            needed_backbones = {e["versions"].get(e["active"], {}).get("backbone")
                                for n, e in merged["models"].items() if n != BACKBONE and e["active"] is not None}
            for name, entry in doc["models"].items():
                active = merged["models"][name]["active"]
                for v in list(reversed(sort_versions(entry["versions"])))[keep:]:
                    if v == active or v == entry["active"] or (name == BACKBONE and v in needed_backbones):
                        continue
                    meta = entry["versions"].pop(v)
                    for rel in [meta["file"], *(f["file"] for f in meta.get("files", {}).values())]:
                        (self.root / rel).unlink(missing_ok=True)
                    entry["history"] = [h for h in entry["history"] if h != v]
                    removed.append(f"{name} {show(v)}")
            return removed

        return self._update(change)

    # -- checking -----------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Every stored file (of both layers) against its sha256; an empty list means all good."""
        problems: list[Problem] = []
        try:
            doc = self.read()
        except (CorruptFileError, StoreError, ValueError) as exc:
            return [Problem("registry", None, str(self.registry.path), str(exc))]
        for name, entry in doc["models"].items():
            for key, meta in entry["versions"].items():
                root = self.root_of(meta)
                files = [(meta["file"], meta["sha256"])] + [(f["file"], f["sha256"])
                                                             for f in meta.get("files", {}).values()]
                for rel, digest in files:
                    path = root / rel
                    shown = str(path) if self.base is not None else rel
                    if not path.exists():
                        problems.append(Problem(name, key, shown, "missing"))
                    elif sha256_file(path) != digest:
                        problems.append(Problem(name, key, shown, "sha256 mismatch"))
            if entry["active"] is not None and entry["active"] not in entry["versions"]:
                problems.append(Problem(name, entry["active"], "registry.json", "active version not registered"))
        return problems

    def count_files(self, doc: dict[str, Any] | None = None) -> int:
        doc = doc or self.read()
        return sum(1 + len(m.get("files", {})) for e in doc["models"].values() for m in e["versions"].values())


def sort_versions(versions: Any) -> list[str]:
    """Version labels oldest first: shipped numbers, then each namespace's in number order."""
    def key(label: str) -> tuple[str, int]:
        m = VERSION_RE.fullmatch(label)
        return (m.group(1), int(m.group(2))) if m else ("~", 0)

    return sorted(versions, key=key)
