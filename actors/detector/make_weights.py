"""Train the shipped backbone and heads and put them in the model store.

    nice python -m actors.detector.make_weights            # writes models/ (refuses if it has a backbone)
    nice python -m actors.detector.make_weights --out DIR --force

One backbone and one head per shipped signal (circle, square, triangle) are
trained together from scratch on generated scenes (``actors.lib.scenes``):
training seeds ``0 .. n_train-1``, validation seeds ``100000 ..``; the tests'
held-out scenes use seeds from 200000, which training never sees. Then the
backbone becomes ``backbone/v1.pt`` and each head ``heads/SIGNAL/v1.pt``
(first versions: they promote themselves), with the validation metrics, the
split and the exact command in their metadata. Deterministic for a given
torch version and thread count, give or take float rounding.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from actors.detector.model import to_bytes
from actors.lib.scenes import SHIPPED_KINDS, random_scene
from actors.lib.modelstore import DEFAULT_STORE, ModelStore
from actors.lib.model_migration import write_manifest
from actors.detector.train import plot_curve, prepare, train_joint

VAL_SEED0 = 100_000
HELD_OUT_SEED0 = 200_000
"""Seeds of the tests' held-out scenes: never used for training or validation."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.detector.make_weights", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_STORE, help="model store folder (default: models/)")
    parser.add_argument("--force", action="store_true", help="delete the store's registry and weights first")
    parser.add_argument("--n-train", type=int, default=2400)
    parser.add_argument("--n-val", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = "python -m actors.detector.make_weights " + " ".join(argv if argv is not None else sys.argv[1:])
    store = ModelStore(args.out)
    if store.registry.exists():
        if not args.force:
            print(f"{args.out}: a registry exists; use --force to replace the store's contents", file=sys.stderr)
            return 1
        for sub in ("backbone", "heads", ".backups", ".quarantine"):
            shutil.rmtree(args.out / sub, ignore_errors=True)
        store.registry.path.unlink()
    signals = list(SHIPPED_KINDS)
    t0 = time.monotonic()
    print(f"generating {args.n_train} training and {args.n_val} validation scenes", file=sys.stderr)
    train = prepare([random_scene(args.seed + i, signals) for i in range(args.n_train)], signals)
    val = prepare([random_scene(VAL_SEED0 + i, signals) for i in range(args.n_val)], signals)
    result = train_joint(train, val, signals, epochs=args.epochs, seed=args.seed)
    split = {"generator": "actors.lib.scenes.random_scene", "kinds": signals,
             "train_seeds": [args.seed, args.seed + args.n_train], "val_seeds": [VAL_SEED0, VAL_SEED0 + args.n_val],
             "train": args.n_train, "val": args.n_val}
    notes = (f"trained jointly with heads {', '.join(signals)} by `{command}` "
             f"(torch {torch.__version__}, {torch.get_num_threads()} threads, {result.epochs_run} epochs, "
             f"{result.seconds:.0f} s)")
    curve_png = plot_curve(result.curve, "shipped backbone + heads (joint): mean val F1")
    split_json = json.dumps(split, indent=1).encode()
    bb = store.add_backbone(to_bytes(result.model.backbone), data_split=split, notes=notes,
                            metrics={"mean_f1": round(sum(m.f1 for m in result.metrics.values()) / len(signals), 4),
                                     "curve": result.curve.to_dict()},
                            extra_files={"curve.png": curve_png, "split.json": split_json})
    for signal in signals:
        reg = store.add_head(signal, to_bytes(result.model.heads[signal]), backbone=bb.version,
                             metrics=result.metrics[signal].to_dict(), data_split=split, notes=notes,
                             extra_files={"split.json": split_json})
        print(f"{signal}: v{reg.version} F1 {result.metrics[signal].f1:.3f} ({reg.reason})", file=sys.stderr)
    print(f"manifest of the shipped files: {write_manifest(store)}", file=sys.stderr)
    print(f"done in {time.monotonic() - t0:.0f} s: backbone v{bb.version} in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
