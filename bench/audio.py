"""Audio benchmark: the vad, speech and batch paths against bare baselines, measured in one run.

1. VAD throughput: ``SpeechSegmenter`` (what the vad actor and batch mode
   run) fed 100 ms and 1 s chunks, vs a bare ``webrtcvad.Vad.is_speech``
   loop over the same 30 ms frames; frames/s and the ratio (target >= 0.8x).
2. Speech RTF: the ``speech`` actor (own process, under a supervisor, over
   the bus) vs bare faster-whisper in this process on the same segments (the
   demo recording's, cut by the segmenter), same model, threads, beam size;
   one segment in flight at a time, no temperature fallback on either side
   (the actor's default). RTF = seconds of work per second of
   audio; actor time is publish -> transcript received. Overhead target <= 10%.
3. End-of-speech -> transcript latency, p50/p99: source (real time) -> vad
   -> speech; from the wall time the source published the chunk holding the
   end of speech to the transcript's arrival (so it includes the vad's
   hangover), and the speech actor's own ``latency_ms`` (vad decision ->
   transcript). Measured with partial transcripts off and on (the vad's
   ``audio.partial`` every 1 s of speech, ``speech.partial`` out); with them
   on, also speech start (first voiced frame, in real time) -> first
   ``speech.partial`` of the segment (target p50 <= 1.5 s).
4. Batch memory: peak RSS (``wait4`` ru_maxrss) of ``sensorium batch audio``
   on a 1-minute and an N-minute (default 30) input made by looping the demo
   recording, written streaming to a temp folder (never committed). Target
   ratio <= 1.1.

    python bench/audio.py [--quick] [--long-min N] [--out DIR] [--skip vad,rtf,latency,batch]

Writes ``DIR/audio.json`` (default ``bench/out``) and ``DIR/audio.png``.
Exit code 0 whether or not a target is met; non-zero on errors.
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
import statistics
import subprocess
import tempfile
import time
import wave
from typing import Any, Callable

import numpy as np
import zmq

from actors.lib.audio import DEMO_RECORDING
from actors.lib.audio.segmenter import FRAME_SAMPLES, SpeechSegmenter
from bus import control
from bus.bodies.audio import SpeechSegment
from bus.pubsub import Publisher, Subscriber

THREADS = 2
BEAM = 5
TARGETS = {"vad_ratio": 0.8, "speech_overhead": 0.10, "rss_ratio": 1.1}


def demo_pcm() -> np.ndarray:
    with wave.open(str(DEMO_RECORDING), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SENSORIUM")}
    e["PYTHONPATH"] = str(ROOT)
    return e


# -- 1. VAD ----------------------------------------------------------------


def bench_vad(pcm: np.ndarray, repeats: int) -> dict[str, Any]:
    import webrtcvad

    raw = pcm[: pcm.size // FRAME_SAMPLES * FRAME_SAMPLES].tobytes()
    n = len(raw) // (2 * FRAME_SAMPLES)
    # CPU time of this thread, not wall time: a run lasts ~30 ms, and on a shared machine another process
    # taking the core for a few of them would count against whichever path it happened to hit.
    clock = time.thread_time
    step = 2 * FRAME_SAMPLES

    def bare() -> float:
        vad = webrtcvad.Vad(3)
        t = clock()
        for k in range(0, n * step, step):
            vad.is_speech(raw[k:k + step], 16_000)
        return n / (clock() - t)

    def ours(chunk: int) -> Callable[[], float]:
        chunks = [pcm[i:i + chunk] for i in range(0, pcm.size, chunk)]

        def run() -> float:
            seg = SpeechSegmenter()
            t = clock()
            for c in chunks:
                seg.feed(c)
            seg.flush()
            return seg.stats.frames / (clock() - t)

        return run

    runs: dict[str, list[float]] = {"bare": [], "segmenter_100ms": [], "segmenter_1s": []}
    paths = {"bare": bare, "segmenter_100ms": ours(1600), "segmenter_1s": ours(16_000)}
    for _ in range(repeats):  # interleaved, so drift on the machine hits every path alike
        for name, fn in paths.items():
            runs[name].append(fn())
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"frames": n, "audio_s": n * 0.03, "frames_per_s": med, "runs": runs,
            "ratio_100ms": med["segmenter_100ms"] / med["bare"], "ratio_1s": med["segmenter_1s"] / med["bare"]}


# -- a supervisor on a private bus -------------------------------------------


class Pipeline:
    def __init__(self, actors_toml: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sba", dir="/tmp"))
        self.folder.chmod(0o700)
        cfg = self.folder / "s.toml"
        cfg.write_text(f'replace_default_actors = true\n[bus]\nruntime_dir = "{self.folder}"\n{actors_toml}\n')
        self.frontend, self.backend = f"ipc://{self.folder}/pub.sock", f"ipc://{self.folder}/sub.sock"
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "run", "-c", str(cfg)], cwd=ROOT,
                                     env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_running(self, names: list[str], timeout_s: float = 180.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"supervisor exited {self.proc.returncode}")
            try:
                status = control.request(f"ipc://{self.folder}/control.sock", "status", timeout_s=2)
                if all(a["state"] == "running" for a in status["actors"] if a["name"] in names):
                    return
            except control.ControlError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"actors {names} not running after {timeout_s} s")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


SPEECH_TOML = f"""
[actors.speech]
start_timeout_s = 180.0
liveness_timeout_s = 30.0
settings = {{ threads = {THREADS}, beam_size = {BEAM}, queue_size = 64 }}
"""


# -- 2. speech RTF -------------------------------------------------------------


def demo_segments(pcm: np.ndarray) -> list[SpeechSegment]:
    seg = SpeechSegmenter()
    events = seg.feed(pcm) + seg.flush()
    return [e for e in events if isinstance(e, SpeechSegment)]


def bench_rtf(segments: list[SpeechSegment], rounds: int) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    from actors.speech.transcriber import default_model_path

    model = WhisperModel(default_model_path(), device="cpu", compute_type="int8", cpu_threads=THREADS)

    def bare_once(s: SpeechSegment) -> float:
        t = time.perf_counter()
        out, _info = model.transcribe(s.pcm.astype(np.float32) / 32768.0, beam_size=BEAM, language="en",
                                      condition_on_previous_text=False, temperature=0.0)
        list(out)
        return time.perf_counter() - t

    pipe = Pipeline(SPEECH_TOML)
    try:
        pipe.wait_running(["speech"])
        ctx = zmq.Context.instance()
        sub = Subscriber(ctx, pipe.backend, ["speech.transcript"])
        sub.wait_subscribed(pipe.frontend, 30)
        pub = Publisher(ctx, pipe.frontend, "bench")
        pub.wait_for_subscriber(SpeechSegment.TOPIC, 30)

        def actor_once(s: SpeechSegment) -> float:
            t = time.perf_counter()
            pub.publish(SpeechSegment.TOPIC, s.to_body())
            while True:
                msg = sub.recv(timeout_ms=120_000)
                if msg is None:
                    raise RuntimeError("no transcript from the speech actor within 120 s")
                if msg.body["segment_id"] == s.segment_id:
                    return time.perf_counter() - t

        bare_once(segments[0])  # warm-up, untimed
        actor_once(segments[0])
        bare_s: list[float] = []
        actor_s: list[float] = []
        # Interleaved segment by segment, the order swapped every round: load from elsewhere on a
        # shared machine then falls on both sides alike instead of on whichever block it hit.
        for r in range(rounds):
            bare_t = actor_t = 0.0
            for s in segments:
                if r % 2 == 0:
                    bare_t += bare_once(s)
                    actor_t += actor_once(s)
                else:
                    actor_t += actor_once(s)
                    bare_t += bare_once(s)
            bare_s.append(bare_t)
            actor_s.append(actor_t)
        pub.close()
        sub.close()
    finally:
        pipe.close()
    audio_s = sum(s.pcm.size for s in segments) / 16_000
    bare_rtf, actor_rtf = statistics.median(bare_s) / audio_s, statistics.median(actor_s) / audio_s
    return {"segments": len(segments), "audio_s": audio_s, "rounds": rounds, "bare_rtf": bare_rtf,
            "actor_rtf": actor_rtf, "overhead": actor_rtf / bare_rtf - 1, "bare_s": bare_s, "actor_s": actor_s}


# -- 3. latency ------------------------------------------------------------------


def bench_latency(passes: int, partials: bool = False) -> dict[str, Any]:
    n_sentences = len(json.loads(DEMO_RECORDING.with_suffix(".json").read_text())["sentences"])
    want = n_sentences * passes
    pipe = Pipeline(SPEECH_TOML.replace("queue_size = 64", f"queue_size = 64, partials = {str(partials).lower()}")
                    + f"""
