"""Moving models an earlier release wrote into the checkout's ``models/`` to the user store.

Earlier releases trained and promoted into the repository's ``models/``.
``models/shipped.json`` (committed) names what a release ships: the sha256
of ``registry.json`` as committed and every shipped file with its sha256.
When the checkout's registry differs from it, ``migrate_checkout``

1. copies every version that is not shipped into the user store as a user
   version (``u1``, ``u2``... in the order of the old numbers; references to
   moved backbones and parents follow), skipping ones already moved;
2. carries over which version was active when it was not the shipped one;
3. puts the committed ``registry.json`` back (from the registry's own backups,
   else from git) and deletes the moved files from the checkout.

It runs when the detector starts and when ``sensorium models`` runs, under
the shipped registry's lock, and says what it moved.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from actors.lib.modelstore import BACKBONE, ModelStore, _empty_entry, show, sort_versions, version_label
from config.storage import sha256_bytes, sha256_file, unseal, write_atomic

MANIFEST = "shipped.json"
MANIFEST_FORMAT = 1


def write_manifest(shipped: ModelStore) -> Path:
    """Record what ``shipped`` holds as the release's shipped models (run by make_weights)."""
    doc = shipped.read_own()
    files = {}
    for entry in doc["models"].values():
        for meta in entry["versions"].values():
            for rel in [meta["file"], *(f["file"] for f in meta.get("files", {}).values())]:
                files[rel] = sha256_file(shipped.root / rel)
    manifest = {"format": MANIFEST_FORMAT, "registry_sha256": sha256_file(shipped.registry.path),
                "files": dict(sorted(files.items()))}
    path = shipped.root / MANIFEST
    write_atomic(path, (json.dumps(manifest, indent=1) + "\n").encode())
    return path


