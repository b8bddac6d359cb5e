"""Bridge bench: two hosts (network namespaces joined by a veth pair), one supervisor and bridge each.

In one run, between the same two namespaces (root needed; `ip netns`):

* ``frames``: 640x480x3 uint8 frames from a publisher on host B to a subscriber
  on host A through both bridges (B's broker -> B's bridge -> tcp+CURVE -> A's
  bridge -> A's broker), against raw pyzmq PUB/SUB over tcp+CURVE between
  the same namespaces. Target: >= 0.7x.
* ``small``: small messages B -> A through the bridges, against the same
  Sensorium publisher -> subscriber path on one host (both on B's broker).
  Target: >= 0.7x.
* throughput runs use the same flow control on both sides of each ratio: the
  publisher keeps at most ``window`` messages unacknowledged by the
  subscriber (acks go back through this process), so no queue overflows and
  what is measured is the path, not a drop rate;
* latency runs are paced (frames 30/s, small 1000/s): p50/p99 of receipt
  time minus the header's ``ts`` (one machine, so one clock for both hosts);
* losses: per run, sent minus received, against what the subscriber counted
  (seq gaps, and missing head or tail by seq); ``unaccounted`` must be 0.

    .venv/bin/python bench/bridge.py [--frames N] [--small N] [--repeat N] [--out DIR]

Prints the JSON and writes ``DIR/bridge.json`` (default ``bench/out``).
"""

from __future__ import annotations

from _bootstrap import HERE, ROOT  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

FRAME_SHAPE = (480, 640, 3)
PORT_BRIDGE, PORT_RAW = 7401, 7402


# -- workers (run in a namespace as `bench/bridge.py worker ROLE ...`) -------------------------------------


def _stdin_lines() -> list[str]:
    lines = []
    while select.select([sys.stdin], [], [], 0)[0]:
        line = sys.stdin.readline()
        if not line:
            break
        lines.append(line.strip())
    return lines


def _payload(kind: str) -> Any:
    if kind == "frame":
        return np.random.default_rng(0).integers(0, 255, FRAME_SHAPE, dtype=np.uint8)
    return 1234


def worker_pub(a: argparse.Namespace) -> None:
    """Publish ``n`` messages after the subscriber said go; at most ``window`` unacked, or at ``rate`` per s."""
    ctx = zmq.Context.instance()
    payload = _payload(a.kind)
    if a.raw:
        from zmq.utils import z85  # noqa: F401 - keys come as Z85 text
        sock = ctx.socket(zmq.PUB)
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = a.public.encode(), a.secret.encode()
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.bind(a.endpoint)
        raw = payload.tobytes() if isinstance(payload, np.ndarray) else b"x" * 8

        def send(topic: str, seq: int) -> None:
            head = seq.to_bytes(8, "little") + time.time_ns().to_bytes(8, "little")
            sock.send_multipart([topic.encode(), head, raw], copy=False)
    else:
        from bus.pubsub import Publisher
        # A ring as deep as the flow-control window: a frame is never overwritten before its reader's turn.
        pub = Publisher(ctx, a.endpoint, "benchpub", hwm=100_000, shm_slots=max(8, a.window + 8))

        def send(topic: str, seq: int) -> None:
            pub.publish(topic, {"v": payload} if a.kind == "frame" else {"i": seq, "v": payload})
    topic = a.topic
    go = False
    while not go:  # warm-up: until the subscriber hears us and says go
        send("bench.warm", 0)
        for line in _stdin_lines():
            go = go or line == "go"
        time.sleep(0.02)
    acked = -1
    t0 = time.perf_counter()
    for seq in range(a.n):
        if a.rate:
            due = t0 + seq / a.rate
            while time.perf_counter() < due:
                time.sleep(min(0.001, max(0.0, due - time.perf_counter())))
        else:
            while seq - acked > a.window:
                select.select([sys.stdin], [], [], 0.5)
                for line in _stdin_lines():
                    if line.startswith("ack "):
                        acked = max(acked, int(line[4:]))
        send(topic, seq)
    # Wait for the end (stdin closed) so the socket lingers long enough.
    while True:
        r, _, _ = select.select([sys.stdin], [], [], 30)
        if not r or not sys.stdin.readline():
            break


