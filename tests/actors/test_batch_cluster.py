"""``sensorium batch events|audio`` on a Dask cluster: the same lines as one process, resume, a worker killed,
a poisoned file, a file over its time limit, the client's memory, and the refusals (plain tcp:// off loopback,
the missing extra).

One ``LocalCluster`` (2 worker processes, one thread each, loopback, allowed-failures 1) serves the module
(``--scheduler``); one test starts its own through ``--workers 2``. The workers load TensorFlow's head and
Whisper once each (worker plugin), again after each restart. The poisoned file is the executor's documented
test seam (``SENSORIUM_TEST_CRASH_MARKER``, set here for the module's workers): the worker process really
exits when it reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from actors.audio_events import synth
from actors.audio_events.batch import main as batch_events
from actors.lib.executor import CRASH_MARKER_ENV, SCHEDULER_CONFIG, ClusterError, check_scheduler_address, security_for
from actors.speech.batch import main as batch_audio
from config.schema import Config
from tests.actors.audio.conftest import DEMO_RECORDING, write_wav
from tests.actors.audio_events.test_actor import scene
from tests.support import ROOT, WAIT_S, clean_env, wait_until

distributed = pytest.importorskip("distributed", reason="the 'cluster' extra")
pytestmark = pytest.mark.slow

POISON = "POISONED"
TIMING = ("wall_s", "rtf", "transcribe_s", "rss_bytes")
"""Fields that measure the run, not the result."""


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster on loopback whose workers exit on a file named ...POISONED..."""
    import dask

    os.environ[CRASH_MARKER_ENV] = POISON  # the workers (and their restarts) inherit it
    try:
        with dask.config.set({**SCHEDULER_CONFIG, "distributed.scheduler.allowed-failures": 1}):
            lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                          dashboard_address=None)
        with lc, distributed.Client(lc) as client:
            yield lc, client
    finally:
        del os.environ[CRASH_MARKER_ENV]


def two_workers(lc) -> bool:
    """Both workers up (asked of the scheduler, which runs in this process)."""
    return len(lc.scheduler.workers) == 2


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def users_folder(root: Path) -> Path:
    """Three users: events, laughter, a bad file or three, silence."""
    for user in ("alice", "bob", "carol"):
        (root / user).mkdir(parents=True)
    pcm, _truth = scene(seed=31)
    write_wav(root / "alice" / "morning.wav", pcm)
    rng = np.random.default_rng(32)
    write_wav(root / "alice" / "evening.wav", np.concatenate([synth.render(rng, "noise", 32_000),
                                                              synth.render(rng, "laughter", 48_000)]))
    (root / "alice" / "empty.wav").write_bytes(b"")
    write_wav(root / "bob" / "day.wav", pcm[: 7 * 16_000])
    (root / "bob" / "truncated.wav").write_bytes((root / "bob" / "day.wav").read_bytes()[:60_000])
    write_wav(root / "carol" / "quiet.wav", synth.render(rng, "silence", 3 * 16_000))
    return root


def events(capsys, *args: str) -> tuple[int, str]:
    code = batch_events([*args, "--no-progress", "--threads", "1"], Config())
    return code, capsys.readouterr().err


def cli(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "supervisor.py"), "batch", *args, "--threads", "1"]


