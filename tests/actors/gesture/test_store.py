"""The gesture store: torn writes impossible, corruption recovered (with an alert from the
actor), concurrent editors, legacy migration, export/import, sample validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from actors.lib.gesture.store import GestureStore, Sample, SampleError, StoreError, sample_problems
from actors.lib.gesture.training import train
from actors.lib.imu.synthetic import make_sample
from config.storage import write_atomic
from tests.actors.gesture.conftest import SHIPPED
from tests.support import ROOT, clean_env

SAVER = """
import sys, numpy as np
from actors.lib.gesture.store import Gesture, GestureDB, GestureStore, Sample
store = GestureStore(sys.argv[1], keep=3)
rng = np.random.default_rng(0)
t = np.arange(500) / 100.0
acc, gyro = rng.normal(0, 5, (500, 3)), rng.normal(0, 1, (500, 3))
n = 0
while True:
    n += 1
    # ~5 MB per save, so that a kill lands inside a write most of the time
    with store.edit() as db:
        db.gestures["g"] = Gesture("g", samples=[Sample(t, acc, gyro, id=f"s{n}-{k}") for k in range(300)])
    print(n, flush=True)
"""


def test_kill_9_in_the_middle_of_saves_leaves_the_old_or_the_new_version(tmp_path):
    path = tmp_path / "store.gst"
    revisions, torn = [], 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=ROOT, env=clean_env(),
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()                      # at least one save done
        # Kill the moment the next save's temp file appears: inside the write.
        deadline = time.monotonic() + 60
        while not any(name.endswith(".tmp") for name in os.listdir(tmp_path)):   # tight: a write lasts ms
            assert time.monotonic() < deadline, "no save in progress seen within 60 s"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        torn += bool(list(tmp_path.glob(".store.gst.*.tmp")))
        loaded = GestureStore(path, keep=3).load()  # verifies the sha256
        assert loaded.recovered_from is None, loaded.error
        samples = loaded.db.gestures["g"].samples
        assert len(samples) == 300 and len(samples[0].t) == 500
        assert len({s.id.split("-")[0] for s in samples}) == 1      # one version, not a mix
        revisions.append(loaded.db.revision)
    assert revisions == sorted(revisions) and revisions[-1] > revisions[0]
    assert torn >= 1, "no kill landed inside a write"
    # The killed writers' temp files are cleaned up by the next load.
    assert not list(tmp_path.glob(".store.gst.*.tmp"))


def test_concurrent_editors_in_two_processes_lose_nothing(tmp_path):
    path = tmp_path / "store.gst"
    GestureStore(path).save(GestureStore(path).load().db)
    editor = f"""
import sys, numpy as np
from actors.lib.gesture.store import GestureStore, Sample
from actors.lib.imu.synthetic import make_sample
store = GestureStore({str(path)!r})
rng = np.random.default_rng(int(sys.argv[1]))
for i in range(8):
    with store.edit() as db:
        s = make_sample("wave", rng)
        db.add_samples(f"p{{sys.argv[1]}}_{{i}}", [Sample(s.t, s.acc, s.gyro)])
"""
    procs = [subprocess.Popen([sys.executable, "-c", editor, str(k)], cwd=ROOT, env=clean_env()) for k in (1, 2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    names = set(GestureStore(path).load().db.gestures)
    assert names == {f"p{k}_{i}" for k in (1, 2) for i in range(8)}


def test_corrupt_store_is_restored_to_its_last_change_and_the_actor_alerts(supervisor_factory, collector_factory,
                                                                          store_copy, shipped_db):
    store = GestureStore(store_copy)
    with store.edit() as db:                       # the last change: twist deleted
        del db.gestures["twist"]
    raw = bytearray(store_copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF                     # a bit flips on disk
    store_copy.write_bytes(bytes(raw))
    sup = supervisor_factory(f"""
