"""Gesture benchmark: recognition latency with 50 templates, against a naive DTW, in one run.

Templates: the 8 scripted gestures plus 42 random shapes
(``synthetic.random_shape``), ``--samples`` recorded-like samples each (cut
by the segmenter, as ``sensorium gesture record`` does), trained
(``training.train``). Queries: fresh performances of every template with
wider speed, amplitude and noise than the templates had.

Measured per query (``time.perf_counter``), one process, same queries:

* **sensorium** - ``Recognizer.recognize``: normalise, Euclidean prefilter
  over every sample, banded DTW over the candidates, threshold, outlier
  flag and calibrated confidence (what the actor runs per segment);
* **numpy DTW, no prefilter** (diagnostic) - the same banded, vectorised DTW
  against every stored sample;
* **naive baseline** - textbook full-matrix DTW in pure Python
  (``matching.dtw_python``) against one prototype per template, on
  sequences normalised the same way at a fixed 32 points: the per-template
  loop of a first prototype.

Prints p50/p99/max and accuracy per method and the ratios naive/sensorium;
writes ``DIR/gesture.json`` and ``DIR/gesture.png`` (default ``bench/out``).
Exit code 0 whether or not the target (p99 <= 5 ms) is met.

    python bench/gesture.py [--quick] [--templates 50] [--queries-per-template 4] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from _bootstrap import HERE, ROOT  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import gc
import json
import os
import platform
import time
from typing import Any, Callable

import numpy as np

TARGET_P99_MS = 5.0
BASELINE_LENGTH = 32
"""Points per sequence of the naive baseline (a prototype's choice; fixed)."""
HELD_OUT_SEED = 99


def _progress(label: str, i: int, n: int) -> None:
    filled = int(30 * (i + 1) / max(n, 1))
    end = "\n" if i + 1 >= n else ""
    print(f"\r{label:<28} [{'#' * filled}{'.' * (30 - filled)}] {i + 1}/{n}", end=end, file=sys.stderr, flush=True)


def build_templates(n_templates: int, samples: int):
    from actors.gesture.make_templates import record_synthetic
    from actors.lib.gesture.store import GestureDB
    from actors.lib.gesture.training import train
    from actors.lib.imu.synthetic import GESTURES, random_shape

    shapes = dict(GESTURES)
    for i in range(max(0, n_templates - len(shapes))):
        shapes[f"shape{i:02d}"] = random_shape(10_000 + i)
    shapes = dict(list(shapes.items())[:n_templates])
    db = GestureDB()
    names = list(shapes)
    for i, name in enumerate(names):
        _progress("recording templates", i, len(names))
        db.add_samples(name, record_synthetic([name], samples, seed=3, shapes=shapes)[name])
    t0 = time.perf_counter()
    train(db, progress=lambda stage, i, n: _progress(f"training ({stage})", i, n))
    return db, shapes, time.perf_counter() - t0


def make_queries(shapes: dict, per_template: int):
    from actors.lib.imu.synthetic import Variation, make_sample

    rng = np.random.default_rng(HELD_OUT_SEED)
    wide = Variation(duration_s=(0.6, 1.6), amplitude=(0.6, 1.4), acc_noise=(0.1, 0.45), gyro_noise=(0.01, 0.06))
    queries = []
    for name, shape in shapes.items():
        for _ in range(per_template):
            s = make_sample(name, rng, shape=shape, variation=wide)
            queries.append((name, s.t, s.acc, s.gyro))
    rng.shuffle(queries)
    return queries


def timed(label: str, queries: list, fn: Callable[[np.ndarray, np.ndarray, np.ndarray], str]) -> dict[str, Any]:
    fn(*queries[0][1:])   # warm-up (caches, first-call allocations)
    lat, cpu, correct = [], [], 0
    gc.disable()
    try:
        for i, (name, t, acc, gyro) in enumerate(queries):
            c0 = time.thread_time_ns()
            t0 = time.perf_counter()
            got = fn(t, acc, gyro)
            lat.append((time.perf_counter() - t0) * 1000.0)
            cpu.append((time.thread_time_ns() - c0) / 1e6)
            correct += got == name
            if i % 10 == 9 or i + 1 == len(queries):
                _progress(label, i, len(queries))
    finally:
        gc.enable()
    arr = np.asarray(lat)
    return {"queries": len(queries), "p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "max_ms": float(arr.max()), "mean_ms": float(arr.mean()), "accuracy": correct / len(queries),
            "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p99_ms": float(np.percentile(cpu, 99)),
            "latencies_ms": [round(x, 4) for x in lat]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from actors.lib.gesture.matching import dtw_batch, dtw_python, normalise
    from actors.gesture.recognizer import Recognizer
    from actors.lib.gesture.training import sequences_of

    db, shapes, train_s = build_templates(args.templates, args.samples)
    queries = make_queries(shapes, args.queries_per_template)
    recognizer = Recognizer(db)
    n_samples = sum(len(g.samples) for g in db.gestures.values())

    def ours(t, acc, gyro) -> str:
        d = recognizer.recognize(t, acc, gyro)
        return d.name if d is not None and d.accepted else ""

    all_seqs = np.concatenate([sequences_of(g) for g in db.gestures.values()])
    all_labels = [n for n, g in db.gestures.items() for _ in g.samples]

    def no_prefilter(t, acc, gyro) -> str:
        return all_labels[int(np.argmin(dtw_batch(normalise(t, acc, gyro), all_seqs)))]

    # The baseline keeps its own fixed resolution (not our tuned LENGTH), so that
    # tuning sensorium never makes the baseline cheaper.
    prototypes = [(n, normalise(g.samples[0].t, g.samples[0].acc, g.samples[0].gyro, BASELINE_LENGTH).tolist())
                  for n, g in db.gestures.items()]

    def naive(t, acc, gyro) -> str:
        q = normalise(t, acc, gyro, BASELINE_LENGTH).tolist()
        return min(prototypes, key=lambda p: dtw_python(q, p[1]))[0]

    results = {"sensorium": timed("sensorium", queries, ours),
               "numpy_dtw_no_prefilter": timed("numpy DTW, no prefilter", queries, no_prefilter)}
    naive_queries = queries[: args.naive_queries]
    results["naive_python_dtw"] = timed("naive pure-Python DTW", naive_queries, naive)
    s, b = results["sensorium"], results["naive_python_dtw"]
    bus = through_the_bus(db, shapes, args.bus_gestures) if args.bus_gestures else None
    return {
        "through_the_bus": bus,
        "bench": "gesture", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load1": os.getloadavg()[0]},
        "setup": {"templates": len(db.gestures), "samples_per_template": args.samples, "stored_samples": n_samples,
                  "queries": len(queries), "naive_queries": len(naive_queries), "train_s": round(train_s, 2),
                  "cv_accuracy": db.accuracy},
        "results": results,
        "ratios": {"naive_over_sensorium_p50": b["p50_ms"] / s["p50_ms"],
                   "naive_over_sensorium_p99": b["p99_ms"] / s["p99_ms"],
                   "no_prefilter_over_sensorium_p50": results["numpy_dtw_no_prefilter"]["p50_ms"] / s["p50_ms"]},
        "targets": {"p99_ms": TARGET_P99_MS, "met": s["p99_ms"] <= TARGET_P99_MS},
    }


def through_the_bus(db, shapes: dict, n_gestures: int, speed: float = 10.0) -> dict[str, Any]:
    """The gesture actor (its own process, real broker and sockets) fed a stream of the
    query gestures: its own ``processing_time_ms`` per recognition (from the
    handler receiving the batch that closed the segment to the
    publish: body check, segmenter, recognizer)."""
    import shutil
    import subprocess
    import tempfile

    import zmq

    from actors.lib.gesture.store import GestureStore
    from actors.lib.imu.synthetic import ScriptedStream, Variation
    from bus.bodies.imu import ImuBatch
    from bus.broker import Broker
    from bus.endpoints import Endpoints
    from bus.pubsub import Publisher, Subscriber

    folder = Path(tempfile.mkdtemp(prefix="sg", dir="/tmp"))
    ctx = zmq.Context.instance()
    ep = Endpoints(f"ipc://{folder}/pub.sock", f"ipc://{folder}/sub.sock", f"ipc://{folder}/ctl.sock")
    broker = Broker(ep.frontend, ep.backend, ctx=ctx).start()
    proc = None
    try:
        GestureStore(folder / "store.gst").save(db)
        (folder / "bench.toml").write_text(
            f'replace_default_actors = true\n[bus]\nruntime_dir = "{folder}"\n[log]\nlevel = "warning"\n[actors.gesture]\n'
            f'settings = {{ store = {{ path = "{folder}/store.gst", seed_path = "" }} }}\n')
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "actors", "gesture", "--name", "gesture", "-c",
                                 str(folder / "bench.toml")], cwd=ROOT, env=env)
        sub = Subscriber(ctx, ep.backend, ["gesture.recognized"])
        sub.wait_subscribed(ep.frontend, 30)
        pub = Publisher(ctx, ep.frontend, "bench")
        if not pub.wait_for_subscriber(ImuBatch.TOPIC, 30):
            raise RuntimeError("the gesture actor never subscribed")
        wide = Variation(duration_s=(0.6, 1.6), amplitude=(0.6, 1.4), acc_noise=(0.1, 0.45))
        names = list(shapes)
        stream = ScriptedStream(names, seed=HELD_OUT_SEED, pause_s=(0.8, 1.2), shapes=shapes, variation=wide,
                                shuffle=True, t0=0.0)
        processing = []
        t_data, start, batch_s = 0.0, time.monotonic(), 0.05
        while len(stream.events) < n_gestures or t_data < stream.events[n_gestures - 1].t_end + 1.0:
            t_data += batch_s
            t, acc, gyro = stream.read_until(t_data)
            pub.publish(ImuBatch.TOPIC, ImuBatch(t=t, acc=acc, gyro=gyro).to_body())
            while (msg := sub.recv(timeout_ms=0)) is not None:
                processing.append(msg.body["processing_time_ms"])
            lag = start + t_data / speed - time.monotonic()
            if lag > 0:
                time.sleep(lag)
            if len(processing) % 10 == 0:
                _progress("through the bus", min(len(processing), n_gestures - 1), n_gestures)
        end = time.monotonic() + 2.0
        while time.monotonic() < end and (msg := sub.recv(timeout_ms=200)) is not None:
            processing.append(msg.body["processing_time_ms"])
        _progress("through the bus", n_gestures - 1, n_gestures)
        pub.close()
        sub.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    p = np.asarray(processing) if processing else np.full(1, np.nan)
    return {"gestures": n_gestures, "recognized": len(processing),
            "processing_p50_ms": float(np.percentile(p, 50)), "processing_p99_ms": float(np.percentile(p, 99))}


