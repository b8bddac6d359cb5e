"""Recorder benchmark: sustained camera + IMU recording, and write throughput vs a raw append.

Two measurements in one run:

1. **Sustained recording, no loss.** A publisher process sends 640x480x3
   uint8 frames at 30 fps on ``camera.frame`` and IMU samples at 200 Hz on
   ``sensor.imu`` through a real broker to the real ``recorder`` actor (its
   own process, default settings but the folder and prefixes). After
   ``--seconds`` the recorder is stopped with SIGTERM (it closes its file)
   and the files are read back: every message sent must be there, in seq
   order, with no gap records and no drops.
2. **Write throughput.** The same bytes (10 s worth of that stream, encoded
   once) are written (a) by ``RecordingWriter`` (MCAP, chunks closed and
   fsynced every 1 s, then the summary, footer and a final fsync) and (b)
   by a raw append of the same frames to a file in the same folder (fsync
   every 1 s and at the end). Ratio = median recorder MB/s / median raw
   MB/s over ``--repeat`` rounds; one untimed warm-up round of both comes
   first (the first write after the sustained part ran at a fraction of the
   speed of the next ones, for whichever path went first), and the order
   alternates each round. The per-round ratios (raw and recorder of the same
   round: the same load) are reported too.

Run from the repository root::

    python bench/recorder.py [--quick] [--seconds S] [--repeat N] [--dir DIR] [--out DIR]

Writes ``OUT/recorder.json`` and ``OUT/recorder.png`` (default ``bench/out``).
Exit code 0 whether or not a target is met; non-zero when a run fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _bootstrap import HERE, ROOT  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from typing import Any

import numpy as np
import psutil
import zmq

FRAME_SHAPE = (480, 640, 3)
FPS = 30.0
IMU_HZ = 200.0
TARGETS = {"throughput_ratio": 0.8, "lost": 0}


def _quiet() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def progress(text: str) -> None:
    print(f"\r\x1b[K{text}" if sys.stderr.isatty() else text, end="" if sys.stderr.isatty() else "\n",
          file=sys.stderr, flush=True)


def frame_body(i: int) -> dict[str, Any]:
    img = np.empty(FRAME_SHAPE, np.uint8)
    img[...] = i % 251  # not all zeros, and changing
    return {"image": img, "frame_id": i, "fps": FPS, "quality": {"blur": 0.1, "brightness": 0.5}}


def imu_body(i: int) -> dict[str, Any]:
    t = np.array([i / IMU_HZ])
    return {"t": t, "acc": np.full((1, 3), 9.81 * (i % 7), np.float32), "gyro": np.zeros((1, 3), np.float32),
            "quality": 1.0, "flags": 0}


# ----------------------------------------------------------------------------- 1. sustained recording


def publisher_proc(frontend: str, seconds: float, conn: Any) -> None:
    """Pace frames at FPS and IMU at IMU_HZ for ``seconds``; report what was sent."""
    _quiet()
    from bus.pubsub import Publisher

    ctx = zmq.Context()
    pub = Publisher(ctx, frontend, "bench@sensors", hwm=100_000)
    ok = pub.wait_for_subscriber("camera.frame", 30.0) and pub.wait_for_subscriber("sensor.imu", 30.0)
    if not ok:
        conn.send({"error": "the recorder never subscribed"})
        return
    frames = [frame_body(i) for i in range(8)]  # reused: building 921,600 bytes each time is not the point
    period_f, period_i = 1.0 / FPS, 1.0 / IMU_HZ
    t0 = time.perf_counter()
    nf = ni = 0
    late_max = 0.0
    while True:
        now = time.perf_counter() - t0
        if now >= seconds:
            break
        due_f, due_i = nf * period_f, ni * period_i
        if due_f <= now:
            body = frames[nf % len(frames)]
            body["frame_id"] = nf
            pub.publish("camera.frame", body)
            late_max = max(late_max, now - due_f)
            nf += 1
        elif due_i <= now:
            pub.publish("sensor.imu", imu_body(ni))
            ni += 1
        else:
            time.sleep(min(due_f, due_i) - now)
    conn.send({"frames": nf, "imu": ni, "seconds": time.perf_counter() - t0, "late_max_s": late_max})
    conn.recv()  # keep the socket open until the parent has what it needs
    pub.close()
    ctx.term()


def sustained(workdir: Path, seconds: float) -> dict[str, Any]:
    from bus.broker import Broker
    from bus.messages import Heartbeat
    from bus.pubsub import Subscriber
    from bus.recording import ScanReport, recordings, scan

    runtime = workdir / "rt"
    runtime.mkdir(mode=0o700)
    rec_dir = workdir / "rec"
    cfg = workdir / "bench.toml"
    cfg.write_text(f'replace_default_actors = true\n[bus]\nruntime_dir = "{runtime}"\n[actors.recorder]\nsettings = {{ dir = "{rec_dir}", '
                   'prefixes = ["camera.", "sensor."], include_sys_actor = false, min_free_bytes = 0 }\n')
    frontend, backend = f"ipc://{runtime}/pub.sock", f"ipc://{runtime}/sub.sock"
    ctx = zmq.Context.instance()
    broker = Broker(frontend, backend, hwm=10_000, ctx=ctx).start()
    beats = Subscriber(ctx, backend, ["sys.heartbeat"])
    beats.wait_subscribed(frontend, 10.0)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rec = subprocess.Popen([sys.executable, "-m", "actors", "recorder", "--name", "recorder", "-c", str(cfg)],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last_extra: dict[str, Any] = {}

    def wait_heartbeat(pred, timeout_s: float) -> dict[str, Any]:
        nonlocal last_extra
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            msg = beats.recv(timeout_ms=200)
            if msg is not None and msg.header.src == "recorder":
                hb = Heartbeat.from_body(msg.body)
                last_extra = hb.extra | {"counters": hb.counters}
                if pred(hb):
                    return last_extra
            if rec.poll() is not None:
                raise RuntimeError(f"the recorder exited with {rec.returncode}")
        raise RuntimeError(f"no matching recorder heartbeat within {timeout_s:.0f} s; last: {last_extra}")

    try:
        wait_heartbeat(lambda hb: hb.state == "ready", 60.0)
        proc_rec = psutil.Process(rec.pid)
        cpu0 = sum(proc_rec.cpu_times()[:2])
        mpctx = mp.get_context("spawn")
        parent, child = mpctx.Pipe()
        pub = mpctx.Process(target=publisher_proc, args=(frontend, seconds, child), daemon=True)
        pub.start()
        t0 = time.monotonic()
        while not parent.poll(0.5):
            elapsed = time.monotonic() - t0
            progress(f"sustained: {elapsed:4.0f}/{seconds:.0f} s, recorder has "
                     f"{last_extra.get('messages', 0)} message(s)")
            if elapsed > seconds + 60:
                raise RuntimeError("the publisher did not finish")
            try:
                wait_heartbeat(lambda hb: True, 0.1)
            except RuntimeError:
                pass
        sent = parent.recv()
        if "error" in sent:
            raise RuntimeError(sent["error"])
        total = sent["frames"] + sent["imu"]
        extra = wait_heartbeat(lambda hb: hb.extra.get("messages", 0) >= total, 60.0)
        cpu_s = sum(proc_rec.cpu_times()[:2]) - cpu0
        parent.send("done")
        pub.join(10)
        rec.send_signal(signal.SIGTERM)
        rec.wait(60)
        progress("sustained: reading the recording back\n")
    finally:
        if rec.poll() is None:
            rec.kill()
        beats.close()
        broker.stop()
    counts: dict[str, int] = {}
    seqs: dict[str, list[int]] = {}
    gap_records = 0
    damage: list[str] = []
    files = recordings(rec_dir, "rec-")
    for f in files:
        report = ScanReport(f)
        for r in scan(f, report):
            if r.kind == "gap":
                gap_records += 1
                continue
            counts[r.topic] = counts.get(r.topic, 0) + 1
            seqs.setdefault(r.topic, []).append(r.sequence)
        damage += report.describe()
    in_order = all(s == list(range(len(s))) for s in seqs.values())
    recorded = sum(counts.values())
    return {
        "seconds": round(sent["seconds"], 2), "sent": {"camera.frame": sent["frames"], "sensor.imu": sent["imu"]},
        "recorded": counts, "lost": total - recorded, "gap_records": gap_records, "in_seq_order": in_order,
        "recorder_dropped": extra.get("dropped", 0), "recorder_gaps": extra.get("counters", {}).get("gaps", 0),
        "files": len(files), "damage": damage, "publisher_late_max_s": round(sent["late_max_s"], 4),
        "bytes_recorded": extra.get("bytes", 0),
        "mb_per_s": round(extra.get("bytes", 0) / 1e6 / sent["seconds"], 1),
        "recorder_cpu_percent": round(100.0 * cpu_s / sent["seconds"], 1),
    }


# ----------------------------------------------------------------------------- 2. write throughput


def build_messages(seconds: float) -> list[Any]:
    from bus.envelope import Header, decode, encode

    msgs = []
    nf, ni = int(seconds * FPS), int(seconds * IMU_HZ)
    per_frame = ni // nf
    ts = time.time_ns()
    i_imu = 0
    for i in range(nf):
        items = [("camera.frame", "cam", i, frame_body(i))]
        for _ in range(per_frame):
            items.append(("sensor.imu", "imu", i_imu, imu_body(i_imu)))
            i_imu += 1
        for topic, src, seq, body in items:
            frames = [bytes(f) for f in encode(topic, Header(src, seq, ts), body)]
            msg = decode(frames)
            msg.frames = frames
            msgs.append(msg)
    return msgs


def write_raw(path: Path, msgs: list[Any], flush_s: float) -> float:
    t0 = time.perf_counter()
    next_flush = t0 + flush_s
    with open(path, "wb") as f:
        fd = f.fileno()
        for m in msgs:
            for fr in m.frames:
                f.write(fr)
            if time.perf_counter() >= next_flush:
                f.flush()
                os.fsync(fd)
                next_flush += flush_s
        f.flush()
        os.fsync(fd)
    return time.perf_counter() - t0


def write_recorder(path: Path, msgs: list[Any], flush_s: float) -> float:
    from bus.recording import RecordingWriter

    t0 = time.perf_counter()
    w = RecordingWriter(path)
    next_flush = t0 + flush_s
    now_ns = time.time_ns
    for m in msgs:
        w.write(m, now_ns())
        if time.perf_counter() >= next_flush:
            w.flush()
            next_flush += flush_s
    w.close()
    return time.perf_counter() - t0


def throughput(workdir: Path, seconds_of_data: float, repeat: int) -> dict[str, Any]:
    progress("throughput: encoding the messages")
    msgs = build_messages(seconds_of_data)
    payload = sum(m.nbytes for m in msgs)
    runs: dict[str, list[float]] = {"raw": [], "recorder": []}
    sizes = {}
    paths = (("raw", write_raw), ("recorder", write_recorder))
    for i in range(-1, repeat):  # round -1: warm-up, not counted
        for name, fn in paths if i % 2 == 0 else paths[::-1]:
            progress(f"throughput: {'warm-up' if i < 0 else f'run {i + 1}/{repeat}'}, {name}")
            path = workdir / f"tp-{name}.{'mcap' if name == 'recorder' else 'bin'}"
            dt = fn(path, msgs, 1.0)
            if i >= 0:
                runs[name].append(payload / dt / 1e6)
            sizes[name] = path.stat().st_size
            path.unlink()
    progress("throughput: done\n")
    raw, rec = statistics.median(runs["raw"]), statistics.median(runs["recorder"])
    paired = [r / w for r, w in zip(runs["recorder"], runs["raw"])]
    return {"messages": len(msgs), "payload_mb": round(payload / 1e6, 1), "raw_mb_per_s": round(raw, 1),
            "recorder_mb_per_s": round(rec, 1), "ratio": round(rec / raw, 3),
            "paired_ratios": [round(x, 3) for x in paired], "paired_ratio_median": round(statistics.median(paired), 3),
            "runs_mb_per_s": {k: [round(x, 1) for x in v] for k, v in runs.items()},
            "file_bytes": sizes, "overhead_bytes_per_message": round((sizes["recorder"] - sizes["raw"]) / len(msgs), 1)}


# ----------------------------------------------------------------------------- report


def plot(report: dict[str, Any], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not importable: plot skipped"
    tp, su = report["throughput"], report["sustained"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.bar(["raw append", "recorder (MCAP)"], [tp["raw_mb_per_s"], tp["recorder_mb_per_s"]], color=["grey", "tab:blue"])
    a.set_ylabel("MB/s (payload, fsync every 1 s)")
    a.set_title(f"write throughput: ratio {tp['ratio']:.2f} (target >= {TARGETS['throughput_ratio']})")
    topics = list(su["sent"])
    x = np.arange(len(topics))
    b.bar(x - 0.2, [su["sent"][t] for t in topics], 0.4, label="sent", color="grey")
    b.bar(x + 0.2, [su["recorded"].get(t, 0) for t in topics], 0.4, label="recorded", color="tab:green")
    b.set_xticks(x, topics)
    b.set_title(f"{su['seconds']:.0f} s at 30 fps 640x480 + 200 Hz IMU: lost {su['lost']}")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="8 s sustained, 5 s of data, 1 throughput run")
    p.add_argument("--seconds", type=float, help="sustained recording length (default 30)")
    p.add_argument("--repeat", type=int, help="throughput runs per path, after a warm-up (default 5)")
    p.add_argument("--dir", type=Path, help="where the files go (default: a fresh folder under /tmp)")
    p.add_argument("--out", type=Path, default=HERE / "out")
    args = p.parse_args()
    _quiet()
    seconds = args.seconds or (8.0 if args.quick else 30.0)
    repeat = args.repeat or (1 if args.quick else 5)
    data_s = 5.0 if args.quick else 10.0
    workdir = Path(tempfile.mkdtemp(prefix="sr-", dir=args.dir or "/tmp"))
    try:
        su = sustained(workdir, seconds)
        tp = throughput(workdir, data_s, repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "bench": "recorder", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "targets": TARGETS, "sustained": su, "throughput": tp,
        "pass": {"no_loss": su["lost"] == 0 and su["gap_records"] == 0 and su["in_seq_order"]
                 and su["recorder_dropped"] == 0, "throughput_ratio": tp["ratio"] >= TARGETS["throughput_ratio"]},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recorder.json").write_text(json.dumps(report, indent=2))
    png = plot(report, args.out / "recorder.png")
    ok = lambda b: "PASS" if b else "MISS"  # noqa: E731
    print(f"sustained {su['seconds']:.0f} s: sent {su['sent']}, recorded {su['recorded']}, lost {su['lost']}, "
          f"gap records {su['gap_records']}, recorder drops {su['recorder_dropped']}, "
          f"{su['mb_per_s']} MB/s, recorder CPU {su['recorder_cpu_percent']}%  "
          f"[{ok(report['pass']['no_loss'])}: no loss]")
    print(f"throughput ({tp['payload_mb']} MB, median of {repeat}): raw append {tp['raw_mb_per_s']} MB/s, recorder "
          f"{tp['recorder_mb_per_s']} MB/s, ratio {tp['ratio']:.3f} (per round: {tp['paired_ratios']})  "
          f"[{ok(report['pass']['throughput_ratio'])}: >= {TARGETS['throughput_ratio']}]")
    print(f"load average (1, 5, 15 min) at the end: {report['machine']['load_average']}")
    print(f"wrote {args.out / 'recorder.json'}; plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
