"""``sensorium gesture`` subcommands as a user runs them (real processes, real files)."""

from __future__ import annotations

import json
import subprocess
import sys

from actors.lib.gesture.store import GestureStore
from tests.support import ROOT, clean_env


def gesture(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "gesture", *args], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=120)


def test_train_list_show_export_import_delete(store_copy, tmp_path, shipped_db):
    store = str(store_copy)
    trained = gesture("train", "--store", store, "--folds", "3")
    assert trained.returncode == 0, trained.stderr
    assert "cross-validation accuracy 1.000 (3 folds" in trained.stdout
    # Not a terminal: progress as whole lines, no carriage-return redraws.
    assert "cross-validation: 3/3 step (100%)" in trained.stderr and "\r" not in trained.stderr
    listed = gesture("list", "--store", store)
    assert listed.returncode == 0 and f"{len(shipped_db.gestures)} gestures" in listed.stdout
    assert all(name in listed.stdout for name in shipped_db.gestures)
    shown = json.loads(gesture("show", "punch", "--store", store).stdout)
    assert shown["name"] == "punch" and len(shown["samples_detail"]) == shown["samples"] and shown["accuracy"] == 1.0
    out = tmp_path / "two.gst"
    assert gesture("export", str(out), "wave", "lift", "--store", store).returncode == 0
    other = str(tmp_path / "other" / "store.gst")
    imported = gesture("import", str(out), "--store", other)
    assert imported.returncode == 0 and "imported lift, wave" in imported.stderr
    assert sorted(GestureStore(other).load().db.gestures) == ["lift", "wave"]
    again = gesture("import", str(out), "--store", other)
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert gesture("delete", "wave", "--store", other).returncode == 0
    missing = gesture("show", "wave", "--store", other)
    assert missing.returncode == 1 and "no gesture 'wave'; known: lift" in missing.stderr
    bad_name = gesture("record", "no spaces", "--store", other)
    assert bad_name.returncode == 1 and "gesture name" in bad_name.stderr
