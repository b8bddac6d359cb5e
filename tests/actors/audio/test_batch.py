"""``sensorium batch audio``: result lines, exit codes, resume; and the microphone's clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from actors.lib.audio.wer import word_error_rate
from tests.actors.audio.conftest import write_wav
from tests.support import ROOT, WAIT_S, clean_env

pytestmark = pytest.mark.slow


def batch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "batch", "audio", *args, "--threads", "2"],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=WAIT_S * 4)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_transcribes_a_folder_reports_bad_files_and_resumes(tmp_path, demo):
    folder = tmp_path / "in"
    folder.mkdir()
    two = demo["pcm"][: int(7.6 * 16_000)]  # the first two sentences
    write_wav(folder / "a.wav", two)
    (folder / "b_truncated.wav").write_bytes((folder / "a.wav").read_bytes()[:40_000])
    out = tmp_path / "out" / "results.jsonl"

    first = batch(str(folder), "--out", str(out))
    assert first.returncode == 1, first.stderr          # one file failed
    # Progress, not on a terminal here: whole lines, no carriage-return redraws.
    assert "batch audio: 2/2 file (100%)" in first.stderr and "\r" not in first.stderr
    records = {r["file"]: r for r in lines(out)}
    good, bad = records[str(folder / "a.wav")], records[str(folder / "b_truncated.wav")]
    assert good["status"] == "ok" and good["error"] == ""
    assert word_error_rate(" ".join(demo["sentences"][:2]), good["text"]) <= 0.2, good["text"]
    assert good["duration_s"] == pytest.approx(7.6, abs=0.01)
    assert good["vad"]["segments"] == 2 and 0.4 < good["vad"]["speech_ratio"] < 0.9
    assert [round(s["t_start"], 1) for s in good["segments"]] == pytest.approx(
        [round(s, 1) for s, _ in demo["spans_s"][:2]], abs=0.15)
    assert bad["status"] == "error" and "truncated" in bad["error"] and "b_truncated.wav" in bad["error"]
    assert bad["text"]  # what could be decoded before the damage was still transcribed

    # Resume: nothing to do, but b still fails: exit 1; a torn last line from a crash is cut off; a new file
    # is the only one processed.
    again = batch(str(folder), "--out", str(out))
    assert again.returncode == 1 and "2 of 2 files already done" in again.stderr
    assert "1 of them failed in an earlier run" in again.stderr
    with open(out, "a") as f:
        f.write('{"file": "/half/a line')
    write_wav(folder / "c_silence.wav", np.zeros(3 * 16_000, np.int16))
    third = batch(str(folder), "--out", str(out))
    assert third.returncode == 1, third.stderr
    assert "unfinished last line" in third.stderr
    records = lines(out)
    assert [r["file"].rsplit("/", 1)[1] for r in records] == ["a.wav", "b_truncated.wav", "c_silence.wav"]
    assert records[2]["text"] == "" and records[2]["vad"]["segments"] == 0

    # --retry-failed redoes only the failed file (it fails again: exit 1); the file then holds one line per
    # file, the retried one's newest (appended while running, compacted at the end).
    retry = batch(str(folder), "--out", str(out), "--retry-failed", "--no-progress")
    assert retry.returncode == 1
    assert [r["file"].rsplit("/", 1)[1] for r in lines(out)] == ["a.wav", "c_silence.wav", "b_truncated.wav"]
    assert lines(out)[2]["status"] == "error"
    write_wav(folder / "b_truncated.wav", two[: 16_000])  # repaired: the next retry succeeds
    fixed = batch(str(folder), "--out", str(out), "--retry-failed", "--no-progress")
    assert fixed.returncode == 0, fixed.stderr
    records = lines(out)
    assert [r["file"].rsplit("/", 1)[1] for r in records] == ["a.wav", "c_silence.wav", "b_truncated.wav"]
    assert all(r["status"] == "ok" for r in records)
    assert not list(out.parent.glob(".*.tmp"))  # the atomic rewrite left nothing behind


def test_batch_of_an_empty_folder_fails_clearly(tmp_path):
    done = batch(str(tmp_path))
    assert done.returncode == 1 and "no audio files" in done.stderr


def test_a_microphone_source_without_portaudio_or_device_exits_with_what_to_install(tmp_path):
    config = tmp_path / "mic.toml"
    config.write_text(f'replace_default_actors = true\n[bus]\nruntime_dir = "{tmp_path}"\n[actors."audio_source@mic"]\n'
                      'settings = { source = "mic" }\n')
    try:
        import sounddevice  # noqa: F401
        has_device = bool(sounddevice.query_devices())
    except (ImportError, OSError):
        has_device = False
    if has_device:
        pytest.skip("this machine has a working audio input")
    done = subprocess.run([sys.executable, "-m", "actors", "audio_source", "--name", "audio_source@mic", "-c",
                           str(config)], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 1
    assert "microphone" in done.stderr and ("mic" in done.stderr or "device" in done.stderr)