def test_scheduler_addresses_off_loopback_need_tls(tmp_path, capsys):
    assert check_scheduler_address("tcp://127.0.0.1:8786") == ""
    assert check_scheduler_address("tcp://localhost:8786") == ""
    assert check_scheduler_address("tcp://[::1]:8786") == ""
    assert check_scheduler_address("tls://10.0.0.5:8786") == ""
    refused = check_scheduler_address("tcp://10.0.0.5:8786")
    assert "refused" in refused and "tls://" in refused and "--tls-ca-file" in refused
    assert "tls://" in check_scheduler_address("10.0.0.5:8786")  # no scheme is tcp://
    assert "expected" in check_scheduler_address("udp://127.0.0.1:8786")
    assert "expected" in check_scheduler_address("tcp://127.0.0.1")
    with pytest.raises(ClusterError, match="no CA file"):
        security_for("tls://10.0.0.5:8786")
    with pytest.raises(ClusterError, match="no such file"):
        security_for("tls://10.0.0.5:8786", str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"), str(tmp_path / "k"))
    (tmp_path / "in").mkdir()
    write_wav(tmp_path / "in" / "a.wav", np.zeros(16_000, np.int16))
    code, err = events(capsys, str(tmp_path / "in"), "--scheduler", "tcp://192.0.2.7:8786")
    assert code == 2 and "plain tcp:// off loopback is refused" in err and "tls://HOST:8786" in err, err


def make_certificates(folder: Path) -> None:
    """The README's openssl recipe: one CA, a certificate each for the scheduler, the worker and the client."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=WAIT_S)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sensorium-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    for who in ("scheduler", "worker", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", f"{who}.key",
                "-out", f"{who}.csr")
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{who}.pem")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_tls_scheduler_needs_the_clients_certificate(tmp_path, capsys):
    make_certificates(tmp_path)
    c = {name: str(tmp_path / name) for name in os.listdir(tmp_path)}
    security = distributed.Security(tls_ca_file=c["ca.pem"], tls_scheduler_cert=c["scheduler.pem"],
                                    tls_scheduler_key=c["scheduler.key"], tls_worker_cert=c["worker.pem"],
                                    tls_worker_key=c["worker.key"], tls_client_cert=c["client.pem"],
                                    tls_client_key=c["client.key"], require_encryption=True)
    (tmp_path / "in").mkdir()
    write_wav(tmp_path / "in" / "a.wav", scene(seed=31)[0][: 7 * 16_000])
    out = tmp_path / "out.jsonl"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tls",
                                  host="127.0.0.1", dashboard_address=None, security=security) as lc:
        address = lc.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        code, err = events(capsys, str(tmp_path / "in"), "--out", str(out), "--scheduler", address,
                           "--tls-ca-file", c["ca.pem"], "--tls-cert", c["client.pem"], "--tls-key", c["client.key"])
        assert code == 0, err
        (record,) = lines(out)
        assert record["counts"] == {"alarm": 1}
        # A certificate the CA did not sign is turned away: a clear error, exit 2.
        (tmp_path / "other").mkdir()
        make_certificates(tmp_path / "other")
        code, err = events(capsys, str(tmp_path / "in"), "--out", str(tmp_path / "other.jsonl"), "--scheduler",
                           address, "--tls-ca-file", c["ca.pem"], "--tls-cert", str(tmp_path / "other" / "client.pem"),
                           "--tls-key", str(tmp_path / "other" / "client.key"))
        assert code == 2 and f"cannot connect to the scheduler {address}" in err, err


def test_without_the_extra_the_command_names_it(tmp_path):
    (tmp_path / "in").mkdir()
    write_wav(tmp_path / "in" / "a.wav", np.zeros(16_000, np.int16))
    code = ("import sys; sys.modules['distributed'] = None; sys.argv = ['sensorium', 'batch', 'audio', "
            f"{str(tmp_path / 'in')!r}, '--workers', '2']; import runpy; runpy.run_path('supervisor.py', "
            "run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          timeout=WAIT_S)
    assert done.returncode == 2, done.stderr
    assert "pip install 'sensorium[cluster]'" in done.stderr


def test_events_on_two_workers_are_the_single_process_lines(tmp_path, capsys):
    root = users_folder(tmp_path / "users")
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert events(capsys, str(root), "--per-user", "--out", str(one))[0] == 1  # two bad files
    code, err = events(capsys, str(root), "--per-user", "--out", str(two), "--workers", "2")
    assert code == 1, err
    single, cluster = lines(one), lines(two)
    assert len(cluster) == len(single) == 6 + 3
    by_file = {r["file"]: without_timing(r) for r in single}
    assert {r["file"]: without_timing(r) for r in cluster} == by_file  # events bit-for-bit, errors the same
    assert by_file[str(root / "alice" / "morning.wav")]["counts"] == {"alarm": 1, "clapping": 1}
    for n, record in enumerate(cluster):  # a user's summary comes after all of its files
        if record["kind"] == "user":
            assert {r["file"] for r in cluster[:n] if r["user"] == record["user"] and r["kind"] == "file"} == \
                {r["file"] for r in single if r["user"] == record["user"] and r["kind"] == "file"}
            assert record["rss_bytes"] > 0


def test_audio_on_the_cluster_is_the_single_process_lines_and_a_slow_file_is_an_error_line(cluster, tmp_path, capsys):
    lc, _client = cluster
    folder = tmp_path / "in"
    folder.mkdir()
    with wave.open(str(DEMO_RECORDING), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    write_wav(folder / "a.wav", pcm[: int(7.6 * 16_000)])
    write_wav(folder / "b.wav", pcm[int(7.6 * 16_000):])
    write_wav(folder / "c_silence.wav", np.zeros(2 * 16_000, np.int16))
    (folder / "d_truncated.wav").write_bytes((folder / "a.wav").read_bytes()[:40_000])
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert batch_audio([str(folder), "--out", str(one), "--threads", "1", "--no-progress"], Config()) == 1
    code = batch_audio([str(folder), "--out", str(two), "--threads", "1", "--no-progress", "--scheduler",
                        lc.scheduler_address], Config())
    err = capsys.readouterr().err
    assert code == 1, err
    assert {r["file"]: without_timing(r) for r in lines(two)} == {r["file"]: without_timing(r) for r in lines(one)}
    assert lines(one)[0]["text"] and lines(one)[0]["segments"]  # a transcript to compare, compared above

    # A time limit the first chunk already passes: each file is one error line, the run goes on.
    slow = tmp_path / "slow.jsonl"
    code = batch_audio([str(folder / "a.wav"), "--out", str(slow), "--threads", "1", "--no-progress", "--scheduler",
                        lc.scheduler_address, "--file-timeout-s", "0.001"], Config())
    (record,) = lines(slow)
    assert code == 1 and record["status"] == "error" and "over its time limit of 0.001 s" in record["error"], record


def test_a_corrupt_head_on_the_workers_stops_the_batch_with_its_name(cluster, tmp_path, capsys):
    lc, _client = cluster
    (tmp_path / "in").mkdir()
    write_wav(tmp_path / "in" / "a.wav", np.zeros(16_000, np.int16))
    bad = tmp_path / "head.sealed"
    bad.write_bytes(b"SENSORIUM-SEALED 1 {}\nnot weights")
    plugins = set(lc.scheduler.worker_plugins)
    code, err = events(capsys, str(tmp_path / "in"), "--head", str(bad), "--scheduler", lc.scheduler_address)
    assert code == 2 and f"batch events: {bad}: bad header" in err, err
    assert set(lc.scheduler.worker_plugins) == plugins  # the failed one is not set up again on each restart


def slow_files(folder: Path, n: int, seconds: int) -> list[Path]:
    """``n`` hard links to one file of events over noise (cheap on disk, each one a real file to decode)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    # Half a second of noise, then the alarm: a 1 s file has an alarm too (an empty one warned in numpy).
    first = write_wav(folder / "f000.wav", np.concatenate([synth.render(rng, "noise", 8_000),
                                                           synth.render(rng, "alarm", seconds * 16_000 - 8_000)]))
    for i in range(1, n):
        os.link(first, folder / f"f{i:03d}.wav")
    return sorted(folder.iterdir())


def test_resume_after_the_client_is_killed_mid_run(cluster, tmp_path):
    lc, _client = cluster
    files = slow_files(tmp_path / "in", 32, 60)
    out = tmp_path / "out.jsonl"
    args = cli("events", str(tmp_path / "in"), "--out", str(out), "--scheduler", lc.scheduler_address)
    client = subprocess.Popen(args, cwd=ROOT, env=clean_env(), stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: out.exists() and out.read_text().count("\n") >= 2, timeout_s=WAIT_S * 2)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=WAIT_S)
    finally:
        if client.poll() is None:
            client.kill()
    written = out.read_text().count("\n")
    assert 2 <= written < len(files), f"the run ended ({written} lines) before it could be killed"
    again = subprocess.run(args, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=WAIT_S * 4)
    assert again.returncode == 0, again.stderr
    assert f"{written} of {len(files)} files already done" in again.stderr
    records = lines(out)
    assert sorted(r["file"] for r in records) == [str(f) for f in files]
    assert all(r["status"] == "ok" and r["counts"] == {"alarm": 1} for r in records)


