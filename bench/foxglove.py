"""Foxglove live view benchmark: what a connected viewer costs the detector.

A real supervisor runs the synthetic camera unthrottled (``latency_headroom``
1 and ``max_fps`` 1000: the camera goes as fast as the detector allows), the
Hydra detector (1 thread) and the ``foxglove`` actor. The bench listens on
the bus (headers only) and measures, per round of ``--seconds``:

* detector frames per second: ``detect.<signal>`` messages of one signal per second;
* camera-to-detection latency: detect ``ts`` - ts of the camera.frame with that ``frame_id``
  (both wall clocks of one host), median and p90, ms.

Rounds alternate **without** a viewer (baseline: the actor runs, nobody
subscribes, so it converts nothing) and **with** a viewer (its own process:
a WebSocket client on ``foxglove.sdk.v1`` subscribed to the camera as
``foxglove.RawImage``, the detections' annotations and JSON, reading as fast
as it can). Ratio = median fps with / median fps without; target >= 0.9
(a viewer costs at most 10 %). The load average and the foxglove actor's
counters (messages logged, conflated) are reported per round.

Run from the repository root::

    python bench/foxglove.py [--quick] [--seconds S] [--rounds N] [--size WxH] [--max-fps F] [--out DIR]

Writes ``OUT/foxglove.json`` (default ``bench/out``). Exit 0 whether or not the target is met.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _bootstrap import HERE, ROOT  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

import zmq

TARGET_RATIO = 0.9


def progress(text: str) -> None:
    sys.stderr.write("\r" + text.ljust(90))
    sys.stderr.flush()


def viewer_proc(port: int, ready: Any, stop: Any, counts: Any) -> None:
    """A Foxglove viewer in its own process: subscribes to the camera and the boxes, reads everything."""
    from tests.actors.foxglove.viewer import Viewer

    async def watch() -> None:
        async with Viewer(f"ws://127.0.0.1:{port}") as viewer:
            await viewer.wait(lambda: "camera.frame" in viewer.channels and any(
                t.endswith("/annotations") for t in viewer.channels), 60.0, "channels")
            topics = ["camera.frame"] + [t for t in viewer.channels if t.startswith("detect.")]
            await viewer.subscribe(*topics)
            await viewer.next_message("camera.frame", 60.0)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            counts.update(dict(viewer.counts))

    asyncio.run(watch())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 rounds of 8 s each way")
    p.add_argument("--seconds", type=float, default=15.0, help="length of one round, s (default 15)")
    p.add_argument("--rounds", type=int, default=3, help="rounds each way, interleaved (default 3)")
    p.add_argument("--size", default="320x240", help="camera frame size WxH (default 320x240)")
    p.add_argument("--max-fps", type=float, default=1000.0,
                   help="camera ceiling, frames/s (default 1000: far above the detector's pace, which sets the rate)")
    p.add_argument("--out", type=Path, default=HERE / "out")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.rounds = 8.0, 2
    width, height = (int(v) for v in args.size.lower().split("x"))

    from bus.messages import Heartbeat
    from bus.pubsub import Subscriber

    work = Path(tempfile.mkdtemp(prefix="sbf", dir="/tmp"))
    work.chmod(0o700)
    cfg = work / "bench.toml"
    cfg.write_text(f"""replace_default_actors = true
