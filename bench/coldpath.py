"""The cold frame path: what one paced 640x480x3 frame costs its publisher and its reader in CPython.

    python bench/coldpath.py [--frames 300] [--out bench/out]

A producer at 30 frames/s and its readers sleep between frames while other
processes take the caches; each frame then runs its Python cold, where a
numpy call, a ``msgpack.unpackb`` with limits or a raised exception costs
several microseconds instead of a fraction of one. A warm loop hides this,
and on two CPUs a paced run is too noisy to see a 10 us change. This bench
measures it in one process. Before each timed stage it sleeps 3 ms and
copies 32 MiB (64 MiB touched, twice the last-level cache of the 2-CPU VM
it was written on; a CPU with a bigger one keeps more). It times,
interleaved frame by frame so that drift hits both sides alike:

- **bare**, the transport and msgpack floor: a pyzmq PUB -> SUB pair over
  ipc sending three local-form frames, pre-encoded once, with three
  ``send`` calls. The reader makes three ``recv`` calls, unpacks the body
  with msgpack (the shared-memory record too), makes a numpy view of the
  slot and checks its generation. It skips what a conforming user must
  also do, so not all of the ratio is overhead. Per message it encodes no
  header (seq, ts) and packs no body. It writes no generation, and it
  decodes and checks no header. It keeps no seq accounting.
- **sensorium**: ``Publisher.loan`` and ``publish`` of the frame; writing
  the frame into the loan is not timed. ``Subscriber.recv`` and
  ``still_valid``, a view reader on a direct link (bus/direct.py).

The message is already queued when a receive is timed, so no wake-up is
counted on either side. The script prints p25/p50/p75 per stage, cold and
warm (the same calls in a loop), and the ratio of Sensorium to bare. It
writes OUT/coldpath.json and OUT/coldpath.png.
"""

from __future__ import annotations

from _bootstrap import HERE, headless_pyplot  # first: the repository root on sys.path (bench/_bootstrap.py)

import argparse
import json
import mmap
import os
import struct
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np
import zmq

SHAPE = (480, 640, 3)
TOPIC = "bench.frame"
FLUSH_BYTES = 32 << 20
PAUSE_S = 0.003
WAIT_MS = 5_000
_GEN = struct.Struct("<Q")
"""A slot's generation, first in its header (docs/wire.md, section 12)."""


class Flusher:
    """Takes the caches from whatever runs next: a pause, as a paced process sleeps, and a 32 MiB copy."""

    def __init__(self) -> None:
        self.src = np.ones(FLUSH_BYTES, np.uint8)
        self.dst = np.empty_like(self.src)

    def __call__(self) -> None:
        time.sleep(PAUSE_S)
        np.copyto(self.dst, self.src)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter_ns()
    out = fn()
    return (time.perf_counter_ns() - t0) / 1e3, out


class SensoriumSide:
    """A loaning publisher and a view subscriber linked directly (no broker), as the camera and a reader are."""

    def __init__(self, ctx: zmq.Context, folder: Path) -> None:
        from bus.pubsub import Publisher, Subscriber

        links = folder / "links"
        links.mkdir(mode=0o700)
        self.pub = Publisher(ctx, f"ipc://{folder}/none.sock", "bench@cold", shm_slots=16, direct_dir=links)
        self.sub = Subscriber(ctx, None, [TOPIC], shm=True, shm_views=True, direct_dir=links)
        self.sub.subscribe("bench.cold.sync")
        end = time.monotonic() + 30
        while not self.pub.has_subscriber("bench.cold.sync"):
            if time.monotonic() > end:
                raise RuntimeError("the direct subscriber never reached the publisher")
            self.sub.recv(10)
            self.pub.drain_subscriptions()
        self.body: dict[str, Any] = {}
        self.i = 0

    def loan(self) -> np.ndarray:
        return self.pub.loan(TOPIC, SHAPE)

    def publish(self, frame: np.ndarray) -> None:
        self.body["frame"] = frame
        self.body["i"] = self.i
        self.pub.publish(TOPIC, self.body)

    def receive(self) -> int:
        msg = self.sub.recv(WAIT_MS)
        if msg is None:
            raise RuntimeError("sensorium: the frame did not arrive")
        value = int(msg.body["frame"][0, 0, 0])  # read, then checked: the order a view reader keeps
        if not self.sub.still_valid(msg):
            raise RuntimeError("sensorium: the frame was overwritten while read")
        return value

    def queued(self) -> bool:
        return bool(self.sub.sock.poll(WAIT_MS))

    def close(self) -> None:
        self.pub.close()
        self.sub.close()