def test_a_worker_killed_mid_run_has_its_files_retried(cluster, tmp_path):
    lc, client = cluster
    files = slow_files(tmp_path / "in", 32, 60)
    out = tmp_path / "out.jsonl"
    run = subprocess.Popen(cli("events", str(tmp_path / "in"), "--out", str(out), "--scheduler",
                               lc.scheduler_address), cwd=ROOT, env=clean_env(), stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: out.exists() and out.read_text().count("\n") >= 1, timeout_s=WAIT_S * 2)
        busy = {w: p for w, p in client.run(os.getpid).items() if client.processing().get(w)}
        assert busy, "no worker busy: the run ended before the kill"
        victim_pid = next(iter(busy.values()))
        os.kill(victim_pid, signal.SIGKILL)
        _out, err = run.communicate(timeout=WAIT_S * 4)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    records = lines(out)
    assert sorted(r["file"] for r in records) == [str(f) for f in files]
    assert all(r["status"] == "ok" for r in records)
    wait_until(lambda: two_workers(lc), timeout_s=WAIT_S * 4, what="the nanny to restart the worker")
    assert victim_pid not in client.run(os.getpid).values()


def test_a_poisoned_file_is_one_error_line(cluster, tmp_path, capsys):
    lc, _client = cluster
    wait_until(lambda: two_workers(lc), timeout_s=WAIT_S * 4, what="both workers")
    folder = tmp_path / "in"
    folder.mkdir()
    write_wav(folder / "a.wav", scene(seed=31)[0][: 7 * 16_000])
    write_wav(folder / f"b_{POISON}.wav", np.zeros(16_000, np.int16))
    write_wav(folder / "c.wav", np.zeros(2 * 16_000, np.int16))
    out = tmp_path / "out.jsonl"
    code, err = events(capsys, str(folder), "--out", str(out), "--scheduler", lc.scheduler_address)
    assert code == 1
    records = {Path(r["file"]).name: r for r in lines(out)}
    assert len(records) == 3 and records["a.wav"]["counts"] == {"alarm": 1} and records["c.wav"]["status"] == "ok"
    poisoned = records[f"b_{POISON}.wav"]
    assert poisoned["status"] == "error" and "every worker that ran it died" in poisoned["error"], (poisoned, err)
    assert err.count(f"b_{POISON}.wav") == 1, err