def plot(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not importable, skipping the plot (gesture.json has every number)")
        return False
    res = report["results"]
    labels = {"sensorium": "sensorium\n(prefilter + banded DTW)", "numpy_dtw_no_prefilter": "numpy DTW,\nall samples",
              "naive_python_dtw": "naive pure-Python\nDTW per template"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(res))
    p50 = [r["p50_ms"] for r in res.values()]
    p99 = [r["p99_ms"] for r in res.values()]
    ax1.bar(x - 0.2, p50, 0.4, label="p50")
    ax1.bar(x + 0.2, p99, 0.4, label="p99")
    ax1.axhline(TARGET_P99_MS, color="red", linestyle="--", label=f"target p99 {TARGET_P99_MS:g} ms")
    ax1.set_yscale("log")
    ax1.set_xticks(x, [labels[k] for k in res], fontsize=8)
    ax1.set_ylabel("latency per segment, ms (log)")
    setup = report["setup"]
    ax1.set_title(f"{setup['templates']} templates, {setup['stored_samples']} samples")
    for i, r in enumerate(res.values()):
        ax1.text(i, p99[i] * 1.15, f"acc {r['accuracy']:.2f}", ha="center", fontsize=8)
    ax1.legend(fontsize=8)
    ax2.hist(res["sensorium"]["latencies_ms"], bins=40)
    ax2.axvline(res["sensorium"]["p99_ms"], color="black", linestyle=":", label="p99")
    ax2.set_xlabel("sensorium latency, ms")
    ax2.set_ylabel("queries")
    ax2.set_title(f"naive / sensorium: {report['ratios']['naive_over_sensorium_p50']:.0f}x (p50)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/gesture.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries (about 20 s)")
    parser.add_argument("--templates", type=int, default=50)
    parser.add_argument("--samples", type=int, default=8, help="samples per template")
    parser.add_argument("--queries-per-template", type=int, default=6)
    parser.add_argument("--naive-queries", type=int, default=60, help="queries timed for the (slow) naive baseline")
    parser.add_argument("--bus-gestures", type=int, default=100,
                        help="gestures streamed through a real gesture actor (0: skip)")
    parser.add_argument("--out", default=str(HERE / "out"))
    args = parser.parse_args(argv)
    if args.quick:
        args.queries_per_template, args.naive_queries, args.bus_gestures = 2, 20, 30
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gesture.json").write_text(json.dumps(report, indent=2) + "\n")
    plotted = plot(report, out / "gesture.png")
    print()
    print(f"{'method':<26}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cpu p50':>9}{'cpu p99':>9}{'accuracy':>10}"
          f"{'queries':>9}")
    for name, r in report["results"].items():
        print(f"{name:<26}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['max_ms']:>9.3f}{r['cpu_p50_ms']:>9.3f}"
              f"{r['cpu_p99_ms']:>9.3f}{r['accuracy']:>10.3f}{r['queries']:>9}")
    ratios = report["ratios"]
    s = report["results"]["sensorium"]
    print(f"naive / sensorium: {ratios['naive_over_sensorium_p50']:.0f}x at p50, "
          f"{ratios['naive_over_sensorium_p99']:.0f}x at p99; no-prefilter / sensorium "
          f"{ratios['no_prefilter_over_sensorium_p50']:.1f}x at p50")
    print(f"target p99 <= {TARGET_P99_MS:g} ms: {'PASS' if report['targets']['met'] else 'MISS'} "
          f"({s['p99_ms']:.2f} ms); templates {report['setup']['templates']}, training "
          f"{report['setup']['train_s']:.1f} s, cross-validation accuracy {report['setup']['cv_accuracy']:.3f}")
    bus = report["through_the_bus"]
    if bus:
        print(f"through the bus ({bus['recognized']} of {bus['gestures']} gestures recognised): actor "
              f"processing_time_ms p50 {bus['processing_p50_ms']:.2f} p99 {bus['processing_p99_ms']:.2f}")
    print(f"wrote {out / 'gesture.json'}" + (f" and {out / 'gesture.png'}" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
