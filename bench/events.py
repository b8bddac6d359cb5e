"""Audio-events benchmark: real-time factor and the memory of the nightly per-user batch.

1. RTF, in this process, on generated audio (events over noise):
   * streaming: the actor's path, ``EventDetector`` fed 100 ms chunks (one
     model call per 0.48 s patch);
   * batch: 10 s chunks (about 21 patches per model call), as
     ``sensorium batch events`` decodes;
   RTF = seconds of work per second of audio (lower is faster).
2. Memory: peak RSS (``wait4`` ru_maxrss) of ``sensorium batch events DIR
   --per-user`` on 1 user x 1 minute (the baseline) vs N users x M minutes
   (default 10 x 30), each variant in a fresh process. The audio is one
   M-minute WAV written streaming (never whole in memory) and hard-linked
   into every user's folder, so every user is a real file to decode. Variants
   of what the replaced product did between users (``--cleanup``): none,
   gc (gc.collect() x 10), clear_session (keras), malloc_trim, all three.
   Each user line carries the RSS after the user, so growth between users
   is visible. Target: long/short peak ratio <= 1.1.

    python bench/events.py [--quick] [--users N] [--minutes M] [--variants none,all,...] [--out DIR]

``--quick``: 3 users x 3 minutes, variants none and all. Writes
``DIR/events.json`` (default ``bench/out``) and ``DIR/events.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _bootstrap import HERE, ROOT  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import wave
from typing import Any

import numpy as np

from actors.audio_events import synth

THREADS = 2
TARGET_RSS_RATIO = 1.1
VARIANTS = {"none": "", "gc": "gc", "clear_session": "clear_session", "malloc_trim": "malloc_trim",
            "all": "gc,clear_session,malloc_trim"}


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SENSORIUM")}
    e["PYTHONPATH"] = str(ROOT)
    return e


def scene_minute(rng: np.random.Generator) -> np.ndarray:
    """One minute of events (alarm, clapping, laughter) with noise between them, int16."""
    pcm, _truth = synth.make_mix(rng, [synth.render(rng, "noise", 16_000)], per_class=2, gap_s=(2.0, 4.0),
                                 event_s=(2.0, 4.0))
    minute = np.zeros(60 * 16_000, np.int16)
    minute[: min(pcm.size, minute.size)] = pcm[: minute.size]
    return minute


def write_minutes(path: Path, minutes: float, seed: int = 0) -> None:
    """A WAV of ``minutes``, written one generated minute at a time."""
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * 16_000)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        written = 0
        while written < total:
            part = scene_minute(rng)[: total - written]
            w.writeframes(part.astype("<i2").tobytes())
            written += part.size


# -- 1. RTF ----------------------------------------------------------------------


def bench_rtf(seconds: float) -> dict[str, Any]:
    from actors.audio_events.detector import EventDetector, TrackerParams
    from actors.audio_events.model import load_classifier

    head = load_classifier("head", intra_op_threads=THREADS)
    params = TrackerParams.build(head.labels, {}, 0.5, [], list(synth.BACKGROUND_CLASSES))
    rng = np.random.default_rng(1)
    pcm = np.concatenate([scene_minute(rng) for _ in range(int(np.ceil(seconds / 60)))])[: int(seconds * 16_000)]
    EventDetector(head, params).feed(pcm[:32_000])  # warm-up: first calls build the graph
    out = {"audio_s": seconds}
    for name, chunk in (("stream_100ms", 1_600), ("batch_10s", 160_000)):
        detector = EventDetector(head, params)
        t = time.perf_counter()
        n_events = 0
        for i in range(0, pcm.size, chunk):
            n_events += len(detector.feed(pcm[i:i + chunk]))
        n_events += len(detector.flush())
        wall = time.perf_counter() - t
        out[name] = {"rtf": wall / seconds, "patches": detector.patches, "ms_per_patch": 1000 * wall / detector.patches,
                     "events": n_events}
    return out


# -- 2. batch memory ---------------------------------------------------------------


def run_batch(folder: Path, out: Path, cleanup: str) -> dict[str, Any]:
    t = time.monotonic()
    cmd = [sys.executable, str(ROOT / "supervisor.py"), "batch", "events", str(folder), "--per-user", "--out",
           str(out), "--no-progress", "--threads", str(THREADS)]
    if cleanup:
        cmd += ["--cleanup", cleanup]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"batch on {folder} exited {code}: {proc.stderr.read().decode()[-2000:]}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    users = [r for r in records if r["kind"] == "user"]
    files = [r for r in records if r["kind"] == "file"]
    audio_s = sum(r["duration_s"] for r in files)
    wall = time.monotonic() - t
    return {"peak_rss_bytes": usage.ru_maxrss * 1024, "wall_s": wall, "audio_s": audio_s,
            "rtf_process": wall / audio_s, "rtf_files": sum(r["wall_s"] for r in files) / audio_s,
            "rss_after_user": [u["rss_bytes"] for u in users],
            "events": {k: sum(u["counts"].get(k, 0) for u in users) for k in synth.EVENT_CLASSES}}


def make_users(root: Path, source: Path, users: int) -> Path:
    for u in range(users):
        (root / f"user{u:02d}").mkdir(parents=True)
        os.link(source, root / f"user{u:02d}" / "day.wav")  # a real file per user, one copy on disk
    return root


def bench_memory(users: int, minutes: float, variants: list[str]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sbe", dir="/tmp"))
    try:
        write_minutes(tmp / "short.wav", 1.0)
        write_minutes(tmp / "long.wav", minutes)
        short = make_users(tmp / "short", tmp / "short.wav", 1)
        long = make_users(tmp / "long", tmp / "long.wav", users)
        runs: dict[str, Any] = {}
        for variant in variants:
            for label, folder in (("short", short), ("long", long)):
                print(f"  {variant}: {label} ...", file=sys.stderr, flush=True)
                out = tmp / f"{variant}-{label}.jsonl"
                runs.setdefault(variant, {})[label] = run_batch(folder, out, VARIANTS[variant])
                out.unlink()
            v = runs[variant]
            v["rss_ratio"] = v["long"]["peak_rss_bytes"] / v["short"]["peak_rss_bytes"]
            after = v["long"]["rss_after_user"]
            v["retained_between_users_bytes"] = (after[-1] - after[0]) / max(len(after) - 1, 1)
            print(f"  {variant}: peak {v['short']['peak_rss_bytes'] / 2**20:.0f} -> "
                  f"{v['long']['peak_rss_bytes'] / 2**20:.0f} MiB (x{v['rss_ratio']:.3f}), "
                  f"{v['retained_between_users_bytes'] / 2**20:+.1f} MiB/user, RTF {v['long']['rtf_process']:.4f}",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return runs


# -- report ----------------------------------------------------------------------


def plot(results: dict[str, Any], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = results["memory"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for variant, v in mem.items():
        after = np.asarray(v["long"]["rss_after_user"]) / 2**20
        a.plot(range(1, len(after) + 1), after, marker="o", label=variant)
    a.set(xlabel="user", ylabel="RSS after the user (MiB)",
          title=f"{results['users']} users x {results['minutes']:g} min")
    a.grid(alpha=0.3)
    a.legend()
    names = list(mem)
    x = np.arange(len(names))
    b.bar(x - 0.2, [mem[n]["short"]["peak_rss_bytes"] / 2**20 for n in names], 0.4, label="1 user x 1 min")
    b.bar(x + 0.2, [mem[n]["long"]["peak_rss_bytes"] / 2**20 for n in names], 0.4,
          label=f"{results['users']} x {results['minutes']:g} min")
    b.set_xticks(x, names, rotation=20)
    b.set(ylabel="peak RSS (MiB)", title="peak RSS per cleanup variant")
    b.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 users x 3 minutes, variants none and all")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--variants", default="none,gc,clear_session,malloc_trim,all")
    parser.add_argument("--rtf-seconds", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.minutes, args.variants, args.rtf_seconds = 3, 3.0, "none,all", 60.0
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants {unknown}: expected some of {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_start = os.getloadavg()
    print("1. RTF ...", file=sys.stderr, flush=True)
    rtf = bench_rtf(args.rtf_seconds)
    print(f"2. memory: 1 user x 1 min vs {args.users} users x {args.minutes:g} min ...", file=sys.stderr, flush=True)
    memory = bench_memory(args.users, args.minutes, variants)
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_avg_start": load_start},
               "threads": THREADS, "users": args.users, "minutes": args.minutes, "rtf": rtf, "memory": memory,
               "target_rss_ratio": TARGET_RSS_RATIO, "wall_s": time.monotonic() - started}
    results["machine"]["load_avg_end"] = os.getloadavg()
    (args.out / "events.json").write_text(json.dumps(results, indent=1))
    png = plot(results, args.out / "events.png")
    print(f"\nRTF (seconds of work per second of audio, {THREADS} TF threads): "
          f"streaming 100 ms chunks {rtf['stream_100ms']['rtf']:.4f} "
          f"({rtf['stream_100ms']['ms_per_patch']:.1f} ms/patch),"
          f" batch 10 s chunks {rtf['batch_10s']['rtf']:.4f} ({rtf['batch_10s']['ms_per_patch']:.1f} ms/patch)")
    for variant, v in memory.items():
        ok = "meets" if v["rss_ratio"] <= TARGET_RSS_RATIO else "MISSES"
        print(f"memory [{variant:>13}]: peak 1x1 min {v['short']['peak_rss_bytes'] / 2**20:.0f} MiB, "
              f"{args.users}x{args.minutes:g} min {v['long']['peak_rss_bytes'] / 2**20:.0f} MiB, ratio "
              f"{v['rss_ratio']:.3f} ({ok} <= {TARGET_RSS_RATIO}); retained "
              f"{v['retained_between_users_bytes'] / 2**20:+.2f} MiB/user; batch RTF {v['long']['rtf_process']:.4f}")
    print(f"load average {results['machine']['load_avg_start']} -> {results['machine']['load_avg_end']}; "
          f"{args.out / 'events.json'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