class BareSide:
    """pyzmq and msgpack alone, carrying local-form frames that refer to a slot of a segment of its own, which
    the reader maps itself (the layout of docs/wire.md section 12)."""

    def __init__(self, ctx: zmq.Context, folder: Path, image: np.ndarray) -> None:
        from bus.envelope import Encoder
        from bus.shm import HEADER_BYTES, SLOT_HEADER_BYTES, ShmRing

        self.ring = ShmRing(f"sensorium-{os.getpid()}-c01d-0", 2, image.nbytes)
        self.mm: mmap.mmap | None = None
        self.pub = ctx.socket(zmq.PUB)
        self.sub = ctx.socket(zmq.SUB)
        try:
            self.frames = Encoder("bench@bare").encode_local(
                TOPIC, 0, time.time_ns(), {"frame": image, "i": 0}, None,
                lambda a: (self.ring.name, *self.ring.put(a.reshape(-1).view(np.uint8))), 1)
            with open(self.ring.path, "rb") as f:
                self.mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            self.buf = np.frombuffer(self.mm, np.uint8)
            self.stride = SLOT_HEADER_BYTES + self.ring.slot_bytes
            self.first = HEADER_BYTES
            self.slot_header = SLOT_HEADER_BYTES
            endpoint = f"ipc://{folder}/bare.sock"
            self.pub.bind(endpoint)
            self.sub.setsockopt(zmq.SUBSCRIBE, b"")
            self.sub.connect(endpoint)
            end = time.monotonic() + 30
            while not self.sub.poll(10):  # a slow joiner: send until one arrives
                if time.monotonic() > end:
                    raise RuntimeError("the bare subscriber never connected")
                self.publish()
            while self.sub.poll(50):
                self.sub.recv_multipart()
        except BaseException:
            self.close()
            raise

    def publish(self) -> None:
        send, frames = self.pub.send, self.frames
        send(frames[0], zmq.SNDMORE)
        send(frames[1], zmq.SNDMORE)
        send(frames[2])

    def receive(self) -> int:
        recv = self.sub.recv
        recv()
        recv(copy=False)
        body = msgpack.unpackb(recv(copy=False).buffer, ext_hook=lambda code, data: msgpack.unpackb(data))
        dtype, shape, _segment, slot, gen = body["frame"]
        at = self.first + slot * self.stride
        value = int(np.ndarray(shape, dtype, self.buf, at + self.slot_header)[0, 0, 0])
        if _GEN.unpack_from(self.mm, at)[0] != gen:
            raise RuntimeError("bare: the slot was overwritten")
        return value

    def queued(self) -> bool:
        return bool(self.sub.poll(WAIT_MS))

    def close(self) -> None:
        self.pub.close(0)
        self.sub.close(0)
        self.buf = None
        if self.mm is not None:
            self.mm.close()
        self.ring.close()


def _stats(values: list[float]) -> dict[str, float]:
    q = np.percentile(values, [25, 50, 75])
    return {"p25": float(q[0]), "p50": float(q[1]), "p75": float(q[2]), "n": len(values)}


