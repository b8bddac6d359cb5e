"""``python -m actors.audio_events.train``: train the shipped sound-event head on generated audio.

Deterministic data (fixed seeds): per class ``--clips`` clips of 2 s rendered
by ``actors.audio_events.synth`` (speech: sentences below spoken by espeak-ng with
varied voices, speeds and pitches; never the demo recording's sentences,
which the tests hold out), 30% of them with a start or end cut to digital
silence (``cut_edge``), each framed into YAMNet patches (0.96 s every
0.48 s: three per clip). A validation set comes from other seeds. Keras
trains the head (``actors.audio_events.model.build_head``) with Adam, one progress
line per epoch, keeps the epoch with the best validation accuracy, then
scores a held-out mix (``synth.make_mix`` with the demo recording's speech)
at event level. Writes, atomically and sealed with sha256 and metadata
(``config.storage.GuardedFile``): ``models/events/head-v1.sealed``, and the
training curve ``models/events/head-v1.curve.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from actors.audio_events import synth
from actors.audio_events.features import PatchFramer
from actors.lib.audio import FIXTURES
from actors.lib.progress import progress as progress_bar
from config.paths import REPO_ROOT
from config.storage import GuardedFile, write_atomic

SENTENCES = [
    "Could you pass me the salt and pepper please.",
    "The weather forecast says it will rain tomorrow afternoon.",
    "I think we left the keys in the car.",
    "How many people are coming to the party on Saturday.",
    "Remember to water the plants while I am away.",
    "The library closes early on public holidays.",
    "Our flight was delayed by almost three hours.",
    "Put the red box on the top shelf.",
    "He plays the guitar in a small jazz band.",
    "We need to finish the report before Friday.",
    "The children built a sandcastle on the beach.",
    "Turn left at the second traffic light.",
    "This soup tastes much better with fresh herbs.",
    "Can you call me back in about ten minutes.",
    "The museum has a new exhibition about ancient Egypt.",
    "My sister is learning to speak Japanese.",
    "Please send the invoice to the accounting department.",
    "The cat is sleeping on the warm windowsill.",
    "It takes twenty minutes to walk to the station.",
    "Let us meet in front of the cinema at seven.",
    "The printer on the second floor is out of paper.",
    "I would like a cup of tea with a little milk.",
    "The garden looks beautiful in the spring.",
    "Nobody expected the game to end in a draw.",
    "She painted the kitchen a bright shade of yellow.",
    "The new software update fixed most of the bugs.",
    "Do not forget to bring your passport.",
    "The bakery on the corner sells the best croissants.",
    "We watched the sunset from the top of the hill.",
    "Hello, how are you doing today, my friend.",
    "Yes, I agree with everything you just said.",
    "Thank you very much for your help yesterday.",
]
VOICES = ["en-us", "en", "en-us+f2", "en+f3", "en-us+m3", "en+m7", "en-gb-x-rp", "en+f4", "en-us+m1", "en+klatt"]
DEFAULT_OUT = REPO_ROOT / "models" / "events" / "head-v1.sealed"
CLIP_S = 2.0


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """16 kHz int16 speech from espeak-ng (decoded and resampled by actors.lib.audio.decode)."""
    from actors.lib.audio.decode import decode_file  # noqa: PLC0415

    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        try:
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", tmp.name, text],
                           check=True, capture_output=True, timeout=60)
        except FileNotFoundError:
            raise SystemExit("train: espeak-ng is not installed (apt-get install espeak-ng): it speaks the "
                             "training speech") from None
        return np.concatenate(list(decode_file(tmp.name, 16_000)))


def speech_pool(rng: np.random.Generator, n_utterances: int) -> list[np.ndarray]:
    pool = []
    for i in range(n_utterances):
        text = SENTENCES[i % len(SENTENCES)]
        pool.append(espeak(text, VOICES[int(rng.integers(len(VOICES)))], int(rng.integers(120, 200)),
                           int(rng.integers(20, 80))))
    return pool


def speech_clip(rng: np.random.Generator, pool: list[np.ndarray], n: int) -> np.ndarray:
    """A random stretch of ``n`` samples of one utterance (utterances shorter than n are looped with a pause)."""
    utt = pool[int(rng.integers(len(pool)))].astype(np.float32)
    while utt.size < n + 1:
        utt = np.concatenate([utt, np.zeros(int(0.2 * synth.RATE_HZ), np.float32), utt])
    start = int(rng.integers(0, utt.size - n))
    return utt[start:start + n]


def cut_edge(rng: np.random.Generator, pcm: np.ndarray, p: float = 0.3) -> np.ndarray:
    """With probability ``p``, digital silence over a random 0.05-0.6 s at the start or end: recordings that
    start or stop abruptly, and the zero padding of a stream's last patch (without it, noise cut to silence
    looked like an event to the first head)."""
    if rng.random() >= p:
        return pcm
    k = int(rng.uniform(0.05, 0.6) * synth.RATE_HZ)
    pcm = pcm.copy()
    if rng.random() < 0.5:
        pcm[:k] = 0
    else:
        pcm[-k:] = 0
    return pcm


def make_set(seed: int, clips: int, pool: list[np.ndarray], progress_desc: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(CLIP_S * synth.RATE_HZ)
    xs, ys = [], []
    for _ in progress_bar(range(clips), desc=progress_desc, unit="clip/class", file=sys.stderr, mininterval=1.0):
        for y, label in enumerate(synth.CLASSES):
            source = speech_clip(rng, pool, n) if label == "speech" else None
            pcm = cut_edge(rng, synth.render(rng, label, n, source))
            patches = PatchFramer().feed(pcm).data
            xs.append(patches)
            ys.extend([y] * len(patches))
    return np.concatenate(xs).astype(np.float32), np.asarray(ys, np.int32)


def plot_curve(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history["loss"]) + 1)
    a.plot(epochs, history["loss"], label="train")
    a.plot(epochs, history["val_loss"], label="validation")
    a.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    b.plot(epochs, history["accuracy"], label="train")
    b.plot(epochs, history["val_accuracy"], label="validation")
    b.set(xlabel="epoch", ylabel="patch accuracy", title="accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("audio events head (generated data)")
    fig.tight_layout()
    import io  # noqa: PLC0415

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def demo_speech() -> list[np.ndarray]:
    """The demo recording's sentences (espeak-ng, committed): held-out speech for the mix."""
    import wave  # noqa: PLC0415

    folder = FIXTURES
    meta = json.loads((folder / "demo.json").read_text())
    with wave.open(str(folder / "demo.wav"), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return [pcm[int(a * synth.RATE_HZ):int(b * synth.RATE_HZ)] for a, b in meta["spans_s"]]


def heldout_mix(seed: int = 7_000) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The held-out recording the tests score: 5 events per class (speech: the demo's sentences)."""
    return synth.make_mix(np.random.default_rng(seed), demo_speech(), per_class=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.audio_events.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--clips", type=int, default=320, help="training clips of 2 s per class")
    parser.add_argument("--val-clips", type=int, default=60, help="validation clips per class")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from actors.audio_events.tfruntime import import_tensorflow  # noqa: PLC0415

    tf = import_tensorflow(args.threads, 1)
    from actors.audio_events.detector import EventDetector, TrackerParams  # noqa: PLC0415
    from actors.audio_events.model import HEAD_ARCH, HEAD_FORMAT, build_head, compiled_scores, head_payload  # noqa: PLC0415
    from actors.audio_events.tfruntime import keras  # noqa: PLC0415

    k = keras()
    k.utils.set_random_seed(args.seed)
    started = time.monotonic()
    rng = np.random.default_rng(args.seed)
    train_pool = speech_pool(rng, 3 * len(SENTENCES))
    val_pool = speech_pool(np.random.default_rng(args.seed + 1000), len(SENTENCES))
    x_train, y_train = make_set(args.seed * 1_000_003, args.clips, train_pool, "training data")
    x_val, y_val = make_set(args.seed * 1_000_003 + 17, args.val_clips, val_pool, "validation data")
    print(f"train: {len(x_train)} training patches, {len(x_val)} validation patches, "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)

    model = build_head(len(synth.CLASSES))
    model.compile(optimizer=k.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = k.callbacks.EarlyStopping(monitor="val_accuracy", patience=args.patience, restore_best_weights=True)
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs, batch_size=64,
                        shuffle=True, callbacks=[stop], verbose=2)
    hist = {key: [float(v) for v in vals] for key, vals in history.history.items()}
    best = int(np.argmax(hist["val_accuracy"]))

    predicted = np.argmax(np.asarray(model(x_val, training=False)), axis=1)
    per_class = {}
    for y, label in enumerate(synth.CLASSES):
        tp = int(np.sum((predicted == y) & (y_val == y)))
        p = tp / max(int(np.sum(predicted == y)), 1)
        r = tp / max(int(np.sum(y_val == y)), 1)
        per_class[label] = {"precision": round(p, 4), "recall": round(r, 4),
                            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}

    pcm, truth = heldout_mix()
    params = TrackerParams.build(list(synth.CLASSES), {}, 0.5, [], list(synth.BACKGROUND_CLASSES))
    detector = EventDetector(compiled_scores(model), params)
    found = [e for i in range(0, pcm.size, 16_000) for e in detector.feed(pcm[i:i + 16_000])] + detector.flush()
    mix_scores = synth.score_events(truth, [(e.label, e.t_start, e.t_end) for e in found])
    mix = {label: {"tp": s.tp, "fp": s.fp, "fn": s.fn, "f1": round(s.f1, 4)} for label, s in mix_scores.items()}
    print(f"train: held-out mix event F1 {mix['all']['f1']:.3f} "
          + ", ".join(f"{lab} {v['f1']:.2f}" for lab, v in mix.items() if lab != "all"), file=sys.stderr)

    metrics = {"val_accuracy": round(hist["val_accuracy"][best], 4), "best_epoch": best + 1,
               "epochs_run": len(hist["loss"]), "val_per_class": per_class, "heldout_mix": mix}
    payload = head_payload(model)
    meta = {"format": HEAD_FORMAT, "arch": HEAD_ARCH, "classes": list(synth.CLASSES), "version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "metrics": metrics,
            "data": {"generator": "actors.audio_events.synth", "clip_s": CLIP_S, "train_clips_per_class": args.clips,
                     "val_clips_per_class": args.val_clips, "seed": args.seed,
                     "train_patches": int(len(x_train)), "val_patches": int(len(x_val)),
                     "speech": "espeak-ng, actors.audio_events.train.SENTENCES"},
            "command": "python -m actors.audio_events.train " + " ".join(argv if argv is not None else sys.argv[1:]),
            "tensorflow": tf.__version__, "train_s": round(time.monotonic() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    GuardedFile(args.out, keep=3).save(payload, **meta)
    plot_curve(hist, args.out.with_suffix(".curve.png"))
    print(f"train: wrote {args.out} ({len(payload) / 1024:.0f} KiB of weights, {model.count_params()} parameters); "
          f"validation accuracy {metrics['val_accuracy']:.3f} at epoch {best + 1}; "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
