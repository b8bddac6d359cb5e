"""``sensorium models``: extract (split vs monolithic), train on the frozen backbone, list/history/verify."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from actors.detector import cli
from actors.detector import model as hm
from actors.lib.scenes import write_dataset
from actors.detector import check_model_store
from actors.detector.settings import DetectorSettings
from tests.support import ROOT, clean_env


def models(store, *args: str) -> int:
    return cli.main(["--store", str(store.root), *args])


def test_extract_splits_a_legacy_checkpoint_with_equal_outputs(tmp_path, store_copy, shipped_models, capsys):
    backbone, heads = shipped_models
    legacy = hm.MonolithicDetector(backbone, heads["circle"])
    ckpt = tmp_path / "legacy_blob.pt"
    torch.save(legacy.state_dict(), ckpt)
    assert models(store_copy, "extract", str(ckpt), "--signal", "blob") == 0
    assert "identical to stored v1" in capsys.readouterr().out
    meta = store_copy.meta("blob", 1)
    assert store_copy.active("blob") == "1" and meta["backbone"] == "1"  # first version; the backbone was reused
    assert sorted(store_copy.entry("backbone")["versions"]) == ["1"]
    backups = list((store_copy.root / ".backups" / "legacy").iterdir())
    assert len(backups) == 1 and backups[0].read_bytes() == ckpt.read_bytes()
    # The split model, read back from the store, answers like the monolithic original.
    split_bb = hm.backbone_from_bytes(store_copy.read_verified("backbone", 1))
    split_head = hm.head_from_bytes(store_copy.read_verified("blob", 1))
    x = torch.rand(3, 3, *hm.INPUT_HW) - 0.5
    with torch.no_grad():
        assert float((legacy.eval()(x) - split_head(split_bb(x))).abs().max()) <= 1e-5


def test_extract_with_its_own_backbone_adds_a_backbone_version(tmp_path, store_copy):
    torch.manual_seed(1)
    other = hm.MonolithicDetector(hm.Backbone((8, 16, 24, 24, 24)), hm.Head(24, 12)).eval()
    ckpt = tmp_path / "other.pt"
    torch.save({"state_dict": other.state_dict()}, ckpt)  # a wrapped layout is accepted too
    assert models(store_copy, "extract", str(ckpt), "--signal", "blob") == 0
    assert store_copy.meta("blob", 1)["backbone"] == "2"
    assert store_copy.active("backbone") == "1"  # a new backbone waits for a manual promote
    bb = hm.backbone_from_bytes(store_copy.read_verified("backbone", 2))
    head = hm.head_from_bytes(store_copy.read_verified("blob", 1))
    assert hm.split_max_abs_diff(other, bb, head) <= 1e-5


def test_extract_refuses_an_unsupported_layout_and_writes_nothing(tmp_path, store_copy, capsys):
    ckpt = tmp_path / "resnet.pt"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3), "classifier.weight": torch.zeros(2, 4)}, ckpt)
    before = store_copy.registry.path.read_bytes()
    assert models(store_copy, "extract", str(ckpt), "--signal", "blob") == 1
    err = capsys.readouterr().err
    assert "expected a single-signal state dict with 'backbone.layers" in err and "['classifier', 'features']" in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    assert models(store_copy, "extract", str(garbage), "--signal", "blob") == 1
    assert "not a readable torch checkpoint" in capsys.readouterr().err
    assert store_copy.registry.path.read_bytes() == before
    assert not (store_copy.root / ".backups" / "legacy").exists()


def test_train_a_new_head_on_the_frozen_backbone_then_extend_it(tmp_path, store_copy, capsys):
    data = tmp_path / "crosses"
    write_dataset(data, 100, ["circle", "cross"], seed=3)
    backbone_before = store_copy.read_verified("backbone", 1)
    assert models(store_copy, "train", "cross", "--data", str(data), "--epochs", "25", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "first version: promoted itself" in out
    meta = store_copy.meta("cross", 1)
    assert store_copy.active("cross") == "1" and meta["backbone"] == "1" and meta["parent"] is None
    m = meta["metrics"]
    assert {"precision", "recall", "f1", "epochs", "best_epoch", "curve"} <= set(m)
    assert m["f1"] > 0.5, m  # a real signal learnt from 80 samples on the frozen backbone
    assert store_copy.read_verified("backbone", 1) == backbone_before  # frozen: untouched
    split = json.loads(store_copy.file("cross", 1, "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 100 and not set(split["train"]) & set(split["val"])
    assert store_copy.file("cross", 1, "curve.png").read_bytes()[:4] == b"\x89PNG"

    # --extend: starts from v1, keeps its split, is compared with v1 on the same validation data.
    write_dataset(tmp_path / "more", 20, ["cross", "ring"], seed=4)
    for p in (tmp_path / "more").iterdir():
        p.rename(data / f"b{p.name}")
    assert models(store_copy, "train", "cross", "--data", str(data), "--extend", "--epochs", "5",
                  "--no-progress") == 0
    meta2 = store_copy.meta("cross", 2)
    split2 = json.loads(store_copy.file("cross", 2, "split.json").read_text())
    assert meta2["parent"] == "1" and set(split["val"]) <= set(split2["val"]) and set(split["train"]) <= set(split2["train"])
    gain = meta2["metrics"]["f1"] - meta2["metrics"]["active_on_same_val"]["f1"]
    assert (store_copy.active("cross") == "2") == (gain * 100 > 2.0), meta2["decision"]


def test_list_history_verify_and_the_validate_check(store_copy, capsys):
    assert models(store_copy, "list") == 0
    out = capsys.readouterr().out
    for name in ("backbone", "circle", "square", "triangle"):
        assert name in out
    assert models(store_copy, "history", "circle") == 0
    assert "ACTIVE" in capsys.readouterr().out
    assert models(store_copy, "verify") == 0
    path = store_copy.path("triangle", 1)
    path.write_bytes(path.read_bytes() + b"!")
    assert models(store_copy, "verify") == 1
    assert "triangle v1" in capsys.readouterr().out
    assert models(store_copy, "history", "nosuch") == 1
    assert models(store_copy, "rollback", "circle") == 1  # nothing to roll back to
    [check] = check_model_store("detector", DetectorSettings())  # `sensorium validate` verifies the shipped store
    assert check.status == "ok", check.detail


@pytest.mark.slow
def test_models_is_a_sensorium_command(store_copy):
    done = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "models", "--store", str(store_copy.root),
                           "promote", "circle", "1"], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "already active" in done.stdout
