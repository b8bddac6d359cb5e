"""The model store's version rules, rollback, cleanup and checksums (no torch: the store works on bytes)."""

from __future__ import annotations

import json

import pytest

from actors.lib.modelstore import BACKBONE, ModelStore, StoreError, VersionRules
from config.storage import CorruptFileError


def _store(tmp_path, margin: float = 2.0) -> ModelStore:
    store = ModelStore(tmp_path / "models", VersionRules(margin))
    store.add_backbone(b"backbone-1")
    return store


def _head(store: ModelStore, f1: float | None, tag: str = "", **kw):
    metrics = {} if f1 is None else {"f1": f1}
    return store.add_head("circle", f"weights {f1} {tag}".encode(), backbone=1, metrics=metrics, **kw)


def test_first_version_promotes_itself(tmp_path):
    store = _store(tmp_path)
    assert store.active(BACKBONE) == "1"
    reg = _head(store, 0.5)
    assert (reg.version, reg.promoted) == ("1", True) and "first version" in reg.reason
    assert store.active("circle") == "1"
    meta = store.meta("circle", 1)
    assert (store.root / meta["file"]).read_bytes() == b"weights 0.5 "
    assert meta["backbone"] == "1" and meta["created"] and len(meta["sha256"]) == 64


def test_auto_promote_only_above_the_margin(tmp_path):
    store = _store(tmp_path)
    _head(store, 0.80)
    small = _head(store, 0.815)  # +1.5 points: waits
    assert not small.promoted and "waits" in small.reason and store.active("circle") == "1"
    equal = _head(store, 0.82)  # +2.0 points: not *more* than 2, waits
    assert not equal.promoted and store.active("circle") == "1"
    big = _head(store, 0.83)  # +3 points over the active 0.80: promoted
    assert big.promoted and store.active("circle") == big.version == "4"
    worse = _head(store, 0.70)
    assert not worse.promoted and store.active("circle") == "4"
    assert store.meta("circle", 4)["compared_with"] == {"version": "1", "f1": 0.80}


def test_margin_is_configurable_and_same_val_f1_wins(tmp_path):
    store = _store(tmp_path, margin=10.0)
    _head(store, 0.50)
    assert not _head(store, 0.55).promoted  # +5 < 10
    # The active version measured on the new version's validation data is the fair baseline.
    reg = _head(store, 0.55, "b", active_f1=0.40)
    assert reg.promoted and store.active("circle") == "3"


def test_no_f1_waits_for_manual_promote_and_promote_switches(tmp_path):
    store = _store(tmp_path)
    _head(store, 0.9)
    reg = _head(store, None)
    assert not reg.promoted and store.active("circle") == "1"
    store.promote("circle", 2)
    assert store.active("circle") == "2"
    assert store.entry("circle")["history"] == ["1", "2"]
    with pytest.raises(StoreError, match="no version 7"):
        store.promote("circle", 7)


def test_rollback_returns_to_the_previous_active_version(tmp_path):
    store = _store(tmp_path)
    _head(store, 0.5)
    _head(store, 0.7)   # promoted (+20)
    _head(store, 0.9)   # promoted (+20)
    assert store.active("circle") == "3"
    assert store.rollback("circle").version == "2"
    assert store.active("circle") == "2"
    assert store.rollback("circle").version == "1"
    with pytest.raises(StoreError, match="no earlier active version"):
        store.rollback("circle")
    assert store.active("circle") == "1"
    assert "rolled_back" in store.meta("circle", 3)


def test_cleanup_keeps_newest_n_and_never_the_active(tmp_path):
    store = _store(tmp_path)
    _head(store, 0.9)                    # v1 active
    for i in range(4):
        _head(store, 0.5, tag=str(i))    # v2..v5 wait
    files = {v: store.path("circle", v) for v in range(1, 6)}
    removed = store.cleanup(keep=2)
    assert sorted(removed) == ["circle v2", "circle v3"]
    assert sorted(store.entry("circle")["versions"]) == ["1", "4", "5"]
    assert store.active("circle") == "1" and files[1].exists()
    assert not files[2].exists() and not files[3].exists() and files[5].exists()
    assert store.verify() == []
    with pytest.raises(StoreError):
        store.cleanup(keep=0)


def test_cleanup_keeps_the_backbone_an_active_head_needs(tmp_path):
    store = _store(tmp_path)
    _head(store, 0.9)  # on backbone v1
    for i in range(3):
        store.add_backbone(f"bb{i}".encode())
    store.promote(BACKBONE, 4)
    store.cleanup(keep=1)
    assert sorted(store.entry(BACKBONE)["versions"]) == ["1", "4"]


def test_verify_and_read_verified_catch_a_corrupted_weight_file(tmp_path):
    store = _store(tmp_path)
    _head(store, 0.9)
    assert store.verify() == []
    path = store.path("circle", 1)
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    problems = store.verify()
    assert [(p.name, p.version, p.reason) for p in problems] == [("circle", "1", "sha256 mismatch")]
    with pytest.raises(CorruptFileError, match="does not match"):
        store.read_verified("circle", 1)
    with pytest.raises(CorruptFileError):
        store.promote("circle", 1)
    path.unlink()
    assert store.verify()[0].reason == "missing"


def test_corrupt_registry_is_restored_from_its_backup(tmp_path):
    recovered = []
    store = _store(tmp_path)
    _head(store, 0.9)
    _head(store, 0.95)  # a save that leaves the previous registry as a backup
    store = ModelStore(store.root, on_recovered=recovered.append)
    raw = store.registry.path.read_bytes()
    store.registry.path.write_bytes(raw.replace(b'"circle"', b'"circlE"', 1))
    doc = store.read()
    assert recovered and "restored" in recovered[0]
    assert "circle" in doc["models"] and list((store.root / ".quarantine").iterdir())


def test_registry_is_sealed_json_and_signal_names_are_checked(tmp_path):
    store = _store(tmp_path)
    raw = store.registry.path.read_bytes()
    assert raw.startswith(b"SENSORIUM-SEALED")
    payload = json.loads(raw.split(b"\n", 1)[1])
    assert payload["models"]["backbone"]["active"] == "1"
    for bad in ("Circle", "backbone", "a.b", ""):
        with pytest.raises(StoreError, match="signal name"):
            store.add_head(bad, b"x", backbone=1)