[actors.vad]
after = ["speech"]
settings = {{ partial_every_s = {1.0 if partials else 0.0} }}
[actors."audio_source@bench"]
after = ["vad"]
settings = {{ loop = {str(passes > 1).lower()}, speed = 1.0 }}
""")
    try:
        ctx = zmq.Context.instance()
        sub = Subscriber(ctx, pipe.backend, ["speech.transcript", "speech.partial", "audio.chunk", "audio.vad"])
        sub.wait_subscribed(pipe.frontend, 60)
        pipe.wait_running(["speech", "vad", "audio_source@bench"])
        chunks: dict[str, list[tuple[float, int]]] = {}
        transcripts = []
        starts: dict[int, dict[str, Any]] = {}
        first_partial: dict[int, tuple[int, dict[str, Any]]] = {}
        end = time.monotonic() + passes * 30 * 3 + 60
        while len(transcripts) < want and time.monotonic() < end:
            msg = sub.recv(timeout_ms=1000)
            if msg is None:
                continue
            if msg.topic == "audio.chunk":
                chunks.setdefault(msg.body["stream"], []).append((msg.body["t_start"], msg.header.ts))
            elif msg.topic == "audio.vad":
                if msg.body["state"] == "speech_start":
                    starts[msg.body["segment_id"]] = msg.body
            elif msg.topic == "speech.partial":
                first_partial.setdefault(msg.body["segment_id"], (msg.header.ts, msg.body))
            else:
                transcripts.append((msg.header.ts, msg.body))
        sub.close()
    finally:
        pipe.close()
    from_audio, from_vad = [], []
    for ts, body in transcripts:
        stream = body["stream"].split("/", 1)[1]
        # The chunk holding the end of speech was published when the stream clock reached its first
        # sample; the end of speech "happened" (t_end - t0) later in real time.
        holding = [(t0, c_ts) for t0, c_ts in chunks.get(stream, []) if t0 <= body["t_end"]]
        if holding:
            t0, c_ts = holding[-1]
            from_audio.append((ts - c_ts) / 1e6 - (body["t_end"] - t0) * 1000.0)
        from_vad.append(body["latency_ms"])

    def wall_of(stream: str, t: float) -> float | None:
        """Wall time (ns) at which stream time ``t`` was played: its chunk's publication plus the offset."""
        holding = [(t0, c_ts) for t0, c_ts in chunks.get(stream, []) if t0 <= t]
        return holding[-1][1] + (t - holding[-1][0]) * 1e9 if holding else None

    first_partial_ms, segments_with_partials = [], 0
    for seg_id, start in starts.items():
        if seg_id not in first_partial:
            continue
        segments_with_partials += 1
        began = wall_of(start["stream"].split("/", 1)[1], start["t"])
        if began is not None:
            first_partial_ms.append((first_partial[seg_id][0] - began) / 1e6)

    def pct(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)), "n": len(values),
                "max": float(max(values))}

    return {"partials": partials, "transcripts": len(transcripts), "end_of_speech_to_transcript_ms": pct(from_audio),
            "vad_decision_to_transcript_ms": pct(from_vad), "speech_start_to_first_partial_ms": pct(first_partial_ms),
            "segments_with_partials": segments_with_partials}


