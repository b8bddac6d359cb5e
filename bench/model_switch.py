"""How fast a running detector follows `sensorium models promote`/`rollback` (target: within 2 s).

    python bench/model_switch.py [--switches 10] [--out bench/out]

A real detector process (shipped models/ under a temporary user store,
heads = circle) behind an in-process broker; frames go in every 20 ms. Each
round promotes circle u1 (a copy of the shipped weights) or rolls it back,
in this process as the CLI would, and times how long until a
``detect.circle`` carries the new ``head_version``. The baseline, measured
in the same run, is a frame's round trip without a switch (the resolution
of this measurement); the switch time is reported as is and as a ratio to
the detector's registry check period (``reload_check_s``, 0.5 s): the
expectation is about half a period on average plus the round trip, at most
a period plus the time to load a head. Each switch starts after a random
pause, so the requests fall at random points of the detector's check cycle.
Writes ``OUT/model_switch.json``.
"""

from __future__ import annotations

from _bootstrap import ROOT  # noqa: F401 - first: puts the repository root on sys.path

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET_S = 2.0
RELOAD_CHECK_S = 0.5
FRAME_EVERY_S = 0.02


def run(switches: int) -> dict[str, Any]:
    import zmq

    from actors.lib.modelstore import DEFAULT_STORE, ModelStore
    from actors.lib.scenes import random_scene
    from bus.bodies.vision import CameraFrame
    from bus.broker import Broker
    from bus.pubsub import Publisher, Subscriber

    folder = Path(tempfile.mkdtemp(prefix="sm", dir="/tmp"))
    ctx = zmq.Context.instance()
    front, back = f"ipc://{folder}/pub.sock", f"ipc://{folder}/sub.sock"
    broker = Broker(front, back, ctx=ctx).start()
    store = ModelStore.layered(DEFAULT_STORE, folder / "user")
    store.add_head("circle", store.read_verified("circle", 1), backbone=1, metrics={"f1": 0.0}, notes="bench copy")
    proc = None
    try:
        (folder / "bench.toml").write_text(
            f'[bus]\nruntime_dir = "{folder}"\n[log]\nlevel = "warning"\n[actors.detector]\n'
            f'settings = {{ models_dir = "{DEFAULT_STORE}", user_dir = "{folder / "user"}", heads = ["circle"], '
            f'threads = 1, reload_check_s = {RELOAD_CHECK_S} }}\n')
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "actors", "detector", "--name", "detector", "-c",
                                 str(folder / "bench.toml")], cwd=ROOT, env=env)
        sub = Subscriber(ctx, back, ["detect.circle"])
        sub.wait_subscribed(front, 60)
        pub = Publisher(ctx, front, "bench@camera")
        if not pub.wait_for_subscriber(CameraFrame.TOPIC, 120):
            raise RuntimeError("the detector never subscribed to camera.frame")
        image = random_scene(200_000).image
        frame_id = 0

        def until(version: str, limit_s: float = 30.0) -> tuple[float, list[float]]:
            """Seconds until a detection from ``version``; the frame round trips seen meanwhile."""
            nonlocal frame_id
            t0 = time.monotonic()
            sent: dict[int, float] = {}
            trips = []
            while time.monotonic() - t0 < limit_s:
                frame_id += 1
                sent[frame_id] = time.monotonic()
                pub.publish(CameraFrame.TOPIC, CameraFrame(image=image, frame_id=frame_id, fps=50.0).to_body())
                deadline = time.monotonic() + FRAME_EVERY_S
                while (msg := sub.recv(timeout_ms=max(1, int((deadline - time.monotonic()) * 1000)))) is not None:
                    now = time.monotonic()
                    if msg.body["frame_id"] in sent:
                        trips.append(now - sent[msg.body["frame_id"]])
                    if msg.body["head_version"] == version:
                        return now - t0, trips
                    if now >= deadline:
                        break
            raise RuntimeError(f"no detection from {version} within {limit_s} s")

        until("1", 120)  # warm: the detector is up and answering
        switch_s, trips = [], []
        rng = np.random.default_rng(0)
        for i in range(switches):
            # A random pause first: a switch requested right after the detector noticed the last one would
            # always wait a whole check period (the bench would be phase-locked to the detector's timer).
            time.sleep(float(rng.uniform(0, RELOAD_CHECK_S)))
            target = "u1" if i % 2 == 0 else "1"
            if target == "u1":
                store.promote("circle", "u1")
            else:
                store.rollback("circle")
            took, seen = until(target)
            switch_s.append(took)
            trips += seen
            print(f"switch {i + 1}/{switches} to {target}: {took:.3f} s", file=sys.stderr)
        pub.close()
        sub.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    s, t = np.asarray(switch_s), np.asarray(trips)
    return {"switches": switches, "target_s": TARGET_S, "reload_check_s": RELOAD_CHECK_S,
            "switch_p50_s": round(float(np.percentile(s, 50)), 3), "switch_max_s": round(float(s.max()), 3),
            "switch_mean_s": round(float(s.mean()), 3),
            "baseline_round_trip_p50_s": round(float(np.percentile(t, 50)), 4),
            "switch_mean_over_check_period": round(float(s.mean()) / RELOAD_CHECK_S, 2),
            "within_target": bool(s.max() <= TARGET_S), "switch_s": [round(x, 3) for x in switch_s]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/model_switch.py", description=__doc__.split("\n")[0])
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args(argv)
    report = run(args.switches)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_switch.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