def worker_sub(a: argparse.Namespace) -> None:
    """Receive until seq n-1 or ``idle_s`` without a message; print acks, then one JSON result line."""
    ctx = zmq.Context.instance()
    topic = a.topic
    if a.raw:
        sock = ctx.socket(zmq.SUB)
        sock.curve_serverkey = a.server.encode()
        sock.curve_publickey, sock.curve_secretkey = a.public.encode(), a.secret.encode()
        sock.setsockopt(zmq.RCVHWM, 100_000)
        for t in (topic, "bench.warm"):
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        sock.connect(a.endpoint)

        def recv(timeout_ms: int) -> tuple[str, int, int] | None:
            if not sock.poll(timeout_ms):
                return None
            t, head, _body = sock.recv_multipart(copy=False)
            hb = head.bytes
            return t.bytes.decode(), int.from_bytes(hb[:8], "little"), int.from_bytes(hb[8:16], "little")

        def counted() -> dict[str, int]:
            return {"gaps": 0}  # raw has no seq accounting of its own: gaps come from our seq below
    else:
        from bus.pubsub import Subscriber
        # shm: a local subscriber as the detector is (frames from the bridge's ring, read-only views).
        sub = Subscriber(ctx, a.endpoint, topics=[topic, "bench.warm"], hwm=100_000, shm=a.shm, shm_views=a.shm)
        sub.wait_subscribed(a.frontend, 30)

        def recv(timeout_ms: int) -> tuple[str, int, int] | None:
            msg = sub.recv(timeout_ms=timeout_ms)
            return None if msg is None else (msg.topic, msg.header.seq, msg.header.ts)

        def counted() -> dict[str, int]:
            return {"gaps": sum(v for (_sender, t), v in sub.stats.gaps_by_stream.items() if t == topic)}
    warm = False
    seqs: list[int] = []
    lat_ms: list[float] = []
    first_t = last_t = 0.0
    since_ack = 0
    while True:
        got = recv(int(a.idle_s * 1000))
        if got is None:
            break
        t, seq, ts = got
        if t == "bench.warm":
            if not warm:
                warm = True
                print("warm", flush=True)
            continue
        now = time.perf_counter()
        lat_ms.append((time.time_ns() - ts) / 1e6)
        if not seqs:
            first_t = now
        last_t = now
        seqs.append(seq)
        since_ack += 1
        if since_ack >= max(1, a.window // 4):
            print(f"ack {seq}", flush=True)
            since_ack = 0
        if seq == a.n - 1:
            break
    seen = set(seqs)
    gaps_seen = sum(max(0, b - a_ - 1) for a_, b in zip(seqs, seqs[1:]))
    result = {"received": len(seqs), "distinct": len(seen), "duplicates": len(seqs) - len(seen),
              "first_seq": seqs[0] if seqs else None, "last_seq": seqs[-1] if seqs else None,
              "gaps_counted": counted()["gaps"] if not a.raw else gaps_seen,
              "elapsed_s": last_t - first_t,
              "latency_ms": {"p50": float(np.percentile(lat_ms, 50)) if lat_ms else None,
                             "p99": float(np.percentile(lat_ms, 99)) if lat_ms else None}}
    print(json.dumps(result), flush=True)


# -- the run ---------------------------------------------------------------------------------------------------


def run_pair(lab: Any, pub_host: str, sub_host: str, pub_args: list[str], sub_args: list[str],
             hosts: dict[str, int], cpus: dict[str, set[int]], timeout_s: float = 300) -> dict[str, Any]:
    """One publisher -> subscriber run; ``hosts``: name -> supervisor pid, whose process trees' CPU is counted
    (with the workers') from "go" to the subscriber's result; ``cpus``: namespace -> the CPUs its processes
    run on."""
    me = [sys.executable, str(Path(__file__).resolve()), "worker"]

    def pinned(host: str) -> list[str]:
        return [*lab.exec_prefix(host), "taskset", "-c", ",".join(map(str, sorted(cpus[host])))]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sub = subprocess.Popen([*pinned(sub_host), *me, "sub", *sub_args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT, bufsize=1)
    # The publisher is one of pub_host's senders: its header names that host, as the bridge there requires.
    pub = subprocess.Popen([*pinned(pub_host), *me, "pub", *pub_args], stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, text=True, env=dict(env, SENSORIUM_HOST=pub_host), cwd=ROOT,
                           bufsize=1)
    result: dict[str, Any] = {}
    start: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def snapshot() -> dict[str, float]:
        cpu = {"publisher": _cpu_s(pub.pid), "subscriber": _cpu_s(sub.pid)}
        for h, pid in hosts.items():
            cpu[f"{h} supervisor+broker"] = _cpu_s(pid)
            cpu[f"{h} bridge"] = _tree_cpu_s(pid) - cpu[f"{h} supervisor+broker"]
        return cpu
    end = time.monotonic() + timeout_s
    try:
        for line in sub.stdout:
            line = line.strip()
            if line == "warm":
                start = snapshot()
                pub.stdin.write("go\n")
                pub.stdin.flush()
            elif line.startswith("ack "):
                pub.stdin.write(line + "\n")
                pub.stdin.flush()
            elif line.startswith("{"):
                result = json.loads(line)
                # Both workers are still alive (the publisher waits for its stdin to close): their CPU so far.
                cpu = {k: v - start.get(k, 0.0) for k, v in snapshot().items()}
                break
            if time.monotonic() > end:
                break
    finally:
        for p in (sub, pub):
            if p.stdin:
                try:
                    p.stdin.close()
                except BrokenPipeError:
                    pass
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    result["cpu_s"] = cpu
    return result


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process, all its threads (ZeroMQ's I/O threads count)."""
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Every thread of a process and of its descendants onto ``cpus``."""
    import psutil

    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for thread in proc.threads():
            try:
                os.sched_setaffinity(thread.id, cpus)
            except OSError:
                pass  # a thread that just ended


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a supervisor (its broker thread included) and of its actors (here: the bridge)."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0.0
    return sum(_cpu_s(p.pid) for p in procs)


def summarize(name: str, n: int, r: dict[str, Any], nbytes: int) -> dict[str, Any]:
    received = r.get("received", 0)
    head = r.get("first_seq") or 0
    tail = (n - 1 - r["last_seq"]) if r.get("last_seq") is not None else n
    lost = n - r.get("distinct", 0)
    counted = r.get("gaps_counted", 0) + head + tail
    rate = (received - 1) / r["elapsed_s"] if r.get("elapsed_s") else 0.0
    return {"path": name, "sent": n, "received": received, "msgs_per_s": round(rate, 1),
            "mb_per_s": round(rate * nbytes / 1e6, 1), "lost": lost, "counted_losses": counted,
            "unaccounted": lost - counted, "duplicates": r.get("duplicates", 0),
            "latency_ms": {k: (round(v, 3) if v is not None else None) for k, v in r.get("latency_ms", {}).items()},
            "cpu_s": {k: round(v, 3) for k, v in r.get("cpu_s", {}).items()}}


def main() -> int:
    p = argparse.ArgumentParser(description="Bridge bench between two network namespaces (root).")
    p.add_argument("--frames", type=int, default=3000, help="frames per throughput run")
    p.add_argument("--small", type=int, default=100000, help="small messages per throughput run")
    p.add_argument("--repeat", type=int, default=3, help="tries per throughput path (the median counts)")
    p.add_argument("--only", choices=["frames", "small"], help="one throughput pair only (no latency runs)")
    p.add_argument("--cpus", choices=["both", "per-host", "shared"], default="both",
                   help="CPU models: each host on its own CPU, all on all CPUs, or both in turn")
    p.add_argument("--out", type=Path, default=HERE / "out", help="output folder")
    args = p.parse_args()
    from bus.security import KeyStore
    from tests.net.netns import NetLab, remove_stale
    from tests.support import Collector, SupervisorProcess, wait_until, write_config

    why = NetLab.available()
    if why:
        print(f"bench/bridge.py: cannot make network namespaces here: {why}", file=sys.stderr)
        return 2
    remove_stale()
    lab = NetLab()
    folder = Path(f"/tmp/sbb-{secrets.token_hex(3)}")
    folder.mkdir(mode=0o700)
    sups: list[SupervisorProcess] = []
    try:
        for h in ("ba", "bb"):
            lab.add_host(h)
            (folder / h).mkdir()
        addr_a, addr_b = lab.join("ba", "bb")
        stores = {h: KeyStore(folder / h / "keys") for h in ("ba", "bb")}
        for s in stores.values():
            s.init()
        stores["ba"].trust("bb", stores["bb"].keypair().public.decode())
        stores["bb"].trust("ba", stores["ba"].keypair().public.decode())
        common = 'hwm = 20000\n'
        cfg_b = (f'[actors.bridge]\nkind = "bridge"\n[actors.bridge.settings]\nbind = "tcp://{addr_b}:{PORT_BRIDGE}"\n'
                 f'keys_dir = "{folder / "bb" / "keys"}"\n{common}[[actors.bridge.settings.peers]]\nname = "ba"\n'
                 'exports = ["bench."]\n')
        cfg_a = (f'[actors.bridge]\nkind = "bridge"\n[actors.bridge.settings]\nkeys_dir = "{folder / "ba" / "keys"}"\n'
                 f'{common}[[actors.bridge.settings.peers]]\nname = "bb"\n'
                 f'endpoint = "tcp://{addr_b}:{PORT_BRIDGE}"\nimports = ["bench."]\n')
        for h, cfg in (("bb", cfg_b), ("ba", cfg_a)):
            # Rings as deep as the frames' flow-control window (64), as in the publisher (worker_pub).
            path = write_config(folder / h, cfg, f'host = "{h}"\nshm_slots = 72')
            sups.append(SupervisorProcess(path, folder / h, prefix=lab.exec_prefix(h)))
        for sup in sups:
            sup.wait_running("bridge")
        sup_b, sup_a = sups
        watch = Collector(sup_a.frontend, sup_a.backend, ["sys.link"])
        wait_until(lambda: any(m.body["state"] == "up" for m in watch.messages), 60, "link up")
        watch.close()

        # What the two idle systems cost: the floor under every CPU figure below.
        idle_before = {h: _tree_cpu_s(sup.pid) for h, sup in (("host B", sup_b), ("host A", sup_a))}
        time.sleep(3.0)
        idle_cpu = {f"{h} (supervisor, broker, bridge)": round((_tree_cpu_s(sup.pid) - idle_before[h]) / 3.0, 4)
                    for h, sup in (("host B", sup_b), ("host A", sup_a))}
        fb = int(np.prod(FRAME_SHAPE))
        kb = stores["bb"].keypair()
        ka = stores["ba"].keypair()
        raw_pub = ["--raw", "--endpoint", f"tcp://{addr_b}:{PORT_RAW}", "--public", kb.public.decode(),
                   "--secret", kb.secret.decode()]
        raw_sub = ["--raw", "--endpoint", f"tcp://{addr_b}:{PORT_RAW}", "--server", kb.public.decode(),
                   "--public", ka.public.decode(), "--secret", ka.secret.decode()]
        bridged_pub = ["--endpoint", sup_b.frontend]
        bridged_sub = ["--endpoint", sup_a.backend, "--frontend", sup_a.frontend]
        bridged_frame_sub = [*bridged_sub, "--shm"]
        local_sub = ["--endpoint", sup_b.backend, "--frontend", sup_b.frontend]

        def measure(cpus: dict[str, set[int]]) -> dict[str, Any]:
            """Every path once per model (throughput: the median of ``repeat`` alternating tries)."""
            runs: dict[str, dict[str, Any]] = {}

            def one(name: str, kind: str, n: int, pub: list[str], sub: list[str], sub_host: str, extra: list[str],
                    nbytes: int) -> dict[str, Any]:
                # The one-host baseline uses a topic the bridge does not export: it runs without the bridge's load.
                topic = f"solo.{kind}" if sub_host == "bb" else f"bench.{kind}"
                common_args = ["--kind", kind, "--topic", topic, "--n", str(n), *extra]
                r = run_pair(lab, "bb", sub_host, [*pub, *common_args], [*sub, *common_args],
                             {"host B": sup_b.pid, "host A": sup_a.pid}, cpus)
                result = summarize(name, n, r, nbytes)
                print(json.dumps(result), file=sys.stderr, flush=True)
                return result

            def median_of(name: str, tries: list[dict[str, Any]]) -> None:
                """The run with the median rate stands for the path; every try's rate and losses are kept."""
                ranked = sorted(tries, key=lambda r: r["msgs_per_s"])
                runs[name] = dict(ranked[len(ranked) // 2], tries_msgs_per_s=[r["msgs_per_s"] for r in tries],
                                  unaccounted=sum(r["unaccounted"] for r in tries),
                                  duplicates=sum(r["duplicates"] for r in tries))

            def ratio(a: str, b: str) -> float:
                return round(runs[a]["msgs_per_s"] / runs[b]["msgs_per_s"], 3) if runs[b]["msgs_per_s"] else 0.0

            win_f, win_s = ["--window", "64"], ["--window", "8000"]
            # Throughput: each pair of paths alternates, `repeat` times (the machine's other load drifts).
            pairs = {
                ("frames_bridged", "frames_raw_curve"): (
                    ("frame", args.frames, bridged_pub, bridged_frame_sub, "ba", win_f, fb),
                    ("frame", args.frames, raw_pub, raw_sub, "ba", win_f, fb)),
                ("small_bridged", "small_one_host"): (
                    ("small", args.small, bridged_pub, bridged_sub, "ba", win_s, 40),
                    ("small", args.small, bridged_pub, local_sub, "bb", win_s, 40)),
            }
            for names, specs in pairs.items():
                if args.only and not names[0].startswith(args.only):
                    continue
                tries: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
                for i in range(args.repeat):
                    order = list(zip(names, specs)) if i % 2 == 0 else list(zip(names, specs))[::-1]
                    for name, spec in order:
                        tries[name].append(one(name, *spec))
                for name in names:
                    median_of(name, tries[name])
            if args.only:
                return {"runs": runs, **{f"{args.only}_ratio": ratio(*[n for n in runs])}}
            runs["latency_frames_bridged"] = one("latency_frames_bridged", "frame", 90, bridged_pub, bridged_frame_sub,
                                                 "ba", ["--rate", "30"], fb)
            runs["latency_frames_raw_curve"] = one("latency_frames_raw_curve", "frame", 90, raw_pub, raw_sub, "ba",
                                                   ["--rate", "30"], fb)
            runs["latency_small_bridged"] = one("latency_small_bridged", "small", 2000, bridged_pub, bridged_sub, "ba",
                                                ["--rate", "1000"], 40)
            runs["latency_small_one_host"] = one("latency_small_one_host", "small", 2000, bridged_pub, local_sub, "bb",
                                                 ["--rate", "1000"], 40)

            return {
                "frames_ratio_bridged_vs_raw_curve": ratio("frames_bridged", "frames_raw_curve"),
                "small_ratio_bridged_vs_one_host": ratio("small_bridged", "small_one_host"),
                "unaccounted_losses": sum(r["unaccounted"] for r in runs.values()),
                "duplicates": sum(r["duplicates"] for r in runs.values()),
                "runs": runs,
            }

        models = {"one_cpu_per_host": {"bb": {1}, "ba": {0}}, "shared_cpus": {"bb": {0, 1}, "ba": {0, 1}}}
        if os.cpu_count() < 2 or args.cpus == "shared":
            del models["one_cpu_per_host"]
        if args.cpus == "per-host":
            del models["shared_cpus"]
        report: dict[str, Any] = {
            "target": 0.7,
            "clock": "one machine: both namespaces share the kernel clock, so latency = receipt - header ts",
            "cpus": os.cpu_count(),
            "load1_before": os.getloadavg()[0],
            "idle_cpu_s_per_s": idle_cpu,
        }
        for model, cpus in models.items():
            for h, sup in (("bb", sup_b), ("ba", sup_a)):
                pin_tree(sup.pid, cpus[h])
            print(f"-- CPU model {model}: host B on CPUs {sorted(cpus['bb'])}, host A on {sorted(cpus['ba'])}",
                  file=sys.stderr, flush=True)
            report[model] = measure(cpus)
        report["load1_after"] = os.getloadavg()[0]

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bridge.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        if not args.only:
            summary(report)
            if plot(report, args.out / "bridge.png"):
                print(f"plot: {args.out / 'bridge.png'}")
        return 0
    finally:
        for sup in sups:
            sup.cleanup()
        lab.close()
        shutil.rmtree(folder, ignore_errors=True)


MODEL_TITLES = {"one_cpu_per_host": "one CPU per host (host B: CPU 1, host A: CPU 0)",
                "shared_cpus": "shared CPUs (both hosts on all CPUs)"}


def summary(report: dict[str, Any]) -> None:
    """The targets, per CPU model."""
    print(f"\nload average {report['load1_before']:.2f} before, {report['load1_after']:.2f} after, "
          f"{report['cpus']} CPUs")
    for model, title in MODEL_TITLES.items():
        if model not in report:
            continue
        r = report[model]
        print(f"{title}:")
        for key, what in (("frames_ratio_bridged_vs_raw_curve", "640x480x3 frames, bridged vs raw tcp+CURVE"),
                          ("small_ratio_bridged_vs_one_host", "small messages, bridged vs one host")):
            print(f"  [{'PASS' if r[key] >= report['target'] else 'MISS'}] {what} >= {report['target']}x: "
                  f"{r[key]:.3f}x")
        print(f"  [{'PASS' if r['unaccounted_losses'] == 0 else 'MISS'}] unaccounted losses: "
              f"{r['unaccounted_losses']}")


def plot(report: dict[str, Any], path: Path) -> bool:
    """Throughput bars (bridged against its baseline) and latency p50/p99, one row per CPU model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not importable, skipping the plot (bridge.json has every number)")
        return False
    models = [m for m in MODEL_TITLES if m in report]
    fig, axes = plt.subplots(len(models), 4, figsize=(12, 3.4 * len(models)), squeeze=False)
    for row, model in zip(axes, models):
        runs = report[model]["runs"]
        panels = (("frames/s", "frames_bridged", "frames_raw_curve", "raw tcp+CURVE", "msgs_per_s"),
                  ("small msg/s", "small_bridged", "small_one_host", "one host", "msgs_per_s"),
                  ("frame latency @30/s, ms", "latency_frames_bridged", "latency_frames_raw_curve",
                   "raw tcp+CURVE", "latency_ms"),
                  ("small latency @1000/s, ms", "latency_small_bridged", "latency_small_one_host", "one host",
                   "latency_ms"))
        for ax, (title, bridged, base, base_name, key) in zip(row, panels):
            if key == "msgs_per_s":
                values = [runs[base][key], runs[bridged][key]]
                bars = ax.bar([base_name, "bridged"], values, color=["#888888", "#2a7ab0"])
                ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7)
                ratio = values[1] / values[0] if values[0] else 0.0
                ax.set_xlabel(f"{ratio:.2f}x (target {report['target']}x)", fontsize=8,
                              color="green" if ratio >= report["target"] else "red")
            else:
                for i, (name, run) in enumerate(((base_name, runs[base]), ("bridged", runs[bridged]))):
                    p50, p99 = run[key]["p50"] or 0.0, run[key]["p99"] or 0.0
                    ax.bar([i - 0.2, i + 0.2], [p50, p99], width=0.4, color=["#2a7ab0", "#9ec9e2"])
                ax.set_xticks([0, 1], [base_name, "bridged"])
                ax.set_xlabel("p50 (dark), p99 (light)", fontsize=8)
            ax.set_title(f"{title}\n{MODEL_TITLES[model]}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("Two hosts (network namespaces) through two bridges, CURVE on the link", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def worker_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["pub", "sub"])
    p.add_argument("--kind", choices=["frame", "small"], required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--shm", action="store_true", help="subscribe in the local form (shared-memory arrays)")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--frontend", default="")
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--raw", action="store_true")
    p.add_argument("--public", default="")
    p.add_argument("--secret", default="")
    p.add_argument("--server", default="")
    a = p.parse_args(argv)
    (worker_pub if a.role == "pub" else worker_sub)(a)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
