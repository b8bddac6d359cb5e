"""Batch on a Dask cluster: files per second per worker, and the memory of each worker.

1. Throughput, in one run: the same folder through ``sensorium batch events``
   (and ``batch audio`` with ``--kinds events,audio``) in one process with one
   model thread (the default path), then on a local Dask cluster of 1 and of 2
   worker processes (one thread each, one TensorFlow / Whisper thread each).
   Each path is warmed up first (models loaded, TensorFlow graphs traced, the
   cluster's worker plugin set up), then timed on the whole folder: files per
   second, and CPU seconds per file (this process, or the workers' sum:
   the work per file should not grow with workers; on a machine shared with
   other jobs the speed-up is bounded by the CPU time they leave).
   Target on 2 cores: 2 workers >= 1.6 x 1 worker.
2. Memory per worker: peak RSS (``ru_maxrss`` of each worker process, asked
   with ``Client.run``) of ``batch events --per-user`` on a fresh 2-worker
   cluster, 1 user x 1 minute (the baseline) vs N users x M minutes (default
   10 x 30, one M-minute file per user, hard links of one WAV written
   streaming). Target: long/short ratio <= 1.1, as the single-process path
   achieves (bench/events.py).

    python bench/batch.py [--quick] [--kinds events,audio] [--files N] [--users N] [--minutes M] [--out DIR]

``--quick``: 3 users x 3 minutes, 6 files. Writes ``DIR/batch.json`` (default ``bench/out``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from _bootstrap import HERE  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import resource
import shutil
import tempfile
import time
from typing import Any, Callable


from bench.events import make_users, write_minutes
from config.schema import Config

TARGET_SPEEDUP = 1.6
TARGET_RSS_RATIO = 1.1


def quiet(fn: Callable[[], int]) -> tuple[int, str]:
    """Run a command's main with stderr captured (its progress and summary lines)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = fn()
    return code, err.getvalue()


def command(kind: str) -> Callable[[list[str], Config], int]:
    if kind == "events":
        from actors.audio_events.batch import main
    else:
        from actors.speech.batch import main
    return main


def audio_folder(root: Path, kind: str, files: int, seconds: float) -> Path:
    """``files`` hard links of one file: events over noise (events), or the demo's speech (audio)."""
    root.mkdir(parents=True)
    first = root / "f000.wav"
    if kind == "events":
        write_minutes(first, seconds / 60)
    else:
        from actors.audio_source.actor import DEMO_RECORDING

        shutil.copy(DEMO_RECORDING, first)
    for i in range(1, files):
        os.link(first, root / f"f{i:03d}.wav")
    return root


def start_cluster(workers: int) -> tuple[Any, Any]:
    import dask
    import distributed

    from actors.lib.executor import SCHEDULER_CONFIG

    with dask.config.set(SCHEDULER_CONFIG):
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=logging.ERROR)
    return cluster, distributed.Client(cluster)