[bus]
runtime_dir = "{work}"
[actors.camera]
settings = {{ source = "synthetic", width = {width}, height = {height}, max_fps = {args.max_fps}, min_fps = 1.0, latency_headroom = 1.0 }}
[actors.detector]
after = ["camera"]
start_timeout_s = 120.0
settings = {{ threads = 1 }}
[actors.foxglove]
settings = {{ port = 0, prefixes = ["camera.", "detect.", "monitor.", "sys.actor"] }}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORIUM")}
    env["PYTHONPATH"] = str(ROOT)
    log = open(work / "supervisor.out", "w")
    sup = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "run", "-c", str(cfg)], cwd=ROOT, env=env,
                           stdout=log, stderr=subprocess.STDOUT)
    ctx = zmq.Context.instance()
    sub: Subscriber | None = None
    rounds: list[dict[str, Any]] = []
    try:
        frontend, backend = f"ipc://{work}/pub.sock", f"ipc://{work}/sub.sock"
        deadline = time.monotonic() + 60
        while not Path(f"{work}/sub.sock").exists():
            if time.monotonic() > deadline or sup.poll() is not None:
                raise RuntimeError(f"the supervisor did not start; see {work / 'supervisor.out'}")
            time.sleep(0.1)
        sub = Subscriber(ctx, backend, ["camera.frame", "sys.heartbeat"], prefixes=["detect."], hwm=100_000)
        sub.wait_subscribed(frontend, 30.0)
        port, signal_topic, fx_extra = 0, "", {}
        frame_ts: dict[int, int] = {}
        progress("waiting for the detector and the foxglove actor")
        deadline = time.monotonic() + 180
        while not (port and signal_topic):
            msg = sub.recv(timeout_ms=500)
            if time.monotonic() > deadline or sup.poll() is not None:
                raise RuntimeError(f"no detections ({signal_topic!r}) or no foxglove port ({port}) after "
                                   f"{time.monotonic() - deadline + 180:.0f} s")
            if msg is None:
                continue
            if msg.topic == "sys.heartbeat" and msg.header.src == "foxglove":
                port = Heartbeat.from_body(msg.body).extra.get("port", 0)
            elif msg.topic.startswith("detect.") and not signal_topic:
                signal_topic = msg.topic

        def measure(seconds: float) -> dict[str, Any]:
            nonlocal fx_extra
            load0 = os.getloadavg()[0]
            latencies: list[float] = []
            n = 0
            t_end = time.monotonic() + seconds
            t0 = time.monotonic()
            while time.monotonic() < t_end:
                msg = sub.recv(timeout_ms=100)
                if msg is None:
                    continue
                if msg.topic == "camera.frame":
                    frame_ts[msg.body["frame_id"]] = msg.header.ts
                    if len(frame_ts) > 4096:
                        for k in list(frame_ts)[:2048]:
                            del frame_ts[k]
                elif msg.topic == signal_topic:
                    n += 1
                    ts = frame_ts.get(msg.body["frame_id"])
                    if ts is not None:
                        latencies.append((msg.header.ts - ts) / 1e6)
                elif msg.topic == "sys.heartbeat" and msg.header.src == "foxglove":
                    fx_extra = Heartbeat.from_body(msg.body).extra
            elapsed = time.monotonic() - t0
            latencies.sort()
            return {"fps": round(n / elapsed, 2), "frames": n,
                    "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
                    "latency_ms_p90": round(latencies[int(0.9 * (len(latencies) - 1))], 1) if latencies else None,
                    "loadavg_1m": round((load0 + os.getloadavg()[0]) / 2, 2),
                    "foxglove": {k: fx_extra.get(k) for k in ("viewers", "logged", "conflated", "unwatched")}}

        measure(min(5.0, args.seconds))  # warm-up: the camera's adaptive rate settles on the detector's pace
        mpctx = mp.get_context("spawn")
        for r in range(args.rounds):
            for with_viewer in (False, True) if r % 2 == 0 else (True, False):
                progress(f"round {r + 1}/{args.rounds}: {'with' if with_viewer else 'without'} a viewer")
                viewer = None
                if with_viewer:
                    manager_ready, manager_stop = mpctx.Event(), mpctx.Event()
                    counts = mpctx.Manager().dict()
                    viewer = mpctx.Process(target=viewer_proc, args=(port, manager_ready, manager_stop, counts),
                                           daemon=True)
                    viewer.start()
                    if not manager_ready.wait(90):
                        raise RuntimeError("the viewer got no camera frame within 90 s")
                result = measure(args.seconds)
                result.update(round=r + 1, viewer=with_viewer)
                if viewer is not None:
                    manager_stop.set()
                    viewer.join(15)
                    result["viewer_received"] = dict(counts)
                rounds.append(result)
        progress("done\n")
    except BaseException:
        log.flush()
        sys.stderr.write("\nsupervisor output (last lines):\n" + "".join(
            (work / "supervisor.out").read_text(errors="replace").splitlines(True)[-30:]))
        raise
    finally:
        if sub is not None:
            sub.close()
        if sup.poll() is None:
            sup.terminate()
            try:
                sup.wait(60)
            except subprocess.TimeoutExpired:
                sup.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)

    def med(viewer: bool, key: str) -> float | None:
        values = [r[key] for r in rounds if r["viewer"] is viewer and r[key] is not None]
        return round(statistics.median(values), 2) if values else None

    fps_without, fps_with = med(False, "fps"), med(True, "fps")
    ratio = round(fps_with / fps_without, 3) if fps_without and fps_with else None
    lat_without, lat_with = med(False, "latency_ms_p50"), med(True, "latency_ms_p50")
    report = {
        "bench": "foxglove", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                         "python": platform.python_version()},
        "camera": f"{width}x{height}", "seconds_per_round": args.seconds, "rounds_each_way": args.rounds,
        "signal": signal_topic, "rounds": rounds,
        "detector_fps": {"without_viewer": fps_without, "with_viewer": fps_with, "ratio": ratio},
        "latency_ms_p50": {"without_viewer": lat_without, "with_viewer": lat_with,
                           "ratio": round(lat_with / lat_without, 3) if lat_with and lat_without else None},
        "latency_ms_p90": {"without_viewer": med(False, "latency_ms_p90"), "with_viewer": med(True, "latency_ms_p90")},
        "target": {"fps_ratio_at_least": TARGET_RATIO, "met": ratio is not None and ratio >= TARGET_RATIO},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "foxglove.json").write_text(json.dumps(report, indent=2))
    print(f"detector fps without a viewer {fps_without}, with {fps_with}: ratio {ratio} (target >= {TARGET_RATIO}); "
          f"latency p50 {lat_without} -> {lat_with} ms")
    print(f"wrote {args.out / 'foxglove.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