def peak_rss_of_client(args: list[str]) -> tuple[int, subprocess.CompletedProcess]:
    """The client's own peak RSS (kB, ru_maxrss) running ``sensorium batch ...``; its workers are elsewhere."""
    code = ("import resource, runpy, sys\n"
            f"sys.argv = ['sensorium', *{args!r}]\n"
            "try:\n    runpy.run_path('supervisor.py', run_name='__main__')\n"
            "except SystemExit as exc:\n    code = exc.code\n"
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          timeout=WAIT_S * 6)
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    assert peak, done.stderr
    return int(peak[0].split()[1]), done


def test_the_clients_memory_is_flat_from_10_to_200_files(cluster, tmp_path):
    lc, _client = cluster
    wait_until(lambda: two_workers(lc), timeout_s=WAIT_S * 4, what="both workers")
    peaks = {}
    for n in (10, 200):
        slow_files(tmp_path / f"in{n}", n, 1)
        out = tmp_path / f"out{n}.jsonl"
        peaks[n], done = peak_rss_of_client(["batch", "events", str(tmp_path / f"in{n}"), "--out", str(out),
                                             "--threads", "1", "--scheduler", lc.scheduler_address])
        assert done.returncode == 0, done.stderr
        assert len(lines(out)) == n
    assert peaks[200] <= peaks[10] * 1.1, peaks
