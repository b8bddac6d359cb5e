"""The model registry read through GuardedFile: a truncated registry is restored, never left missing."""

from __future__ import annotations

import shutil

import pytest

from actors.lib.modelstore import ModelStore
from config.paths import resolve_path
from config.storage import CorruptFileError

SHIPPED_REGISTRY = resolve_path("models/registry.json")


def test_a_truncated_copy_of_the_shipped_registry_is_restored_from_the_backup_its_first_read_took(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    shutil.copy(SHIPPED_REGISTRY, root / "registry.json")
    heard: list[str] = []
    store = ModelStore(root, on_recovered=heard.append)
    names = store.names()                          # the first read backs the shipped registry up
    assert names and len(store.registry.backups()) == 1
    size = (root / "registry.json").stat().st_size
    (root / "registry.json").write_bytes((root / "registry.json").read_bytes()[: size // 3])   # truncated
    assert store.names() == names
    assert (root / "registry.json").stat().st_size == size
    assert len(heard) == 1 and store.registry.backups()[0].name in heard[0] and "header says" in heard[0]


def test_a_truncated_registry_without_any_backup_stays_in_place_with_a_clear_error(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    truncated = SHIPPED_REGISTRY.read_bytes()[:500]
    (root / "registry.json").write_bytes(truncated)
    with pytest.raises(CorruptFileError, match="no good backup"):
        ModelStore(root).read()
    assert (root / "registry.json").read_bytes() == truncated      # never missing


def test_the_detector_raises_and_clears_its_registry_alert(supervisor_factory, collector_factory, store_copy):
    from tests.actors.detector.conftest import detector_toml
    from tests.actors.detector.test_detector import ctl

    sup = supervisor_factory(detector_toml(store_copy.root, ["circle"]))
    out = collector_factory(sup, ["monitor.alert", "ctl.reply"])
    sup.wait_running("detector")
    path = store_copy.registry.path
    good = path.read_bytes()
    for backup in store_copy.registry.backups():   # nothing left to restore from
        backup.unlink()
    path.write_bytes(good[:300])
    reply = ctl(sup, out, "load_head", signal="circle")
    assert not reply["ok"] and "no good backup" in reply["error"]
    raised = out.wait_for(lambda m: m.topic == "monitor.alert" and m.body["metric"] == "model.registry.unusable").body
    assert raised["state"] == "raised" and raised["level"] == "critical"
    path.write_bytes(good)
    assert ctl(sup, out, "load_head", signal="circle")["ok"]
    cleared = out.wait_for(lambda m: m.topic == "monitor.alert" and m.body["state"] == "cleared").body
    assert cleared["metric"] == "model.registry.unusable" and cleared["actor"] == "detector"
