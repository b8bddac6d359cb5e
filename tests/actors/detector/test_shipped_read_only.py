"""The shipped model store is read-only: using it writes nothing into the checkout, not even ignored files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from actors.lib.model_migration import open_layered
from config.storage import CorruptFileError, GuardedFile, seal
from tests.support import ROOT


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_reading_and_training_over_the_shipped_store_leaves_it_untouched(tmp_path):
    shipped = tmp_path / "models"
    shutil.copytree(ROOT / "models", shipped, ignore=shutil.ignore_patterns(".backups", ".quarantine", "*.lock"))
    before = tree(shipped)
    store = open_layered(shipped, tmp_path / "user", say=lambda line: None)
    assert store.active("circle") == "1"
    store.promote("circle", "1")   # a user decision: it lands in the user store
    assert store.active("circle") == "1" and (tmp_path / "user" / "registry.json").exists()
    assert tree(shipped) == before, "the shipped store changed (a lock, a backup or a rewrite)"


def test_a_read_only_guarded_file_refuses_to_write_and_reports_corruption_in_place(tmp_path):
    path = tmp_path / "registry.json"
    path.write_bytes(seal(b'{"format": 1}'))
    ro = GuardedFile(path, read_only=True)
    assert ro.load().payload == b'{"format": 1}'
    with pytest.raises(PermissionError):
        ro.save(b"{}")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CorruptFileError, match="read-only"):
        ro.load()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json"]


def test_validate_checks_the_shipped_store_without_writing_into_it(tmp_path):
    from actors.detector import check_model_store
    from actors.detector.settings import DetectorSettings

    shipped = tmp_path / "models"
    shutil.copytree(ROOT / "models", shipped, ignore=shutil.ignore_patterns(".backups", ".quarantine", "*.lock"))
    before = tree(shipped)
    [check] = check_model_store("detector", DetectorSettings(models_dir=str(shipped)))
    assert check.status == "ok", check.detail
    assert tree(shipped) == before and not (shipped / ".backups").exists()
