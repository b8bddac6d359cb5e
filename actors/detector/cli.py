"""``sensorium models``: the model store from the command line.

It works on the user store layered over the shipped ``models/`` (the
configured detector's ``models_dir`` and ``user_dir``; ``--actor`` picks the
detector when there are several); ``--store DIR`` works on one plain store
folder instead. Versions: ``1``/``v1`` shipped, ``u1`` the user's.

    sensorium models list
    sensorium models history SIGNAL
    sensorium models promote SIGNAL VERSION      (SIGNAL may be 'backbone')
    sensorium models rollback SIGNAL
    sensorium models cleanup [--keep N]
    sensorium models verify
    sensorium models extract CHECKPOINT --signal NAME
    sensorium models train SIGNAL --data DIR [--extend]

Exit codes: 0 done, 1 refused or failed (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from actors.detector.settings import DetectorSettings
from actors.lib.model_migration import open_layered
from actors.lib.modelstore import (BACKBONE, DEFAULT_STORE, ModelStore, StoreError, VersionRules, check_signal, show,
                                   sort_versions, user_models_dir, version_label)
from config.storage import CorruptFileError, LockTimeout, write_atomic


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sensorium models", description="The model store: backbone and heads.")
    parser.add_argument("--store", type=Path, default=None,
                        help="work on this one plain store folder (default: the user store over the shipped models/)")
    parser.add_argument("--actor", default=None, help="the detector whose models_dir/user_dir to use (default: the "
                        "first detector in the configuration)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add(name, description=kwargs["help"][:1].upper() + kwargs["help"][1:] + ".", **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    sub.add_parser("list", help="every model: active version, versions, F1")
    p = sub.add_parser("history", help="the versions of one model")
    p.add_argument("signal", help="the model: a head's signal (e.g. wifi_24) or backbone")
    p = sub.add_parser("promote", help="make a version active")
    p.add_argument("signal", help="the model: a head's signal (e.g. wifi_24) or backbone")
    p.add_argument("version", type=version_label, help="1 or v1: a shipped version; u1: one of yours")
    p = sub.add_parser("rollback", help="return to the previous active version")
    p.add_argument("signal", help="the model: a head's signal (e.g. wifi_24) or backbone")
    p = sub.add_parser("cleanup", help="delete all but the newest N versions (never an active one)")
    p.add_argument("--keep", type=int, default=3, metavar="N", help="versions kept per model (default 3)")
    sub.add_parser("verify", help="check every stored file against its sha256 (exit 1 on a problem)")
    p = sub.add_parser("extract", help="split a legacy single-signal checkpoint into backbone + head")
    p.add_argument("checkpoint", type=Path, help="the legacy checkpoint file (.pt)")
    p.add_argument("--signal", required=True, help="the signal the checkpoint detects: the new head's name")
    p.add_argument("--notes", default="", help="free text stored with the new versions")
    p = sub.add_parser("train", help="train a head on the frozen active backbone")
    p.add_argument("signal", help="the head to train: a new signal name or an existing head's")
    p.add_argument("--data", type=Path, required=True,
                   help="folder of NAME.png + NAME.json ({\"objects\": [{\"label\", \"box\": [x1,y1,x2,y2]}]})")
    p.add_argument("--extend", action="store_true",
                   help="start from the active head (parent) and keep its train/validation assignments")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the images held out for validation (default 0.2)")
    p.add_argument("--epochs", type=int, default=60, help="most epochs to train (default 60)")
    p.add_argument("--patience", type=int, default=6, help="epochs without a better val F1 before stopping")
    p.add_argument("--promote-margin", type=float, default=2.0,
                   help="auto-promote when F1 beats the active version by more than this many points")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default 0)")
    p.add_argument("--notes", default="", help="free text stored with the new version")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: list[str], config: Any = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(argv)
    rules = VersionRules(getattr(args, "promote_margin", 2.0))

    def recovered(message: str) -> None:
        print(f"models: registry recovered: {message}", file=sys.stderr)

    try:
        if args.store is not None:
            store = ModelStore(args.store, rules, on_recovered=recovered)
        else:
            settings = detector_settings(config, args.actor)
            store = open_layered(Path(settings.models_dir) if settings.models_dir else DEFAULT_STORE,
                                 user_models_dir(settings.user_dir), rules=rules, on_recovered=recovered,
                                 say=lambda line: print(f"models: moved out of the checkout: {line}", file=sys.stderr))
        return ACTIONS[args.action](store, args)
    except (StoreError, CorruptFileError, LockTimeout, FileNotFoundError, ValueError) as exc:
        print(f"sensorium models {args.action}: {exc}", file=sys.stderr)
        return 1


def detector_settings(config: Any, actor: str | None) -> DetectorSettings:
    """The settings of the configured detector named ``actor`` (None: the first one; none configured: defaults)."""
    for name, spec in (getattr(config, "actors", None) or {}).items():
        if spec.kind_for(name) == "detector" and (actor is None or name == actor):
            return DetectorSettings.model_validate(spec.settings)
    if actor is not None:
        raise StoreError(f"no detector actor named {actor!r} in the configuration")
    return DetectorSettings()


# -- read-only views --------------------------------------------------------------

def _f1(meta: dict[str, Any]) -> str:
    m = meta.get("metrics", {})
    value = m.get("f1", m.get("mean_f1"))
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def cmd_list(store: ModelStore, _args: argparse.Namespace) -> int:
    doc = store.read()
    rows = [("MODEL", "ACTIVE", "VERSIONS", "F1", "BACKBONE", "CREATED")]
    for name in store.names(doc):
        entry = doc["models"][name]
        active = entry["active"]
        meta = entry["versions"].get(active, {}) if active is not None else {}
        rows.append((name, show(active) if active is not None else "-",
                     ",".join(show(v) for v in sort_versions(entry["versions"])), _f1(meta),
                     show(meta["backbone"]) if meta.get("backbone") else "-", meta.get("created", "-")))
    if len(rows) == 1:
        print(f"no models in {store.describe()}")
        return 0
    print(f"store: {store.describe()}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_history(store: ModelStore, args: argparse.Namespace) -> int:
    doc = store.read()
    entry = store.entry(args.signal, doc)
    for key in sort_versions(entry["versions"]):
        meta = entry["versions"][key]
        state = "ACTIVE" if key == entry["active"] else ("was active" if key in entry["history"] else "")
        m = meta.get("metrics", {})
        prf = " ".join(f"{k}={m[k]:.3f}" for k in ("precision", "recall", "f1") if isinstance(m.get(k), (int, float)))
        where = f"  ({meta['store']})" if meta.get("store") else ""
        print(f"{show(key):<4} {state:<10} {meta['created']}  {prf or 'F1 ' + _f1(meta)}  parent={meta.get('parent')}"
              f"{'  backbone=' + show(meta['backbone']) if meta.get('backbone') else ''}  "
              f"sha256={meta['sha256'][:12]}{where}")
        if meta.get("decision"):
            print(f"       {meta['decision']}")
        if meta.get("notes"):
            print(f"       notes: {meta['notes']}")
    print(f"active history: {' -> '.join(show(v) for v in entry['history']) or '-'}")
    return 0


def cmd_verify(store: ModelStore, _args: argparse.Namespace) -> int:
    problems = store.verify()
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        return 1
    print(f"ok: {store.count_files()} file(s) in {store.describe()}, checksums good")
    return 0


# -- changes -------------------------------------------------------------------------

def cmd_promote(store: ModelStore, args: argparse.Namespace) -> int:
    reg = store.promote(args.signal, args.version)
    print(f"{reg.name}: {show(reg.version)} active ({reg.reason})")
    return 0


def cmd_rollback(store: ModelStore, args: argparse.Namespace) -> int:
    reg = store.rollback(args.signal)
    print(f"{reg.name}: {show(reg.version)} active ({reg.reason})")
    return 0


def cmd_cleanup(store: ModelStore, args: argparse.Namespace) -> int:
    removed = store.cleanup(args.keep)
    print(f"removed {len(removed)} version(s)" + (": " + ", ".join(removed) if removed else ""))
    return 0


def cmd_extract(store: ModelStore, args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415 - torch only for the commands that need it

    from actors.detector import model as hm  # noqa: PLC0415

    check_signal(args.signal)
    raw = args.checkpoint.read_bytes()
    try:
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure means "not a checkpoint we can read"
        raise hm.UnsupportedCheckpoint(f"{args.checkpoint}: not a readable torch checkpoint "
                                       f"({type(exc).__name__}); expected {hm.LEGACY_EXPECTED}") from exc
    model, backbone, head = hm.split_legacy(checkpoint, str(args.checkpoint))
    # Check the split against the original, and again after a round trip
    # through the bytes that will be stored, before anything is written.
    diff = hm.split_max_abs_diff(model, backbone, head)
    bb_bytes, head_bytes = hm.to_bytes(backbone), hm.to_bytes(head)
    stored_diff = hm.split_max_abs_diff(model, hm.backbone_from_bytes(bb_bytes), hm.head_from_bytes(head_bytes))
    worst = max(diff, stored_diff)
    if not worst <= 1e-5:
        print(f"sensorium models extract: split outputs differ from the original by {worst:.3g} (> 1e-5); "
              "nothing written", file=sys.stderr)
        return 1
    digest = hashlib.sha256(raw).hexdigest()
    backup = store.root / ".backups" / "legacy" / f"{args.checkpoint.name}.{time.time_ns()}"
    backup.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(backup, raw)
    bb_version = _same_backbone(store, backbone)
    notes = (f"extracted from {args.checkpoint} (sha256 {digest[:16]}, backup {backup.relative_to(store.root)}); "
             f"split max abs diff {worst:.2e}. {args.notes}").strip()
    if bb_version is None:
        bb = store.add_backbone(bb_bytes, notes=notes, data_split={"source": str(args.checkpoint)})
        bb_version = bb.version
        print(f"backbone: {show(bb.version)} ({bb.reason})")
    else:
        print(f"backbone: identical to stored {show(bb_version)}, reused")
    reg = store.add_head(args.signal, head_bytes, backbone=bb_version, notes=notes,
                         data_split={"source": str(args.checkpoint)})
    print(f"{args.signal}: {show(reg.version)} ({reg.reason}); split max abs diff {worst:.2e}; original backed up to "
          f"{backup}")
    active_bb = store.active(BACKBONE)
    if active_bb != bb_version:
        print(f"note: this head needs backbone {show(bb_version)}; the active backbone is {show(active_bb)}", file=sys.stderr)
    return 0


def _same_backbone(store: ModelStore, backbone: Any) -> int | None:
    """The stored backbone version with exactly these weights, if any."""
    import torch  # noqa: PLC0415

    from actors.detector.model import backbone_from_bytes  # noqa: PLC0415

    try:
        doc = store.read()
        versions = store.candidates(BACKBONE, doc)
    except StoreError:
        return None
    mine = backbone.state_dict()
    for v in versions:
        try:
            other = backbone_from_bytes(store.read_verified(BACKBONE, v, doc)).state_dict()
        except (CorruptFileError, ValueError):
            continue
        if other.keys() == mine.keys() and all(torch.equal(other[k], mine[k]) for k in mine):
            return v
    return None


def split_samples(names: list[str], val_fraction: float, previous: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Train and validation names. A name's side is fixed by a hash of the name (stable across runs and
    versions); with ``previous`` (a stored split), names already assigned keep their side."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val-fraction {val_fraction}: expected a fraction between 0 and 1")
    known_train = set(previous.get("train", [])) if previous else set()
    known_val = set(previous.get("val", [])) if previous else set()
    train, val = [], []
    for name in names:
        if name in known_val:
            val.append(name)
        elif name in known_train:
            train.append(name)
        elif int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 1000 < val_fraction * 1000:
            val.append(name)
        else:
            train.append(name)
    if not train or not val:
        raise ValueError(f"split of {len(names)} samples left {len(train)} for training and {len(val)} for "
                         "validation; add samples or change --val-fraction")
    return train, val


def cmd_train(store: ModelStore, args: argparse.Namespace) -> int:
    from actors.detector import model as hm  # noqa: PLC0415
    from actors.detector import train as ht  # noqa: PLC0415
    from actors.lib.scenes import read_dataset  # noqa: PLC0415

    check_signal(args.signal)
    doc = store.read()
    bb_version = store.active(BACKBONE, doc)
    if bb_version is None:
        raise StoreError(f"{store.root}: no active backbone; run python -m actors.detector.make_weights first")
    backbone = hm.backbone_from_bytes(store.read_verified(BACKBONE, bb_version, doc), f"backbone {show(bb_version)}")
    active = store.active(args.signal, doc) if args.signal in doc["models"] else None
    active_head = previous_split = None
    if active is not None:
        meta = store.meta(args.signal, active, doc)
        if meta.get("backbone") == bb_version:
            active_head = hm.head_from_bytes(store.read_verified(args.signal, active, doc), f"{args.signal} {show(active)}")
        if args.extend and "split.json" in meta.get("files", {}):
            split = json.loads(store.file(args.signal, active, "split.json", doc).read_text())
            # A named-sample split; the shipped heads' split describes generated scenes (counts and seeds).
            if isinstance(split.get("train"), list) and isinstance(split.get("val"), list):
                previous_split = split
    if args.extend and active_head is None:
        raise StoreError(f"--extend: {args.signal} has no active head on backbone {show(bb_version)} to start from")
    samples = dict(read_dataset(args.data))
    train_names, val_names = split_samples(sorted(samples), args.val_fraction, previous_split)
    positives = sum(len(samples[n].boxes_of(args.signal)) for n in samples)
    if positives == 0:
        raise ValueError(f"{args.data}: no boxes labelled {args.signal!r}; labels found: "
                         f"{sorted({k for s in samples.values() for k in s.boxes})}")
    print(f"{args.signal}: {len(train_names)} training, {len(val_names)} validation samples "
          f"({positives} boxes); backbone {show(bb_version)} frozen", file=sys.stderr)
    train = ht.prepare([samples[n] for n in train_names], [args.signal])
    val = ht.prepare([samples[n] for n in val_names], [args.signal])
    result = ht.train_head(backbone, args.signal, train, val, init=active_head if args.extend else None,
                           epochs=args.epochs, patience=args.patience, seed=args.seed, progress=not args.no_progress)
    active_metrics = None
    if active_head is not None:
        active_metrics = ht.evaluate_head(active_head, ht.features_of(backbone, val.x), val.truth[args.signal],
                                          val.frame_hw)
    split_doc = {"data_dir": str(args.data.resolve()), "val_fraction": args.val_fraction,
                 "rule": "a name goes to val when int(sha256(name)[:8], 16) % 1000 < val_fraction * 1000; "
                         "with --extend, names of the parent's split keep their side",
                 "train": train_names, "val": val_names}
    metrics = {**result.metrics.to_dict(), "epochs": result.epochs_run, "best_epoch": result.best_epoch,
               "curve": result.curve.to_dict()}
    if active_metrics is not None:
        metrics["active_on_same_val"] = {"version": active, **active_metrics.to_dict()}
    command = "sensorium models " + " ".join(args.argv)
    reg = store.add_head(
        args.signal, hm.to_bytes(result.head), backbone=bb_version, metrics=metrics,
        active_f1=active_metrics.f1 if active_metrics is not None else None,
        parent=active if args.extend else None,
        data_split={"data_dir": split_doc["data_dir"], "train": len(train_names), "val": len(val_names),
                    "val_fraction": args.val_fraction},
        notes=(f"`{command}`; {result.epochs_run} epochs ({result.seconds:.0f} s), best {result.best_epoch}. "
               f"{args.notes}").strip(),
        extra_files={"split.json": json.dumps(split_doc, indent=1).encode(),
                     "curve.png": ht.plot_curve(result.curve, f"{args.signal}: head on backbone {show(bb_version)}")})
    rows = [("", "precision", "recall", "F1")]
    rows.append((f"new {show(reg.version)}", *(f"{getattr(result.metrics, k):.3f}" for k in ("precision", "recall", "f1"))))
    if active_metrics is not None:
        rows.append((f"active {show(active)}", *(f"{getattr(active_metrics, k):.3f}" for k in ("precision", "recall", "f1"))))
    for r in rows:
        print(f"{r[0]:<12} {r[1]:>9} {r[2]:>7} {r[3]:>6}")
    meta = store.meta(args.signal, reg.version)
    print(f"{args.signal} {show(reg.version)}: {reg.reason}")
    print(f"training curve: {store.file(args.signal, reg.version, 'curve.png')}")
    return 0


ACTIONS = {"list": cmd_list, "history": cmd_history, "promote": cmd_promote, "rollback": cmd_rollback,
           "cleanup": cmd_cleanup, "verify": cmd_verify, "extract": cmd_extract, "train": cmd_train}
