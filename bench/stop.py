"""Stop bench: Ctrl-C on the default pipeline, timed.

Starts ``sensorium run`` on the embedded default pipeline (every enabled actor:
monitor, probe, camera, detector, speech, vad, audio_source, audio_events,
sensor, gesture) in a private runtime folder (its own HOME too, so the gesture
store is a fresh copy), waits until every actor is running, lets it work for
``--settle`` seconds, sends SIGINT and measures:

* ``stop_s``: SIGINT -> the supervisor's exit (every actor down, the broker closed);
* ``sigterms`` / ``sigkills``: actors that missed their grace period (``escalate_term``)
  or ignored SIGTERM too (``escalate_kill``), from the supervisor's log;
* per actor, the stop request -> exit seen, and the slowest;
* the load average before the stop, and ``--load N`` busy-loop processes added to make it.

The baseline is the target of issue 13: <= 3 s idle on 2 cores, no SIGTERM at load 4.

    python bench/stop.py [--runs N] [--load N] [--settle S] [--out DIR]

Prints the JSON and writes ``DIR/stop.json`` (default ``bench/out``).
"""

from __future__ import annotations

from _bootstrap import HERE, ROOT  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bus import control

START_TIMEOUT_S = 300.0


def busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def transitions(log_file: Path) -> list[dict[str, Any]]:
    out = []
    for line in log_file.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("event") == "actor_transition":
            out.append(entry)
    return out


def iso_s(ts: str) -> float:
    """Seconds of a log timestamp (2026-01-01T12:00:00.123456Z), for differences within one run."""
    hms = ts.split("T", 1)[1].rstrip("Z")
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def one_run(settle_s: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="sstop", dir="/tmp"))
    folder.chmod(0o700)
    config = folder / "sensorium.toml"
    config.write_text(f'[bus]\nruntime_dir = "{folder}"\n')  # no [actors.*]: the default pipeline
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORIUM")}
    env.update(HOME=str(folder), PYTHONPATH=str(ROOT), SENSORIUM__ACTORS__MONITOR__SETTINGS__PROMETHEUS_PORT="0")
    out = open(folder / "supervisor.out", "w")
    sup = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "run", "-c", str(config)], cwd=ROOT,
                           env=env, stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"ipc://{folder}/control.sock"
    try:
        started = time.monotonic()
        states: dict[str, str] = {}
        while time.monotonic() - started < START_TIMEOUT_S:
            if sup.poll() is not None:
                raise RuntimeError(f"the supervisor exited {sup.returncode}: "
                                   f"{(folder / 'supervisor.out').read_text()[-2000:]}")
            try:
                status = control.request(endpoint, "status", timeout_s=2)
                states = {a["name"]: a["state"] for a in status["actors"]}
                if all(s in ("running", "stopped") for s in states.values()):  # stopped: enabled = false
                    break
            except control.ControlError:
                pass
            time.sleep(0.5)
        start_s = time.monotonic() - started
        time.sleep(settle_s)
        load = os.getloadavg()
        t0 = time.monotonic()
        sup.send_signal(signal.SIGINT)
        sup.wait(timeout=120)
        stop_s = time.monotonic() - t0
        moves = transitions(folder / "logs" / "supervisor.log")
        asked: dict[str, float] = {}
        per_actor: dict[str, float] = {}
        for m in moves:
            if m["transition"] == "request_stop" and m["to"] == "stopping":
                asked[m["name"]] = iso_s(m["ts"])
            elif m["transition"] == "stopped" and m["name"] in asked:
                per_actor[m["name"]] = round(iso_s(m["ts"]) - asked[m["name"]], 3)
        slowest = max(per_actor, key=per_actor.get) if per_actor else None
        return {
            "start_s": round(start_s, 1), "states_before_stop": states, "loadavg_1m_before_stop": round(load[0], 2),
            "stop_s": round(stop_s, 3), "exit_code": sup.returncode,
            "sigterms": [m["name"] for m in moves if m["transition"] == "escalate_term"],
            "sigkills": [m["name"] for m in moves if m["transition"] == "escalate_kill"],
            "stop_by_actor_s": dict(sorted(per_actor.items(), key=lambda kv: -kv[1])),
            "slowest": slowest,
        }
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        out.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--load", type=int, default=0, metavar="N", help="busy-loop processes running during the run")
    p.add_argument("--settle", type=float, default=5.0, metavar="S", help="seconds of work before the Ctrl-C")
    p.add_argument("--out", type=Path, default=HERE / "out")
    args = p.parse_args()
    load = busy_loops(args.load)
    try:
        runs = [one_run(args.settle) for _ in range(args.runs)]
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    result = {"bench": "stop", "cpus": os.cpu_count(), "busy_loops": args.load, "runs": runs,
              "targets": {"stop_s_idle_2_cores": 3.0, "sigterms_at_load_4": 0}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stop.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
