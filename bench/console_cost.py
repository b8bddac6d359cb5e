"""The console's cost to the pipeline: three API clients subscribed as the page is, against none.

    python bench/console_cost.py [--phase-s 20] [--rounds 2] [--out bench/out]

A real supervisor runs a synthetic camera with its rate unthrottled
(min_fps = max_fps = 1000: it publishes as fast as it can), the detector
(one thread) and the console. Phases alternate in the same run: no client
(the baseline), then three websocket clients each subscribed to what the
page subscribes to (camera.frame as JPEG at 5/s, detect., speech.transcript,
audio.event, gesture.*, sensor.imu) and reading everything sent, and so on
for ``--rounds``. In each phase, measured from a bus subscriber of the bench
(the same in both): the detector's rate (distinct frames detected per
second) and the camera-to-detection latency (detect.* header ts minus the
camera.frame header ts of the same frame id; median and p90), and the CPU
seconds of the console and of the detector per wall second. Target: fps and
latency with clients within 10 % of the baseline. Writes OUT/console_cost.json.
"""

from __future__ import annotations

from _bootstrap import ROOT  # noqa: F401 - first: puts the repository root on sys.path

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

PAGE_TOPICS = {"camera.frame": 5, "detect.": 10, "speech.transcript": 10, "audio.event": 10,
               "gesture.recognized": 10, "gesture.unknown": 10, "sensor.imu": 20}
TARGET = 0.10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PageClient(threading.Thread):
    """A websocket client subscribed as the page is, reading every frame sent to it."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=1 << 24, open_timeout=30, legacy=True)
        for n, (topic, hz) in enumerate(PAGE_TOPICS.items()):
            self.ws.send(json.dumps({"id": n, "cmd": "subscribe", "args": {"topic": topic, "max_hz": hz}}))
        self.received = 0
        self.bytes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - closed at the end of the phase
                return
            self.received += 1
            self.bytes += len(data)

    def close(self) -> None:
        self.stop.set()
        self.ws.close()
        self.join(5)


def measure(front: str, back: str, seconds: float, procs: dict[str, psutil.Process]) -> dict[str, Any]:
    import zmq

    from bus.pubsub import Subscriber

    sub = Subscriber(zmq.Context.instance(), back, topics=["camera.frame"], prefixes=["detect."])
    sub.wait_subscribed(front, 10)
    frames: dict[int, int] = {}
    detected: dict[int, int] = {}
    cpu0 = {k: p.cpu_times() for k, p in procs.items()}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        msg = sub.recv(timeout_ms=200)
        if msg is None:
            continue
        fid = int(msg.body.get("frame_id", -1))
        if msg.topic == "camera.frame":
            frames[fid] = msg.header.ts
        elif fid in frames and fid not in detected:
            detected[fid] = msg.header.ts - frames[fid]
    wall = time.monotonic() - t0
    cpu = {k: round((sum(p.cpu_times()[:2]) - sum(cpu0[k][:2])) / wall, 3) for k, p in procs.items()}
    sub.close()
    lat = np.array(list(detected.values()), dtype=np.float64) / 1e6
    return {"seconds": round(wall, 2), "camera_fps": round(len(frames) / wall, 2),
            "detector_fps": round(len(detected) / wall, 3),
            "latency_ms_p50": round(float(np.median(lat)), 2) if lat.size else None,
            "latency_ms_p90": round(float(np.percentile(lat, 90)), 2) if lat.size else None,
            "cpu_per_s": cpu}


def run(phase_s: float, rounds: int, width: int, height: int) -> dict[str, Any]:
    from bus import control

    folder = Path(tempfile.mkdtemp(prefix="scb", dir="/tmp"))
    port = free_port()
    (folder / "xdg").mkdir()
    config = folder / "bench.toml"
    config.write_text(
        f'replace_default_actors = true\n[bus]\nruntime_dir = "{folder}"\n[log]\nlevel = "warning"\n'
        '[actors.camera]\nsettings = { source = "synthetic", min_fps = 1000.0, max_fps = 1000.0, '
        f'width = {width}, height = {height} }}\n'
        '[actors.detector]\nafter = ["camera"]\nstart_timeout_s = 120.0\nsettings = { threads = 1 }\n'
        f'[actors.console]\nsettings = {{ port = {port} }}\n')
    env = {**__import__("os").environ, "XDG_DATA_HOME": str(folder / "xdg")}
    sup = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "run", "-c", str(config)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctl = f"ipc://{folder}/control.sock"
    front, back = f"ipc://{folder}/pub.sock", f"ipc://{folder}/sub.sock"
    phases: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                status = control.request(ctl, "status", timeout_s=2)
                if all(a["state"] == "running" for a in status["actors"]):
                    break
            except control.ControlError:
                pass
            if time.monotonic() > deadline or sup.poll() is not None:
                raise RuntimeError(f"the pipeline did not start: {folder}")
            time.sleep(0.5)
        procs = {a["name"]: psutil.Process(a["pid"]) for a in status["actors"]}
        measure(front, back, 5.0, procs)  # warm-up: the detector's first frames are slow
        for r in range(rounds):
            for clients in (0, 3):
                page = [PageClient(f"ws://127.0.0.1:{port}/ws") for _ in range(clients)]
                for c in page:
                    c.start()
                result = measure(front, back, phase_s, procs)
                result.update(round=r, clients=clients, client_messages=[c.received for c in page],
                              client_bytes=[c.bytes for c in page])
                for c in page:
                    c.close()
                phases.append(result)
                print(json.dumps(result), flush=True)
    finally:
        sup.terminate()
        try:
            sup.wait(30)
        except subprocess.TimeoutExpired:
            sup.kill()
        shutil.rmtree(folder, ignore_errors=True)

    def med(clients: int, key: str) -> float:
        return float(np.median([p[key] for p in phases if p["clients"] == clients and p[key] is not None]))

    def cpu(clients: int, name: str) -> float:
        return float(np.median([p["cpu_per_s"][name] for p in phases if p["clients"] == clients]))

    summary = {
        "baseline": {k: med(0, k) for k in ("detector_fps", "latency_ms_p50", "latency_ms_p90", "camera_fps")},
        "three_clients": {k: med(3, k) for k in ("detector_fps", "latency_ms_p50", "latency_ms_p90", "camera_fps")},
        "console_cpu_per_s": {"none": cpu(0, "console"), "three_clients": cpu(3, "console")},
        "detector_cpu_per_s": {"none": cpu(0, "detector"), "three_clients": cpu(3, "detector")},
    }
    b, t = summary["baseline"], summary["three_clients"]
    summary["ratios"] = {"detector_fps": round(t["detector_fps"] / b["detector_fps"], 3),
                         "latency_ms_p50": round(t["latency_ms_p50"] / b["latency_ms_p50"], 3)}
    summary["within_10_percent"] = all(abs(v - 1.0) <= TARGET for v in summary["ratios"].values())
    return {"phase_s": phase_s, "rounds": rounds, "frame": [width, height], "phases": phases, "summary": summary,
            "machine": {"cpus": psutil.cpu_count(), "load1": psutil.getloadavg()[0]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase-s", type=float, default=20.0, help="seconds per phase (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (no client, three clients) (default 2)")
    parser.add_argument("--width", type=int, default=320, help="camera frame width (default 320)")
    parser.add_argument("--height", type=int, default=240, help="camera frame height (default 240)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args()
    result = run(args.phase_s, args.rounds, args.width, args.height)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "console_cost.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