def read_manifest(shipped_root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((shipped_root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def needs_migration(shipped_root: Path) -> bool:
    """Cheap check (no lock, no write): the registry is not the committed one."""
    manifest = read_manifest(shipped_root)
    registry = shipped_root / "registry.json"
    return manifest is not None and registry.exists() and sha256_file(registry) != manifest["registry_sha256"]


def _committed_registry(shipped: ModelStore, digest: str) -> bytes | None:
    """The registry's committed bytes: from its backups, else from git."""
    for backup in reversed(shipped.registry.backups()):
        raw = backup.read_bytes()
        if sha256_bytes(raw) == digest:
            return raw
    try:
        rel = shipped.registry.path.resolve().relative_to(Path(_git_root(shipped.root)))
        raw = subprocess.run(["git", "-C", str(shipped.root), "show", f"HEAD:{rel.as_posix()}"],
                             capture_output=True, check=True, timeout=30).stdout
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return raw if sha256_bytes(raw) == digest else None


def _git_root(folder: Path) -> str:
    return subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def migrate_checkout(shipped: ModelStore, user: ModelStore) -> list[str]:
    """Move what an earlier release wrote into ``shipped`` to ``user``; returns what it did, one line each."""
    if not needs_migration(shipped.root):
        return []
    manifest = read_manifest(shipped.root)
    assert manifest is not None
    shipped_files: dict[str, str] = manifest["files"]
    said: list[str] = []
    # The user store alone: the layered one would read (and lock) the shipped registry we hold locked.
    user = ModelStore(user.root, user.rules, namespace=user.namespace)
    with shipped.registry.locked():
        if not needs_migration(shipped.root):
            return []  # another process did it while we waited
        old = shipped._parse(shipped.registry.load(lock=False).payload)
        committed = _committed_registry(shipped, manifest["registry_sha256"])
        shipped_doc = shipped._parse(unseal(committed)[0]) if committed else None

        def is_shipped(meta: dict[str, Any]) -> bool:
            return shipped_files.get(meta["file"]) == meta["sha256"]

        moved_files: list[Path] = []
        mapping: dict[tuple[str, str], str] = {}
        # Backbones first: heads refer to them.
        for name in sorted(old["models"], key=lambda n: n != BACKBONE):
            entry = old["models"][name]
            for version in sort_versions(entry["versions"]):
                meta = entry["versions"][version]
                if is_shipped(meta):
                    continue
                new = _copy_version(shipped, user, name, version, meta, mapping)
                mapping[(name, version)] = new
                said.append(f"{name} {show(version)} -> user store {show(new)} ({user.root})")
                moved_files += [shipped.root / meta["file"],
                                *(shipped.root / f["file"] for f in meta.get("files", {}).values())]
        _carry_active(old, shipped_doc, user, mapping, said)
        if committed is None:
            said.append(f"could not restore the committed {shipped.registry.path} (no matching backup, no git): "
                        "run `git checkout models/registry.json`")
        else:
            write_atomic(shipped.registry.path, committed)
            for path in moved_files:
                if path.relative_to(shipped.root).as_posix() not in shipped_files:
                    path.unlink(missing_ok=True)
            said.append(f"{shipped.registry.path} restored to the shipped version")
    return said


def _copy_version(shipped: ModelStore, user: ModelStore, name: str, version: str, meta: dict[str, Any],
                  mapping: dict[tuple[str, str], str]) -> str:
    """Add one checkout version to the user store (or find it there already); its new label."""
    data = (shipped.root / meta["file"]).read_bytes()
    existing = user.read_own()["models"].get(name, _empty_entry())["versions"]
    for label, m in existing.items():
        if m["sha256"] == sha256_bytes(data) and m.get("migrated_from") == meta["file"]:
            return label
    extra = {suffix: (shipped.root / f["file"]).read_bytes() for suffix, f in meta.get("files", {}).items()
             if (shipped.root / f["file"]).exists()}
    notes = (meta.get("notes", "") + f" (moved from the checkout's models/{meta['file']})").strip()

    def ref(model: str, v: str | None) -> str | None:
        return None if v is None else mapping.get((model, version_label(v)), v)

    def keep_inactive(_entry: dict[str, Any], _info: dict[str, Any]) -> tuple[bool, str]:
        return False, f"moved from the checkout (was {show(version)}); the active version is carried over separately"

    if name == BACKBONE:
        meta_in = {"metrics": meta.get("metrics", {}), "parent": ref(BACKBONE, meta.get("parent")),
                   "data": meta.get("data", {}), "notes": notes}
    else:
        meta_in = {"metrics": meta.get("metrics", {}), "parent": ref(name, meta.get("parent")),
                   "backbone": ref(BACKBONE, meta.get("backbone")), "data": meta.get("data", {}), "notes": notes}
    meta_in["migrated_from"] = meta["file"]
    return user._add(name, data, meta_in, extra, keep_inactive).version


def _carry_active(old: dict[str, Any], shipped_doc: dict[str, Any] | None, user: ModelStore,
                  mapping: dict[tuple[str, str], str], said: list[str]) -> None:
    """Where the checkout's active version was not the shipped one, the user store's becomes it."""
    def change(doc: dict[str, Any], _merged: dict[str, Any]) -> None:
        for name, entry in old["models"].items():
            active = entry.get("active")
            if active is None:
                continue
            shipped_active = (shipped_doc or {"models": {}})["models"].get(name, {}).get("active")
            target = mapping.get((name, active), active)
            mine = doc["models"].setdefault(name, _empty_entry())
            if target == shipped_active or mine["active"] is not None:
                continue
            mine["active"] = target
            mine["history"].append(target)
            said.append(f"{name}: {show(target)} active in the user store (was {show(active)} in the checkout)")

    user._update(change)


def open_layered(shipped: Path | str, user: Path | str | None, say: Any, rules: Any = None,
                 on_recovered: Any = None) -> ModelStore:
    """The user store over the shipped one, after moving what an earlier release left in the checkout
    (``say(line)`` hears of each thing moved). What the detector and ``sensorium models`` open."""
    store = ModelStore.layered(shipped, user, rules=rules, on_recovered=on_recovered)
    assert store.base is not None
    for line in migrate_checkout(store.base, store):
        say(line)
    return store
