"""Make the shipped gesture store: ``python -m actors.gesture.make_templates``.

The default pipeline's sensor plays the scripted synthetic gestures
(``actors/lib/imu/synthetic.py``); this script records ``--samples``
performances of each the way ``sensorium gesture record`` would - a
stream of rest and motion, cut by the same motion-energy segmenter - then
trains the store (outliers, consistency, cross-validation, calibration)
and writes it to ``models/gestures/synthetic.gst``, every sample of origin
``shipped`` (a user's own samples of a name replace them). Deterministic for a
given ``--seed``; the seed differs from the sensor's default one, so the
live stream is never the training data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from actors.lib.gesture.segmenter import Segmenter
from actors.lib.gesture.store import SHIPPED, GestureDB, GestureStore, Sample
from actors.lib.gesture.training import train
from actors.lib.imu.synthetic import GESTURES, ScriptedStream, Shape
from config.paths import resolve_path

DEFAULT_OUT = "models/gestures/synthetic.gst"


def record_synthetic(names: list[str], samples: int, seed: int, shapes: dict[str, Shape] | None = None,
                     rate_hz: float = 100.0) -> dict[str, list[Sample]]:
    """``samples`` segmented performances of each gesture, as a recording session would cut them."""
    out: dict[str, list[Sample]] = {}
    for k, name in enumerate(names):
        stream = ScriptedStream([name], rate_hz=rate_hz, pause_s=(0.8, 1.2), seed=seed * 1000 + k, shapes=shapes,
                                acc_bias=(0, 0, 0), gyro_bias=(0, 0, 0))
        segmenter = Segmenter()
        got: list[Sample] = []
        t_end = 0.0
        while len(got) < samples:
            t_end += 1.0
            if t_end > samples * 10 + 30:
                raise RuntimeError(f"{name}: only {len(got)} of {samples} samples segmented")
            t, acc, gyro = stream.read_until(t_end)
            for seg in segmenter.feed(t, acc, gyro):
                got.append(Sample(seg.t - seg.t[0], seg.acc, seg.gyro, quality=1.0, source=f"synthetic:{seed}",
                                  origin=SHIPPED))
        out[name] = got[:samples]
    return out


def build(names: list[str], samples: int, seed: int, shapes: dict[str, Shape] | None = None) -> GestureDB:
    db = GestureDB()
    for name, got in record_synthetic(names, samples, seed, shapes).items():
        db.add_samples(name, got)
    train(db)
    return db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.gesture.make_templates", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"store file to write (default {DEFAULT_OUT})")
    parser.add_argument("--samples", type=int, default=10, help="samples per gesture")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    out = resolve_path(args.out)
    if out.exists():
        out.unlink()   # regenerated from scratch: no backup of a generated file
    db = build(sorted(GESTURES), args.samples, args.seed)
    GestureStore(out).save(db)
    Path(f"{out}.lock").unlink(missing_ok=True)
    sizes = {n: len(g.samples) for n, g in db.gestures.items()}
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB): {sizes}; cross-validation accuracy "
          f"{db.accuracy:.3f}; consistency " + ", ".join(f"{n} {g.consistency:.2f}" for n, g in db.gestures.items()),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