# -- 4. batch memory ----------------------------------------------------------------


def write_looped(path: Path, pcm: np.ndarray, minutes: float) -> None:
    """Loop the demo into a WAV of ``minutes``, one loop at a time (never the whole input in memory)."""
    total = int(minutes * 60 * 16_000)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        written = 0
        while written < total:
            part = pcm[: total - written]
            w.writeframes(part.astype("<i2").tobytes())
            written += part.size


def peak_rss_of_batch(path: Path, out: Path) -> dict[str, Any]:
    t = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "batch", "audio", str(path), "--out",
                             str(out), "--no-progress", "--threads", str(THREADS), "--beam-size", str(BEAM)],
                            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"batch on {path} exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
    record = json.loads(out.read_text().splitlines()[-1])
    return {"peak_rss_bytes": usage.ru_maxrss * 1024, "wall_s": time.monotonic() - t,
            "duration_s": record["duration_s"], "segments": record["vad"]["segments"], "rtf": record["rtf"]}


def bench_batch(pcm: np.ndarray, long_min: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="sbb", dir="/tmp"))
    try:
        runs = {}
        for label, minutes in (("short", 1.0), ("long", long_min)):
            path = folder / f"{label}.wav"
            write_looped(path, pcm, minutes)
            print(f"  batch on {minutes:g} min ...", file=sys.stderr, flush=True)
            runs[label] = peak_rss_of_batch(path, folder / f"{label}.jsonl")
            runs[label]["minutes"] = minutes
            path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    runs["rss_ratio"] = runs["long"]["peak_rss_bytes"] / runs["short"]["peak_rss_bytes"]
    return runs


