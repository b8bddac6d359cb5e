"""``sensorium batch events DIR --per-user``: per-file and per-user lines, bad audio, resume."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from actors.audio_events.batch import main as batch_events
from actors.audio_events import synth
from config.schema import Config
from tests.actors.audio.conftest import write_wav
from tests.actors.audio_events.test_actor import scene

pytestmark = pytest.mark.slow


def run_batch(capsys, *args: str) -> tuple[int, str]:
    """``sensorium batch events ...`` in this process (TensorFlow is imported once per test run)."""
    code = batch_events([*args, "--no-progress", "--threads", "2"], Config())
    return code, capsys.readouterr().err


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_float_wav(path, samples: np.ndarray) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_f32le", rate=16_000, layout="mono")
        f = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        f.sample_rate = 16_000
        for p in list(s.encode(f)) + list(s.encode(None)):
            c.mux(p)


def test_per_user_summaries_bad_files_and_resume(head, tmp_path, capsys):
    root = tmp_path / "users"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    (root / "carol").mkdir()
    pcm, truth = scene(seed=31)                                     # alarm 2-5 s, clapping 7-10 s
    write_wav(root / "alice" / "morning.wav", pcm)
    rng = np.random.default_rng(32)
    laughs = np.concatenate([synth.render(rng, "noise", 32_000), synth.render(rng, "laughter", 48_000),
                             synth.render(rng, "noise", 32_000)])  # laughter 2-5 s
    write_wav(root / "alice" / "evening.wav", laughs)
    (root / "alice" / "empty.wav").write_bytes(b"")
    write_wav(root / "bob" / "day.wav", pcm[: 7 * 16_000])          # only the alarm
    nan = np.sin(np.arange(32_000) / 7).astype(np.float32)
    nan[20_000] = np.nan
    write_float_wav(root / "bob" / "nan.wav", nan)
    (root / "bob" / "truncated.wav").write_bytes((root / "bob" / "day.wav").read_bytes()[:60_000])
    (root / "bob" / "notes.ogg").write_text("not audio at all")
    write_wav(root / "carol" / "quiet.wav", synth.render(rng, "silence", 3 * 16_000))
    out = tmp_path / "out" / "events.jsonl"

    code, err = run_batch(capsys, str(root), "--per-user", "--out", str(out))
    assert code == 1  # four bad files
    errors = [line for line in err.splitlines() if line.startswith("batch events: /")]
    assert len(errors) == 4, err  # one clear line per bad file
    assert any("empty.wav: empty file" in e for e in errors) and any("nan.wav" in e and "NaN" in e for e in errors)
    assert any("truncated.wav: truncated" in e for e in errors)
    assert any("notes.ogg: not a readable audio file" in e for e in errors)
    records = lines(out)
    files = {r["file"].rsplit("/", 1)[1]: r for r in records if r["kind"] == "file"}
    users = {r["user"]: r for r in records if r["kind"] == "user"}
    assert [r["kind"] for r in records].count("user") == 3 and set(users) == {"alice", "bob", "carol"}
    assert files["morning.wav"]["counts"] == {"alarm": 1, "clapping": 1}
    found = [(e["label"], e["t_start"], e["t_end"]) for e in files["morning.wav"]["events"]]
    assert synth.score_events(truth, found)["all"].f1 == 1.0, found
    assert files["evening.wav"]["counts"] == {"laughter": 1}
    assert files["truncated.wav"]["status"] == "error" and files["truncated.wav"]["duration_s"] > 1.0
    alice = users["alice"]
    assert alice["counts"] == {"alarm": 1, "clapping": 1, "laughter": 1} and alice["files"] == 3
    assert alice["failed"] == 1 and alice["status"] == "error"
    assert alice["times"]["laughter"][0][0] == "evening.wav" and 1.5 < alice["times"]["laughter"][0][1] < 2.8
    assert users["bob"]["counts"] == {"alarm": 1} and users["bob"]["failed"] == 3
    assert users["carol"] == {**users["carol"], "counts": {}, "status": "ok", "files": 1}

    # Resume: nothing left to do, but four files still fail: exit 1.
    code, err = run_batch(capsys, str(root), "--per-user", "--out", str(out))
    assert code == 1 and "8 of 8 files already done" in err and len(lines(out)) == len(records)
    assert "4 of them failed in an earlier run" in err

    # A crash during carol (her file line written, her summary not; a torn line after it) and a new file.
    kept = [r for r in records if r["user"] != "carol" or r["kind"] == "file"]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"kind": "file", "user": "ca')
    write_wav(root / "carol" / "later.wav", laughs)
    code, err = run_batch(capsys, str(root), "--per-user", "--out", str(out))
    assert code == 1 and "unfinished last line" in err and "8 of 9 files already done" in err
    new = lines(out)[len(kept):]
    assert [(r["kind"], r["file"].rsplit("/", 1)[-1]) for r in new] == [("file", "later.wav"), ("user", "user:carol")]
    assert new[1]["files"] == 2 and new[1]["counts"] == {"laughter": 1}

    # A retried file has two lines (the failed one, then the retry's): a resumed summary counts it once.
    records = lines(out)
    day = next(r for r in records if r["kind"] == "file" and r["file"].endswith("/bob/day.wav"))
    kept = [r for r in records if r["user"] != "bob" or r["kind"] == "file"] + [day]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    write_wav(root / "bob" / "night.wav", pcm[: 7 * 16_000])
    code, err = run_batch(capsys, str(root), "--per-user", "--out", str(out))
    assert code == 1, err  # bob's bad files
    bob = lines(out)[-1]
    assert bob["user"] == "bob" and bob["files"] == 5 and bob["counts"] == {"alarm": 2}, bob
    assert sum(r["file"].endswith("/bob/day.wav") for r in lines(out)) == 1  # compacted at the end

    # --retry-failed: the four bad files fail again (exit 1); then one line per file and per user.
    code, err = run_batch(capsys, str(root), "--per-user", "--out", str(out), "--retry-failed")
    assert code == 1 and "6 of 10 files already done" in err, err
    keys = [r["file"] for r in lines(out)]
    assert len(keys) == len(set(keys)) == 10 + 3
    assert [r["user"] for r in lines(out) if r["kind"] == "user"][-1] == "bob"
    bob = next(r for r in lines(out) if r["file"] == "user:bob")
    assert bob["files"] == 5 and bob["failed"] == 3 and bob["counts"] == {"alarm": 2}


def test_a_corrupt_head_or_a_wrong_yamnet_file_stops_the_batch_with_its_name(head, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    write_wav(tmp_path / "in" / "a.wav", np.zeros(16_000, np.int16))
    bad = tmp_path / "head.sealed"
    bad.write_bytes(b"SENSORIUM-SEALED 1 {}\nnot weights")
    code, err = run_batch(capsys, str(tmp_path / "in"), "--head", str(bad))
    assert code == 2 and f"batch events: {bad}: bad header" in err
    not_h5 = tmp_path / "yamnet.h5"
    not_h5.write_text("no")
    csv = tmp_path / "map.csv"
    csv.write_text("index,mid,display_name\n0,/m/0,Speech\n")
    code, err = run_batch(capsys, str(tmp_path / "in"), "--model", "yamnet", "--yamnet-weights", str(not_h5),
                          "--yamnet-class-map", str(csv))
    assert code == 2 and f"{not_h5}: not an HDF5 weights file" in err


def test_batch_with_yamnet_files_uses_their_class_names(yamnet_files, tmp_path, capsys):
    """The YAMNet path end to end (random weights: which classes fire means nothing, the plumbing does)."""
    _model, weights, class_map = yamnet_files
    (tmp_path / "in").mkdir()
    write_wav(tmp_path / "in" / "a.wav", scene(seed=41)[0][: 5 * 16_000])
    out = tmp_path / "out.jsonl"
    code, err = run_batch(capsys, str(tmp_path / "in"), "--model", "yamnet", "--yamnet-weights", str(weights),
                          "--yamnet-class-map", str(class_map), "--threshold", "0.01", "--out", str(out))
    assert code == 0, err
    (record,) = lines(out)
    assert record["patches"] == 9 and record["duration_s"] == 5.0  # 0..4.8 s; the last 0.2 s < half a hop: no pad
    assert record["events"] and all(e["label"].startswith("Class ") for e in record["events"])