def measure(frames: int, warm_n: int) -> dict[str, Any]:
    ctx = zmq.Context()
    folder = Path(tempfile.mkdtemp(prefix="cold", dir="/tmp"))  # short: unix socket paths stay under ~100 bytes
    flush = Flusher()
    image = np.random.default_rng(0).integers(0, 255, SHAPE, dtype=np.uint8)
    sens = bare = None
    try:
        sens = SensoriumSide(ctx, folder)
        bare = BareSide(ctx, folder, image)
        names = ("send", "receive")
        cold: dict[str, dict[str, list[float]]] = {"bare": {n: [] for n in names},
                                                   "sensorium": {n: [] for n in ("loan", *names)}}
        for i in range(frames):
            flush()
            t, frame = _timed(sens.loan)
            cold["sensorium"]["loan"].append(t)
            frame.reshape(-1)[:8] = i % 256  # the producer's writing is its own, not timed
            flush()
            t, _ = _timed(lambda: sens.publish(frame))
            cold["sensorium"]["send"].append(t)
            flush()
            t, _ = _timed(bare.publish)
            cold["bare"]["send"].append(t)
            for side, obj in (("sensorium", sens), ("bare", bare)):
                if not obj.queued():
                    raise RuntimeError(f"{side}: frame {i} never arrived")
                flush()
                t, _ = _timed(obj.receive)
                cold[side]["receive"].append(t)
            if (i + 1) % max(1, frames // 10) == 0:
                print(f"  cold: {i + 1}/{frames} frames", flush=True)
        warm: dict[str, dict[str, float]] = {"bare": {}, "sensorium": {}}
        for side, obj in (("sensorium", sens), ("bare", bare)):
            t_loan = t_send = t_recv = 0.0
            for _ in range(warm_n):
                if obj is sens:
                    t, frame = _timed(sens.loan)
                    t_loan += t
                    t, _ = _timed(lambda: sens.publish(frame))
                else:
                    t, _ = _timed(bare.publish)
                t_send += t
                if not obj.queued():
                    raise RuntimeError(f"{side}: a warm frame never arrived")
                t, _ = _timed(obj.receive)
                t_recv += t
            warm[side] = {"send": t_send / warm_n, "receive": t_recv / warm_n}
            if obj is sens:
                warm[side]["loan"] = t_loan / warm_n
    finally:
        if bare is not None:
            bare.close()
        if sens is not None:
            sens.close()
        ctx.destroy(linger=0)
        shutil.rmtree(folder, ignore_errors=True)
    out: dict[str, Any] = {"cold": {s: {n: _stats(v) for n, v in d.items()} for s, d in cold.items()}, "warm": warm}
    out["ratio_p50"] = {n: out["cold"]["sensorium"][n]["p50"] / out["cold"]["bare"][n]["p50"] for n in names}
    return out


def plot(result: dict[str, Any], path: Path) -> bool:
    plt = headless_pyplot("coldpath.json")
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(8, 4))
    stages = ("loan", "send", "receive")
    x = np.arange(len(stages))
    for k, side in enumerate(("bare", "sensorium")):
        at = [i for i, n in enumerate(stages) if n in result["cold"][side]]
        st = [result["cold"][side][stages[i]] for i in at]
        p50 = [s["p50"] for s in st]
        err = [[s["p50"] - s["p25"] for s in st], [s["p75"] - s["p50"] for s in st]]
        ax.bar(x[at] + (k - 0.5) * 0.38, p50, 0.38, yerr=err, capsize=4, label=f"{side}, cold (p25-p75)")
        warm = [result["warm"][side][stages[i]] for i in at]
        ax.scatter(x[at] + (k - 0.5) * 0.38, warm, color="black", marker="_", s=300, zorder=3,
                   label="warm mean" if k else None)
    ax.set_xticks(x, ["loan (sensorium only)", "send: 3 sends / publish", "receive: 3 recvs + unpack / recv"])
    ax.set_ylabel("microseconds per 640x480x3 frame")
    ax.set_title("One frame's Python, caches flushed before each stage")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="timed cold frames (each side, interleaved)")
    ap.add_argument("--warm", type=int, default=2000, help="frames of the warm loop, for scale")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="folder for coldpath.json and coldpath.png")
    args = ap.parse_args()
    print(f"cold frame path: {args.frames} frames per side, caches flushed ({FLUSH_BYTES >> 20} MiB copied after "
          f"{PAUSE_S * 1e3:g} ms asleep) before each timed stage; load average {os.getloadavg()}")
    started = time.monotonic()
    result = measure(args.frames, args.warm)
    result["loadavg_after"] = os.getloadavg()
    result["elapsed_s"] = time.monotonic() - started
    lo = result["cold"]["sensorium"]["loan"]
    print(f"loan     cold p50 (p25-p75): sensorium {lo['p50']:6.1f} ({lo['p25']:.1f}-{lo['p75']:.1f}) us, before the "
          f"frame is written (bare has no loan: it sends from its own buffer); warm "
          f"{result['warm']['sensorium']['loan']:.2f} us")
    for stage, what in (("send", "3 sends / publish"), ("receive", "3 recvs + unpack / recv + still_valid")):
        b, s = result["cold"]["bare"][stage], result["cold"]["sensorium"][stage]
        print(f"{stage:8s} cold p50 (p25-p75), {what}: bare {b['p50']:.1f} ({b['p25']:.1f}-{b['p75']:.1f}) us, "
              f"sensorium {s['p50']:.1f} ({s['p25']:.1f}-{s['p75']:.1f}) us: {result['ratio_p50'][stage]:.2f}x; "
              f"warm bare {result['warm']['bare'][stage]:.2f}, sensorium {result['warm']['sensorium'][stage]:.2f} us")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coldpath.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out / 'coldpath.json'}")
    if plot(result, args.out / "coldpath.png"):
        print(f"wrote {args.out / 'coldpath.png'}")
    print(f"done in {result['elapsed_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