def cpu_s() -> float:
    """CPU seconds (user + system) of the calling process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_run(kind: str, folder: Path, out: Path, extra: list[str]) -> float:
    """Seconds for the whole folder (a fresh results file)."""
    out.unlink(missing_ok=True)
    main = command(kind)
    started = time.perf_counter()
    code, err = quiet(lambda: main([str(folder), "--out", str(out), "--threads", "1", "--no-progress", *extra],
                                   Config()))
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"batch {kind} {extra} exited {code}: {err[-2000:]}")
    return wall


def bench_throughput(kind: str, files: int, seconds: float, tmp: Path) -> dict[str, Any]:
    folder = audio_folder(tmp / f"{kind}-in", kind, files, seconds)
    warm = audio_folder(tmp / f"{kind}-warm", kind, 1, min(seconds, 20))
    out = tmp / f"{kind}.jsonl"
    results: dict[str, Any] = {"files": files}
    print(f"  {kind}: one process, 1 thread ...", file=sys.stderr, flush=True)
    timed_run(kind, warm, out, [])
    cpu = cpu_s()
    wall = timed_run(kind, folder, out, [])
    results["single_process"] = {"wall_s": wall, "files_per_s": files / wall, "cpu_s_per_file": (cpu_s() - cpu) / files}
    for workers in (1, 2):
        print(f"  {kind}: {workers} Dask worker(s) ...", file=sys.stderr, flush=True)
        cluster, client = start_cluster(workers)
        try:
            timed_run(kind, warm, out, ["--scheduler", cluster.scheduler_address])  # every worker loads the model
            before = sum(client.run(cpu_s).values())
            wall = timed_run(kind, folder, out, ["--scheduler", cluster.scheduler_address])
            cpu = sum(client.run(cpu_s).values()) - before
        finally:
            client.close()
            cluster.close()
        results[f"workers_{workers}"] = {"wall_s": wall, "files_per_s": files / wall, "cpu_s_per_file": cpu / files}
    results["speedup_2_vs_1"] = results["workers_2"]["files_per_s"] / results["workers_1"]["files_per_s"]
    results["workers_1_vs_single"] = results["workers_1"]["files_per_s"] / results["single_process"]["files_per_s"]
    return results


def worker_peaks(folder: Path, out: Path) -> dict[str, Any]:
    cluster, client = start_cluster(2)
    try:
        wall = timed_run("events", folder, out, ["--per-user", "--scheduler", cluster.scheduler_address])
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    finally:
        client.close()
        cluster.close()
    return {"wall_s": wall, "peak_rss_bytes_per_worker": sorted(peaks.values()),
            "peak_rss_bytes": max(peaks.values())}


def bench_worker_memory(users: int, minutes: float, tmp: Path) -> dict[str, Any]:
    write_minutes(tmp / "short.wav", 1.0)
    write_minutes(tmp / "long.wav", minutes)
    short = make_users(tmp / "short", tmp / "short.wav", 1)
    long = make_users(tmp / "long", tmp / "long.wav", users)
    print("  1 user x 1 min ...", file=sys.stderr, flush=True)
    result = {"short": worker_peaks(short, tmp / "short.jsonl")}
    print(f"  {users} users x {minutes:g} min ...", file=sys.stderr, flush=True)
    result["long"] = worker_peaks(long, tmp / "long.jsonl")
    result["rss_ratio"] = result["long"]["peak_rss_bytes"] / result["short"]["peak_rss_bytes"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 users x 3 minutes, 6 files")
    parser.add_argument("--kinds", default="events", help="events, audio or events,audio")
    parser.add_argument("--files", type=int, default=12, help="files in the throughput folder")
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="length of each events file (s): long enough that a run is not start-up")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.minutes, args.files = 3, 3.0, 6
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sbb", dir="/tmp"))
    load_start = os.getloadavg()
    started = time.monotonic()
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "load_avg_start": load_start}, "throughput": {}}
    try:
        print("1. throughput ...", file=sys.stderr, flush=True)
        for kind in [k for k in args.kinds.split(",") if k]:
            results["throughput"][kind] = bench_throughput(kind, args.files, args.seconds, tmp)
        if not args.skip_memory:
            print(f"2. worker memory: 1 user x 1 min vs {args.users} users x {args.minutes:g} min ...",
                  file=sys.stderr, flush=True)
            results["worker_memory"] = bench_worker_memory(args.users, args.minutes, tmp)
            results["worker_memory"].update(users=args.users, minutes=args.minutes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["load_avg_end"] = os.getloadavg()
    results["wall_s"] = time.monotonic() - started
    results.update(target_speedup=TARGET_SPEEDUP, target_rss_ratio=TARGET_RSS_RATIO)
    (args.out / "batch.json").write_text(json.dumps(results, indent=1))
    for kind, t in results["throughput"].items():
        ok = "meets" if t["speedup_2_vs_1"] >= TARGET_SPEEDUP else "MISSES"
        print(f"{kind} ({t['files']} files): one process {t['single_process']['files_per_s']:.3f} files/s, "
              f"1 worker {t['workers_1']['files_per_s']:.3f}, 2 workers {t['workers_2']['files_per_s']:.3f}: "
              f"2 vs 1 worker x{t['speedup_2_vs_1']:.2f} ({ok} >= {TARGET_SPEEDUP}); CPU s per file (workers' sum): "
              f"{t['single_process']['cpu_s_per_file']:.3f}, {t['workers_1']['cpu_s_per_file']:.3f}, "
              f"{t['workers_2']['cpu_s_per_file']:.3f}")
    if "worker_memory" in results:
        m = results["worker_memory"]
        ok = "meets" if m["rss_ratio"] <= TARGET_RSS_RATIO else "MISSES"
        print(f"worker peak RSS: 1x1 min {m['short']['peak_rss_bytes'] / 2**20:.0f} MiB, {m['users']}x"
              f"{m['minutes']:g} min {m['long']['peak_rss_bytes'] / 2**20:.0f} MiB: ratio {m['rss_ratio']:.3f} "
              f"({ok} <= {TARGET_RSS_RATIO})")
    print(f"load average {load_start} -> {results['machine']['load_avg_end']}; {args.out / 'batch.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