[actors.gesture]
heartbeat_s = 0.5
settings = {{ store = {{ path = "{store_copy}", seed_path = "" }}, reload_check_s = 0.2 }}
""")
    out = collector_factory(sup, ["monitor.alert", "sys.heartbeat"])
    sup.wait_running("gesture")
    alert = out.wait_for(lambda m: m.topic == "monitor.alert").body
    assert alert["metric"] == "gesture.store.corrupt" and alert["actor"] == "gesture"
    assert "sha256" in alert["message"] and "restored" in alert["message"]
    quarantined = list((store_copy.parent / ".quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].read_bytes() == bytes(raw)
    # The last revision came back from the backup (twist stays deleted), and the actor runs with it.
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "gesture"
                 and m.body["extra"]["templates"] == len(shipped_db.gestures) - 1)
    assert set(GestureStore(store_copy).load().db.gestures) == set(shipped_db.gestures) - {"twist"}
    # A change by another process (the CLI) is picked up without a restart.
    done = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "gesture", "delete", "wave", "--store",
                           str(store_copy)], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "gesture"
                 and m.body["extra"]["templates"] == len(shipped_db.gestures) - 2 and m.body["extra"]["reloads"] >= 2)


def test_a_seeded_store_is_backed_up_at_once_and_restored_when_corrupt(tmp_path, shipped_db):
    path = tmp_path / "gestures" / "store.gst"
    store = GestureStore(path, seed_path=SHIPPED)
    first = store.load()
    assert first.seeded_from == SHIPPED and first.backed_up is not None
    assert not (SHIPPED.parent / ".backups").exists()          # the shipped seed itself is only read
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])   # truncated
    loaded = GestureStore(path, seed_path=SHIPPED).load()
    assert loaded.recovered_from == first.backed_up and loaded.seeded_from is None
    assert set(loaded.db.gestures) == set(shipped_db.gestures)


def test_store_unusable_alert_is_cleared_once_the_store_loads_again(supervisor_factory, collector_factory,
                                                                   store_copy, shipped_db):
    good = store_copy.read_bytes()
    store_copy.write_bytes(good[:1000])            # truncated, and never backed up: nothing to restore
    sup = supervisor_factory(f"""