# -- report ----------------------------------------------------------------------


def plot(results: dict[str, Any], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not importable: no plot"
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    if "vad" in results:
        f = results["vad"]["frames_per_s"]
        axes[0].bar(["bare\nwebrtcvad", "segmenter\n100 ms", "segmenter\n1 s"],
                    [f["bare"] / 1e3, f["segmenter_100ms"] / 1e3, f["segmenter_1s"] / 1e3],
                    color=["grey", "tab:blue", "tab:blue"])
        axes[0].set_title("VAD throughput (k frames/s)")
    if "rtf" in results:
        r = results["rtf"]
        axes[1].bar(["bare\nfaster-whisper", "speech actor"], [r["bare_rtf"], r["actor_rtf"]], color=["grey", "tab:blue"])
        axes[1].set_title(f"Speech RTF (overhead {r['overhead'] * 100:+.1f}%)")
    if results.get("latency", {}).get("end_of_speech_to_transcript_ms"):
        lat = results["latency"]
        a, v = lat["end_of_speech_to_transcript_ms"], lat["vad_decision_to_transcript_ms"]
        x = np.arange(2)
        axes[2].bar(x - 0.2, [a["p50"], a["p99"]], 0.4, label="end of speech -> transcript")
        axes[2].bar(x + 0.2, [v["p50"], v["p99"]], 0.4, label="vad decision -> transcript")
        axes[2].set_xticks(x, ["p50", "p99"])
        axes[2].legend(fontsize=7)
        axes[2].set_title("Latency (ms)")
    if "batch" in results:
        b = results["batch"]
        axes[3].bar([f"{b['short']['minutes']:g} min", f"{b['long']['minutes']:g} min"],
                    [b["short"]["peak_rss_bytes"] / 2**20, b["long"]["peak_rss_bytes"] / 2**20], color="tab:blue")
        axes[3].set_title(f"Batch peak RSS MiB (ratio {b['rss_ratio']:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/audio.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, one latency pass, 5-minute long input")
    parser.add_argument("--long-min", type=float, help="minutes of the long batch input (default 30; quick: 5)")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: vad,rtf,latency,batch")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    long_min = args.long_min or (5.0 if args.quick else 30.0)
    pcm = demo_pcm()
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                           "platform": platform.platform()}, "targets": TARGETS,
                               "settings": {"threads": THREADS, "beam_size": BEAM, "model": "tiny.en int8 cpu"}}
    if "vad" not in skip:
        print("VAD throughput ...", file=sys.stderr, flush=True)
        results["vad"] = bench_vad(np.tile(pcm, 10), 5 if args.quick else 15)
    if "rtf" not in skip:
        print("speech RTF: actor vs bare faster-whisper ...", file=sys.stderr, flush=True)
        results["rtf"] = bench_rtf(demo_segments(pcm), 2 if args.quick else 4)
    if "latency" not in skip:
        print("latency: real-time source -> vad -> speech ...", file=sys.stderr, flush=True)
        results["latency"] = bench_latency(1 if args.quick else 2, partials=False)
        print("latency with partial transcripts ...", file=sys.stderr, flush=True)
        results["latency_partials"] = bench_latency(1 if args.quick else 2, partials=True)
    if "batch" not in skip:
        print("batch peak RSS ...", file=sys.stderr, flush=True)
        results["batch"] = bench_batch(pcm, long_min)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audio.json").write_text(json.dumps(results, indent=2))
    note = plot(results, args.out / "audio.png")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    print("\n== audio bench ==")
    if "vad" in results:
        v = results["vad"]
        print(f"VAD frames/s: bare {v['frames_per_s']['bare']:,.0f}; segmenter 100 ms chunks "
              f"{v['frames_per_s']['segmenter_100ms']:,.0f} ({v['ratio_100ms']:.2f}x), 1 s chunks "
              f"{v['frames_per_s']['segmenter_1s']:,.0f} ({v['ratio_1s']:.2f}x)  target >= 0.8x: "
              f"100 ms {verdict(v['ratio_100ms'] >= 0.8)}, 1 s {verdict(v['ratio_1s'] >= 0.8)}")
    if "rtf" in results:
        r = results["rtf"]
        print(f"speech RTF: bare {r['bare_rtf']:.3f}, actor {r['actor_rtf']:.3f}, overhead {r['overhead'] * 100:+.1f}% "
              f"(target <= 10%: {verdict(r['overhead'] <= 0.10)})")
    if "latency" in results:
        lat = results["latency"]
        a, v = lat["end_of_speech_to_transcript_ms"], lat["vad_decision_to_transcript_ms"]
        if a:
            print(f"latency end of speech -> transcript: p50 {a['p50']:.0f} ms, p99 {a['p99']:.0f} ms (n={a['n']}); "
                  f"vad decision -> transcript: p50 {v['p50']:.0f} ms, p99 {v['p99']:.0f} ms")
        on = results.get("latency_partials", {})
        a_on, f_on = on.get("end_of_speech_to_transcript_ms"), on.get("speech_start_to_first_partial_ms")
        if a and a_on:
            print(f"with partials: end of speech -> transcript p50 {a_on['p50']:.0f} ms, p99 {a_on['p99']:.0f} ms "
                  f"({a_on['p50'] / a['p50']:.2f}x of partials off); speech start -> first partial "
                  + (f"p50 {f_on['p50']:.0f} ms, p99 {f_on['p99']:.0f} ms (target p50 <= 1500 ms: "
                     f"{verdict(f_on['p50'] <= 1500)}); " if f_on else "none; ")
                  + f"{on['segments_with_partials']}/{on['transcripts']} segments had partials")
    if "batch" in results:
        b = results["batch"]
        print(f"batch peak RSS: {b['short']['minutes']:g} min {b['short']['peak_rss_bytes'] / 2**20:.0f} MiB, "
              f"{b['long']['minutes']:g} min {b['long']['peak_rss_bytes'] / 2**20:.0f} MiB, ratio {b['rss_ratio']:.3f} "
              f"(target <= 1.1: {verdict(b['rss_ratio'] <= 1.1)}); long run RTF {b['long']['rtf']}")
    print(f"wrote {args.out / 'audio.json'}; plot: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
