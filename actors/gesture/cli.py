"""``sensorium gesture``: record, train and manage gesture templates.

    sensorium gesture record NAME --samples N   # countdown, perform, repeat; resumes an interrupted session
    sensorium gesture train                     # outliers, consistency, k-fold accuracy, calibration
    sensorium gesture list | show NAME | delete NAME
    sensorium gesture export FILE [NAME...] | import FILE [--overwrite]

The store is the one of the configured ``gesture`` actor (``--actor`` picks
an instance, ``--store`` names a file directly). A running recognizer
reloads it by itself after every change.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any

import zmq

from actors.lib.gesture.session import RecordingSession, Recorder, sample_from, score_sample
from actors.lib.gesture.store import GestureStore, SampleError, StoreError, valid_name
from actors.lib.gesture.training import MIN_SAMPLES, train
from actors.lib.progress import StageProgress
from bus.pubsub import Subscriber
from actors.gesture.settings import GestureSettings
from bus.endpoints import runtime_paths
from config.schema import Config
from config.storage import CorruptFileError, LockTimeout


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", help="gesture store file (default: the configured gesture actor's)")
    common.add_argument("--actor", help="gesture actor instance whose settings to use (default: the first one)")
    p = argparse.ArgumentParser(prog="sensorium gesture", description="Record, train and manage gesture templates.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add(name, parents=[common], description=kwargs["help"][:1].upper() + kwargs["help"][1:] + ".",
                   **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    r = sub.add_parser("record", help="record samples of a gesture from sensor.imu")
    r.add_argument("name", help="the gesture's name (new, or one to add samples to)")
    r.add_argument("--samples", type=int, default=10, help="samples to record (default 10)")
    r.add_argument("--countdown", type=float, default=3.0, help="seconds of countdown before each sample")
    r.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a motion after 'go'")
    r.add_argument("--min-quality", type=float, default=0.3, help="takes below this quality are asked for again")
    r.add_argument("--topic", default="sensor.imu", help="IMU topic to record from (default sensor.imu)")
    r.add_argument("--fresh", action="store_true", help="discard an interrupted session instead of resuming it")
    r.add_argument("--no-train", action="store_true", help="only store the samples; train later")
    t = sub.add_parser("train", help="train every gesture of the store")
    t.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    sub.add_parser("list", help="gestures with their samples, accuracy and consistency")
    s = sub.add_parser("show", help="everything about one gesture, as JSON")
    s.add_argument("name", help="the gesture's name")
    d = sub.add_parser("delete", help="remove a gesture (a backup of the store is kept)")
    d.add_argument("name", help="the gesture's name")
    e = sub.add_parser("export", help="write gestures to one file")
    e.add_argument("file", help="the file to write (JSON)")
    e.add_argument("names", nargs="*", help="gestures to export (default: all)")
    i = sub.add_parser("import", help="add the gestures of an exported file")
    i.add_argument("file", help="a file written by export")
    i.add_argument("--overwrite", action="store_true", help="replace gestures of the same name")
    return p


def _settings(config: Config, actor: str | None) -> GestureSettings:
    for name, spec in config.actors.items():
        if spec.kind_for(name) == "gesture" and (actor is None or name == actor):
            return GestureSettings.model_validate(spec.settings)
    if actor is not None:
        raise StoreError(f"no gesture actor named {actor!r} in the configuration")
    return GestureSettings()


def _err(text: str) -> None:
    print(f"sensorium gesture: {text}", file=sys.stderr)


def main(argv: list[str], config: Config) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(config, args.actor)
        store_settings = (settings.store.model_copy(update={"path": args.store, "seed_path": ""}) if args.store
                          else settings.store)
        store = GestureStore.from_settings(store_settings)
        if args.action == "record":
            try:
                return record(args, store, settings, config)
            except KeyboardInterrupt:
                _err("interrupted; the samples recorded so far are kept: run the same command to resume")
                return 130
        return ACTIONS[args.action](args, store)
    except (StoreError, SampleError, CorruptFileError, LockTimeout) as exc:
        _err(str(exc))
        return 1


def record(args: argparse.Namespace, store: GestureStore, settings: GestureSettings, config: Config) -> int:
    name = valid_name(args.name)
    if args.samples < 1:
        raise StoreError("--samples must be at least 1")
    session, resumed = RecordingSession.open(store.path.parent / "sessions", name, args.samples, fresh=args.fresh)
    if resumed:
        print(f"resuming session {session.id} of {name!r}: {len(session.samples)}/{session.target} samples "
              "recorded", file=sys.stderr, flush=True)
    else:
        session.save()
        print(f"new session {session.id}: {session.target} samples of {name!r}", file=sys.stderr, flush=True)
    paths = runtime_paths(config)
    ctx = zmq.Context.instance()
    sub = Subscriber(ctx, paths.endpoints.backend, [args.topic])
    try:
        if not sub.wait_subscribed(paths.endpoints.frontend, 10.0):
            raise StoreError(f"no bus at {paths.endpoints.frontend}: is `sensorium run` up?")
        recorder = Recorder(sub, args.topic, settings.segmentation)
        recorder.idle(0.5)   # learn the noise floor at rest
        if recorder.batches == 0:
            print(f"waiting for {args.topic} ...", file=sys.stderr, flush=True)
        while not session.done:
            k = len(session.samples) + 1
            go = time.time() + args.countdown
            for left in range(int(args.countdown), 0, -1):
                print(f"sample {k}/{session.target}: {left}...", file=sys.stderr, flush=True)
                recorder.idle(1.0)
            recorder.idle(max(0.0, go - time.time()))
            print(f"sample {k}/{session.target}: go!", file=sys.stderr, flush=True)
            got = recorder.next_segment(time.time(), args.timeout)
            if got is None:
                _err(f"no motion within {args.timeout:g} s; {len(session.samples)} samples kept, run the same "
                     "command again to resume")
                return 1
            segment, batch_quality, flags = got
            quality, problems = score_sample(segment, batch_quality, flags)
            if problems or quality < args.min_quality:
                session.rejected += 1
                session.save()
                why = "; ".join(problems) or f"quality {quality:.2f} < {args.min_quality:g}"
                print(f"sample {k}/{session.target}: rejected ({why}), once more", file=sys.stderr, flush=True)
                continue
            session.samples.append(sample_from(segment, quality, session.id))
            session.save()
            print(f"sample {k}/{session.target}: ok (quality {quality:.2f}, {segment.duration_s:.2f} s)",
                  file=sys.stderr, flush=True)
    finally:
        sub.close()
    with store.edit() as db:
        db.add_samples(name, session.samples)
        stages = StageProgress()
        report = None if args.no_train else train(db, progress=stages)
        stages.close()
    session.remove()
    g = store.load().db.gesture(name)
    print(json.dumps(g.summary()))
    if report is not None and name in report.skipped:
        print(f"{name}: not trained yet ({report.skipped[name]})", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace, store: GestureStore) -> int:
    with store.edit() as db:
        if not db.gestures:
            raise StoreError(f"{store.path}: no gestures to train; record some first")
        stages = StageProgress()
        report = train(db, folds=args.folds, progress=stages)
        stages.close()
    for name, info in sorted(report.gestures.items()):
        print(f"{name:<16} samples {info['samples']:>3}  outliers removed {info['outliers_removed']:>2}  "
              f"accuracy {info['accuracy']:.2f}  consistency {info['consistency']:.2f}  v{info['version']}")
    for name, why in sorted(report.skipped.items()):
        print(f"{name:<16} not trained: {why} (at least {MIN_SAMPLES})")
    if report.accuracy is not None:
        print(f"cross-validation accuracy {report.accuracy:.3f} ({report.folds} folds, {report.seconds:.1f} s)")
    return 0


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M") if ts else "-"


def cmd_list(args: argparse.Namespace, store: GestureStore) -> int:
    loaded = store.load()
    if loaded.recovered_from is not None:
        _err(f"the store was corrupt ({loaded.error}); restored {loaded.recovered_from}")
    db = loaded.db
    print(f"{store.path}: revision {db.revision}, {len(db.gestures)} gestures"
          + (f", accuracy {db.accuracy:.3f}" if db.accuracy is not None else ""))

    def fmt(x: Any) -> str:
        return "-" if x is None else f"{x:.2f}"

    for name, g in sorted(db.gestures.items()):
        print(f"  {name:<16} v{g.version:<3} samples {len(g.samples):>3}  outliers {len(g.outliers):>2}  "
              f"accuracy {fmt(g.accuracy)}  consistency {fmt(g.consistency)}  trained {_when(g.trained_at)}")
    return 0


def cmd_show(args: argparse.Namespace, store: GestureStore) -> int:
    g = store.load().db.gesture(args.name)
    info = g.summary()
    info["samples_detail"] = [{"id": s.id, "readings": len(s.t), "duration_s": round(s.duration_s, 3),
                               "quality": s.quality, "source": s.source, "recorded_at": _when(s.recorded_at)}
                              for s in g.samples]
    info["outlier_ids"] = [s.id for s in g.outliers]
    print(json.dumps(info, indent=2))
    return 0


def cmd_delete(args: argparse.Namespace, store: GestureStore) -> int:
    with store.edit() as db:
        db.gesture(args.name)
        del db.gestures[args.name]
    print(f"deleted {args.name!r} (the previous store is in {store.file.backup_dir})", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace, store: GestureStore) -> int:
    n = store.export(args.file, args.names or None)
    print(f"exported {n} gestures to {args.file}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace, store: GestureStore) -> int:
    names = store.import_file(args.file, overwrite=args.overwrite)
    print(f"imported {', '.join(names)} from {args.file}", file=sys.stderr)
    return 0


ACTIONS = {"train": cmd_train, "list": cmd_list, "show": cmd_show, "delete": cmd_delete, "export": cmd_export,
           "import": cmd_import}
