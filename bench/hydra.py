"""Hydra benchmark: N heads on one shared backbone against N separate full models, in one run.

For N = 1, 6 and 12 signals, per 120x160 frame (batch 1, CPU, float32):

* **shared**: the backbone once, then N heads on its features (what the
  detector actor does);
* **separate** (baseline): N full single-signal models (backbone + head each,
  ``MonolithicDetector``), one after the other.

Both sides decode their heatmaps the same way, so the comparison is the
network cost. Latency: median (and p90) of the per-frame time over
``--frames`` frames after a warm-up, the two sides interleaved frame by frame
so that drift on the machine hits them alike. Memory, two readings:

* model memory: parameter and buffer bytes of everything loaded - what a
  detector holds for as long as it runs, per signal. The target applies to
  this figure;
* peak memory: model memory plus the peak activation bytes of one frame
  (measured with forward hooks: the largest sum of tensors alive at once in
  a chain of layers, a layer's input and output; the shared side keeps the
  backbone features alive while the heads run). Activations are transient
  and, with models run one after another, the same buffer size on both
  sides, so this ratio is reported, not targeted;
* process RSS: each configuration built in a fresh process (spawn), RSS
  after loading and running 3 frames, minus RSS after ``import torch``; it
  includes allocator slack and is reported for reference (and for the old
  product's promise of < 150 MB for 6 signals, the whole-process RSS).

Targets (at N = 6): shared time <= 0.5x separate; shared memory <= 0.35x.

    python bench/hydra.py [--frames 60] [--threads 1] [--out DIR]

Writes DIR/hydra.json and DIR/hydra.png (default bench/out). Exit 0 whether
or not a target is met (a measurement), non-zero on errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _bootstrap import HERE  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import time
from typing import Any

import numpy as np

COUNTS = (1, 6, 12)
TARGETS = {"time_ratio_6": 0.5, "memory_ratio_6": 0.35}
PRODUCT_PROMISE = {"latency_ms_6": 50.0, "rss_mb_6": 150.0}


def _build(n: int, shared: bool):
    """The shipped backbone and heads when there are, random ones beyond (timing does not depend on values)."""
    import torch  # noqa: PLC0415

    from actors.detector import model as hm  # noqa: PLC0415
    from actors.lib.modelstore import ModelStore  # noqa: PLC0415

    torch.manual_seed(0)
    store = ModelStore()
    try:
        doc = store.read()
        backbone = hm.backbone_from_bytes(store.read_verified("backbone", store.active("backbone", doc), doc))
        shipped = [hm.head_from_bytes(store.read_verified(s, store.active(s, doc), doc)) for s in store.signals(doc)]
    except Exception:  # noqa: BLE001 - no shipped store: random weights measure the same
        backbone, shipped = hm.Backbone().eval(), []
    heads = [shipped[i] if i < len(shipped) else hm.Head(backbone.out_channels).eval() for i in range(n)]
    if shared:
        return hm.Hydra(backbone, {f"s{i}": h for i, h in enumerate(heads)}).eval()
    models = []
    for h in heads:
        bb = hm.Backbone(backbone.channels)
        bb.load_state_dict(backbone.state_dict())
        models.append(hm.MonolithicDetector(bb, h).eval())
    return models


def _run(model, x, frame_hw) -> None:
    import torch  # noqa: PLC0415

    from actors.detector.model import decode  # noqa: PLC0415

    with torch.inference_mode():
        if isinstance(model, list):
            for m in model:
                decode(m(x), frame_hw=frame_hw)
        else:
            for out in model(x).values():
                decode(out, frame_hw=frame_hw)


def _weights_bytes(model) -> int:
    mods = model if isinstance(model, list) else [model]
    return sum(t.numel() * t.element_size() for m in mods for t in list(m.parameters()) + list(m.buffers()))


def _chain_peak(module, x) -> tuple[int, "Any"]:
    """Peak bytes alive while running a chain of layers (input + output of each leaf), and the output."""
    import torch  # noqa: PLC0415

    peak = [x.numel() * x.element_size()]

    def hook(_m, inputs, output):
        alive = sum(t.numel() * t.element_size() for t in inputs if torch.is_tensor(t))
        peak[0] = max(peak[0], alive + output.numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            out = module(x)
    finally:
        for h in handles:
            h.remove()
    return peak[0], out


def _activation_peak(model, x) -> int:
    if isinstance(model, list):  # models run one after the other: one model's peak at a time
        return max(_chain_peak(m, x)[0] for m in model)
    bb_peak, features = _chain_peak(model.backbone, x)
    # A head's chain peak counts its input: the shared features, alive while every head runs.
    head_peaks = [_chain_peak(h, features)[0] for h in model.heads.values()]
    return max(bb_peak, max(head_peaks, default=0))


def _rss_child(n: int, shared: bool, threads: int, conn) -> None:
    try:
        import psutil  # noqa: PLC0415
        import torch  # noqa: PLC0415

        from actors.detector.model import INPUT_HW  # noqa: PLC0415

        torch.set_num_threads(threads)
        proc = psutil.Process()
        x = torch.rand(1, 3, *INPUT_HW) - 0.5
        with torch.inference_mode():
            torch.nn.functional.conv2d(x, torch.zeros(1, 3, 3, 3))  # touch the conv path before the baseline
        base = proc.memory_info().rss
        model = _build(n, shared)
        for _ in range(3):
            _run(model, x, INPUT_HW)
        rss = proc.memory_info().rss
        conn.send({"rss_delta_mb": (rss - base) / 2**20, "rss_total_mb": rss / 2**20})
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send({"error": repr(exc)})


def measure_rss(n: int, shared: bool, threads: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_rss_child, args=(n, shared, threads, child))
    p.start()
    if not parent.poll(300):
        p.kill()
        raise RuntimeError(f"rss measurement n={n} shared={shared} timed out")
    result = parent.recv()
    p.join(30)
    if "error" in result:
        raise RuntimeError(f"rss measurement n={n} shared={shared}: {result['error']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/hydra.py", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="timed frames per configuration and side")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the detector's default is 1)")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)

    import torch  # noqa: PLC0415

    from actors.detector.model import INPUT_HW, preprocess  # noqa: PLC0415
    from actors.lib.scenes import random_scene  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    frames = [preprocess(random_scene(300_000 + i).image) for i in range(args.frames + args.warmup)]
    results: dict[str, Any] = {"counts": list(COUNTS), "rows": []}
    for n in COUNTS:
        shared, separate = _build(n, True), _build(n, False)
        times = {"shared": [], "separate": []}
        for i, x in enumerate(frames):
            for side, model in (("shared", shared), ("separate", separate)) if i % 2 else \
                    (("separate", separate), ("shared", shared)):
                t0 = time.perf_counter()
                _run(model, x, INPUT_HW)
                if i >= args.warmup:
                    times[side].append((time.perf_counter() - t0) * 1000.0)
        row: dict[str, Any] = {"n": n}
        for side, model in (("shared", shared), ("separate", separate)):
            t = times[side]
            weights = _weights_bytes(model)
            acts = _activation_peak(model, frames[0])
            rss = measure_rss(n, side == "shared", args.threads)
            row[side] = {"latency_ms_p50": round(statistics.median(t), 3),
                         "latency_ms_p90": round(float(np.percentile(t, 90)), 3),
                         "weights_mb": round(weights / 2**20, 4), "activations_mb": round(acts / 2**20, 4),
                         "peak_memory_mb": round((weights + acts) / 2**20, 4),
                         "rss_delta_mb": round(rss["rss_delta_mb"], 2), "rss_total_mb": round(rss["rss_total_mb"], 1)}
        row["time_ratio"] = round(row["shared"]["latency_ms_p50"] / row["separate"]["latency_ms_p50"], 3)
        row["memory_ratio"] = round(row["shared"]["weights_mb"] / row["separate"]["weights_mb"], 3)
        row["peak_memory_ratio"] = round(row["shared"]["peak_memory_mb"] / row["separate"]["peak_memory_mb"], 3)
        row["rss_delta_ratio"] = round(row["shared"]["rss_delta_mb"] / max(row["separate"]["rss_delta_mb"], 1e-6), 3)
        results["rows"].append(row)
        print(f"N={n:>2}  time shared {row['shared']['latency_ms_p50']:7.2f} ms  separate "
              f"{row['separate']['latency_ms_p50']:7.2f} ms  ratio {row['time_ratio']:.3f} | model memory shared "
              f"{row['shared']['weights_mb']:.3f} MB  separate {row['separate']['weights_mb']:.3f} MB  "
              f"ratio {row['memory_ratio']:.3f} | peak with activations ratio {row['peak_memory_ratio']:.3f} | rss delta {row['shared']['rss_delta_mb']:.1f} vs "
              f"{row['separate']['rss_delta_mb']:.1f} MB", flush=True)
    six = next(r for r in results["rows"] if r["n"] == 6)
    verdict = {
        "time_ratio_6": {"value": six["time_ratio"], "target": TARGETS["time_ratio_6"],
                         "pass": six["time_ratio"] <= TARGETS["time_ratio_6"]},
        "memory_ratio_6": {"value": six["memory_ratio"], "target": TARGETS["memory_ratio_6"],
                           "pass": six["memory_ratio"] <= TARGETS["memory_ratio_6"]},
        "latency_ms_6_vs_promise": {"value": six["shared"]["latency_ms_p50"], "promise": PRODUCT_PROMISE["latency_ms_6"],
                                    "pass": six["shared"]["latency_ms_p50"] < PRODUCT_PROMISE["latency_ms_6"]},
        "rss_delta_mb_6_vs_promise": {"value": six["shared"]["rss_delta_mb"], "promise": PRODUCT_PROMISE["rss_mb_6"],
                                      "pass": six["shared"]["rss_delta_mb"] < PRODUCT_PROMISE["rss_mb_6"]},
    }
    results["targets"] = verdict
    results["machine"] = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                          "cpu": platform.processor() or platform.machine(), "frames": args.frames,
                          "input_hw": list(INPUT_HW)}
    for name, v in verdict.items():
        limit = v.get("target", v.get("promise"))
        print(f"{'PASS' if v['pass'] else 'MISS'}  {name}: {v['value']} (limit {limit})")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hydra.json").write_text(json.dumps(results, indent=1))
    _plot(results, args.out / "hydra.png")
    print(f"wrote {args.out / 'hydra.json'} and {args.out / 'hydra.png'}")
    return 0


def _plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib not importable: no plot")
        return
    rows = results["rows"]
    n = [r["n"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
    for key, ax, label in (("latency_ms_p50", axes[0], "latency per frame, ms (p50)"),
                           ("weights_mb", axes[1], "model memory held, MB (weights + buffers)")):
        ax.plot(n, [r["shared"][key] for r in rows], marker="o", label="shared backbone + N heads")
        ax.plot(n, [r["separate"][key] for r in rows], marker="s", label="N separate full models")
        ax.set_xlabel("signals (N)")
        ax.set_ylabel(label)
        ax.set_xticks(n)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    six = next(r for r in rows if r["n"] == 6)
    fig.suptitle(f"Hydra: at N=6 time x{six['time_ratio']:.2f}, memory x{six['memory_ratio']:.2f} of separate models",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