[actors.gesture]
heartbeat_s = 0.5
settings = {{ store = {{ path = "{store_copy}", seed_path = "" }}, reload_check_s = 0.2 }}
""")
    out = collector_factory(sup, ["monitor.alert", "sys.heartbeat"])
    sup.wait_running("gesture")
    raised = out.wait_for(lambda m: m.topic == "monitor.alert").body
    assert raised["metric"] == "gesture.store.unusable" and raised["state"] == "raised"
    assert store_copy.read_bytes() == good[:1000]   # left in place for a person to look at, not moved away
    write_atomic(store_copy, good)                 # a person puts a good store back
    cleared = out.wait_for(lambda m: m.topic == "monitor.alert" and m.body["state"] == "cleared").body
    assert cleared["metric"] == "gesture.store.unusable" and cleared["actor"] == "gesture"
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "gesture"
                 and m.body["extra"]["templates"] == len(shipped_db.gestures))


def test_legacy_templates_json_is_migrated_trained_and_kept_aside(tmp_path):
    rng = np.random.default_rng(5)
    legacy = {}
    for name in ("wave", "punch", "circle"):
        rows = []
        for _ in range(4):
            s = make_sample(name, rng, rate_hz=50.0)
            rows.append(np.hstack([s.acc, s.gyro]).round(4).tolist())
        legacy[name] = rows
    legacy["wave"].append([[0.0] * 6] * 5)                                 # too short: skipped
    legacy["broken"] = "not a list"
    (tmp_path / "templates.json").write_text(json.dumps(legacy))
    loaded = GestureStore(tmp_path / "store.gst").load()
    assert loaded.migrated_from == tmp_path / "templates.json.migrated" and loaded.migrated_from.exists()
    assert not (tmp_path / "templates.json").exists()
    assert sorted(loaded.db.gestures) == ["circle", "punch", "wave"]
    assert len(loaded.db.gestures["wave"].samples) + len(loaded.db.gestures["wave"].outliers) == 4
    assert any("wave[4]" in s and "readings" in s for s in loaded.skipped)
    assert any("broken" in s for s in loaded.skipped)
    assert all(g.trained and g.version == 1 for g in loaded.db.gestures.values())
    again = GestureStore(tmp_path / "store.gst").load()                  # migrated once only
    assert again.migrated_from is None and again.db.revision == loaded.db.revision


def test_export_import_round_trip_and_name_conflicts(tmp_path, store_copy, shipped_db):
    store = GestureStore(store_copy)
    assert store.export(tmp_path / "two.gst", ["wave", "punch"]) == 2
    other = GestureStore(tmp_path / "other" / "store.gst")
    assert other.import_file(tmp_path / "two.gst") == ["punch", "wave"]
    got = other.load().db.gestures["wave"]
    want = shipped_db.gestures["wave"]
    assert [s.id for s in got.samples] == [s.id for s in want.samples]
    np.testing.assert_array_equal(got.samples[0].acc, want.samples[0].acc)
    with pytest.raises(StoreError, match="exist already"):
        other.import_file(tmp_path / "two.gst")
    assert other.import_file(tmp_path / "two.gst", overwrite=True) == ["punch", "wave"]
    assert other.load().db.gestures["wave"].version == want.version + 1
    bad = bytearray((tmp_path / "two.gst").read_bytes())
    bad[-10] ^= 0x01
    (tmp_path / "bad.gst").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="sha256"):
        other.import_file(tmp_path / "bad.gst", overwrite=True)


def test_sample_validation_names_every_problem():
    rng = np.random.default_rng(1)
    good = make_sample("circle", rng)
    assert sample_problems(Sample(good.t, good.acc, good.gyro)) == []
    t = np.arange(10) / 100.0
    assert any("10 readings" in p for p in sample_problems(Sample(t, np.ones((10, 3)), np.zeros((10, 3)))))
    acc = good.acc.copy()
    acc[5] = np.nan
    assert sample_problems(Sample(good.t, acc, good.gyro)) == ["NaN or inf readings"]
    acc = good.acc.copy()
    acc[5] = [400, 0, 0]
    assert any("16 g" in p for p in sample_problems(Sample(good.t, acc, good.gyro)))
    back = good.t.copy()
    back[3] = back[2]
    assert any("increasing" in p for p in sample_problems(Sample(back, good.acc, good.gyro)))
    still = np.random.default_rng(2).normal(0, 0.05, good.acc.shape)
    assert any("no motion" in p for p in sample_problems(Sample(good.t, still, still)))
    from actors.lib.gesture.store import GestureDB

    with pytest.raises(SampleError, match="no motion"):
        GestureDB().add_samples("x", [Sample(good.t, still, still)])


def test_training_sets_outliers_aside_and_bumps_versions_only_on_change():
    from actors.lib.gesture.store import GestureDB

    rng = np.random.default_rng(9)
    db = GestureDB()
    for name in ("wave", "lift"):
        db.add_samples(name, [Sample(s.t, s.acc, s.gyro) for s in (make_sample(name, rng) for _ in range(6))])
    odd = make_sample("shake", rng)                       # recorded under the wrong name
    db.add_samples("wave", [Sample(odd.t, odd.acc, odd.gyro, id="odd")])
    report = train(db)
    assert [s.id for s in db.gestures["wave"].outliers] == ["odd"]
    assert report.gestures["wave"]["outliers_removed"] == 1 and report.accuracy == 1.0
    assert db.gestures["wave"].version == 1 and 0 < db.gestures["wave"].consistency <= 1
    train(db)
    assert db.gestures["wave"].version == 1                # nothing changed
    db.add_samples("lift", [Sample(s.t, s.acc, s.gyro) for s in [make_sample("lift", rng)]])
    train(db)
    assert db.gestures["lift"].version == 2 and db.gestures["wave"].version == 1
