"""The user model store layered over the read-only shipped one, and moving what an earlier release
wrote into the checkout (no torch: the store works on bytes)."""

from __future__ import annotations

import pytest

from actors.lib.model_migration import needs_migration, open_layered, write_manifest
from actors.lib.modelstore import BACKBONE, ModelStore, StoreError, show, user_models_dir, version_label
from config.storage import sha256_file


def _shipped(tmp_path) -> ModelStore:
    """A shipped store like models/: backbone v1 and circle v1, with its manifest."""
    shipped = ModelStore(tmp_path / "shipped")
    shipped.add_backbone(b"backbone-1", extra_files={"split.json": b"{}"})
    shipped.add_head("circle", b"circle-1", backbone=1, metrics={"f1": 0.9}, extra_files={"split.json": b"{}"})
    write_manifest(shipped)
    return shipped


def _snapshot(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and ".backups" not in p.parts and not p.name.endswith(".lock")}


def test_version_names_and_the_default_user_folder(user_data_dir):
    assert [version_label(v) for v in (2, "2", "v2", "u3")] == ["2", "2", "2", "u3"]
    assert (show("2"), show("u3")) == ("v2", "u3")
    for bad in ("0", "x", "u", "2u", "-1"):
        with pytest.raises(StoreError, match="version"):
            version_label(bad)
    assert user_models_dir("") == user_data_dir / "sensorium" / "models"


def test_user_versions_live_in_their_own_namespace_over_the_read_only_shipped_store(tmp_path):
    shipped = _shipped(tmp_path)
    before = _snapshot(shipped.root)
    store = ModelStore.layered(shipped.root, tmp_path / "user")
    assert store.active("circle") == "1" and store.meta("circle", 1)["store"] == "shipped"

    reg = store.add_head("circle", b"circle-u1", backbone=1, metrics={"f1": 0.5})  # worse: waits
    assert (reg.version, reg.promoted) == ("u1", False) and store.active("circle") == "1"
    assert store.path("circle", "u1") == tmp_path / "user" / "heads" / "circle" / "u1.pt"
    assert store.read_verified("circle", "u1") == b"circle-u1" and store.read_verified("circle", "1") == b"circle-1"
    cross = store.add_head("cross", b"cross-u1", backbone=1, metrics={"f1": 0.3})  # a new signal: first version
    assert (cross.version, cross.promoted) == ("u1", True) and store.active("cross") == "u1"

    assert store.promote("circle", "u1").promoted and store.active("circle") == "u1"
    assert store.entry("circle")["history"] == ["1", "u1"]
    back = store.rollback("circle")  # the user's history is used up: the shipped version again
    assert back.version == "1" and store.active("circle") == "1"
    assert store.read_own()["models"]["circle"]["active"] is None  # following the shipped registry
    with pytest.raises(StoreError, match="shipped version"):
        store.rollback("circle")
    assert store.promote("circle", "v1").reason == "v1 is already active"
    with pytest.raises(StoreError, match="no version u9"):
        store.promote("circle", "u9")
    assert _snapshot(shipped.root) == before  # nothing written into the shipped store
    assert store.verify() == [] and store.count_files() == 6

    # A later release ships circle v2 (better: it promotes itself there): no collision with u1, and a user
    # who never pinned a version follows the release.
    shipped.add_head("circle", b"circle-2", backbone=1, metrics={"f1": 0.99})
    assert sorted(store.entry("circle")["versions"]) == ["1", "2", "u1"] and store.active("circle") == "2"
    store.promote("circle", "u1")
    assert store.active("circle") == "u1"  # the user's choice wins over the release's
    shipped_files = _snapshot(shipped.root)
    for i in range(4):
        store.add_head("circle", f"more {i}".encode(), backbone=1, metrics={"f1": 0.1})
    removed = store.cleanup(keep=1)
    assert sorted(removed) == ["circle u2", "circle u3", "circle u4"]  # never the active u1, never shipped
    assert _snapshot(shipped.root) == shipped_files


def test_models_an_earlier_release_wrote_into_the_checkout_move_to_the_user_store(tmp_path):
    shipped = _shipped(tmp_path)
    committed = shipped.registry.path.read_bytes()
    clean = _snapshot(shipped.root)
    # What an earlier release did: train into models/ (circle v2 promoted, a new signal, a new backbone).
    shipped.add_head("circle", b"circle-2", backbone=1, metrics={"f1": 0.95}, extra_files={"curve.png": b"png"})
    shipped.add_backbone(b"backbone-2")
    shipped.add_head("cross", b"cross-1", backbone=2, metrics={"f1": 0.7})
    assert shipped.active("circle") == "2" and needs_migration(shipped.root)

    said: list[str] = []
    store = open_layered(shipped.root, tmp_path / "user", say=said.append)
    assert any("circle v2 -> user store u1" in line for line in said), said
    assert any("restored" in line for line in said)
    assert shipped.registry.path.read_bytes() == committed and _snapshot(shipped.root) == clean
    assert not needs_migration(shipped.root)
    assert store.active("circle") == "u1" and store.read_verified("circle", "u1") == b"circle-2"
    assert store.read_verified("circle", "u1") and store.file("circle", "u1", "curve.png").read_bytes() == b"png"
    assert store.active(BACKBONE) == "1" and store.meta(BACKBONE, "u1")["notes"].endswith("backbone/v2.pt)")
    assert store.active("cross") == "u1" and store.meta("cross", "u1")["backbone"] == "u1"  # the moved backbone
    assert store.verify() == []
    # Once is enough: a second start moves nothing.
    again: list[str] = []
    open_layered(shipped.root, tmp_path / "user", say=again.append)
    assert again == [] and sorted(store.entry("circle")["versions"]) == ["1", "u1"]


def test_the_shipped_manifest_matches_the_committed_models():
    from actors.lib.model_migration import read_manifest
    from actors.lib.modelstore import DEFAULT_STORE

    manifest = read_manifest(DEFAULT_STORE)
    assert manifest is not None and not needs_migration(DEFAULT_STORE), \
        "models/registry.json differs from models/shipped.json: rerun make_weights (it writes both)"
    shipped = ModelStore(DEFAULT_STORE, read_only=True)
    doc = shipped.read_own()
    listed = {rel for e in doc["models"].values() for m in e["versions"].values()
              for rel in [m["file"], *(f["file"] for f in m.get("files", {}).values())]}
    assert set(manifest["files"]) == listed
    assert all(sha256_file(DEFAULT_STORE / rel) == digest for rel, digest in manifest["files"].items())
