"""``sensorium gesture``: record, train and manage gesture templates.

    sensorium gesture record NAME --samples N   # countdown, perform, repeat; resumes an interrupted session
    sensorium gesture add NAME --from FILE --start T --end T   # a sample cut from a recorded stream
    sensorium gesture train                     # outliers, consistency, k-fold accuracy, calibration
    sensorium gesture list | show NAME | delete NAME [--user]
    sensorium gesture export FILE [NAME...] | import FILE [--overwrite]

The store is the one of the configured ``gesture`` actor (``--actor`` picks
an instance, ``--store`` names a file directly). A running recognizer
reloads it by itself after every change. Whenever training runs, it says
which gestures the user's own samples now define instead of the shipped
templates (``TrainReport.lines``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any

import zmq

from actors.lib.gesture.fromfile import StreamFileError, cut_sample, file_tell, read_imu_file
from actors.lib.gesture.session import RecordingSession, Recorder, sample_from, score_sample
from actors.lib.gesture.store import Gesture, GestureStore, SampleError, StoreError, valid_name
from actors.lib.gesture.training import MIN_SAMPLES, TrainReport, train
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
    a = sub.add_parser("add", help="add a sample cut from a recorded stream (Sensor Logger JSON lines or a "
                                   "Sensorium recording)")
    a.add_argument("name", help="the gesture's name (new, or one to add a sample to)")
    a.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="a Sensorium recording (.mcap, its sensor.imu messages) or a Sensor Logger JSON-lines file")
    a.add_argument("--start", type=float, required=True,
                   help="start of the gesture, seconds from the first IMU reading of the file")
    a.add_argument("--end", type=float, required=True, help="end of the gesture, seconds from the first IMU reading")
    a.add_argument("--exact", action="store_true",
                   help="take [start, end] as it is (default: cut the one motion inside it, as record does)")
    a.add_argument("--topic", default="sensor.imu", help="IMU topic of a recording (default sensor.imu)")
    a.add_argument("--min-quality", type=float, default=0.3, help="refuse a take below this quality")
    a.add_argument("--no-train", action="store_true", help="only store the sample; train later")
    t = sub.add_parser("train", help="train every gesture of the store")
    t.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    sub.add_parser("list", help="gestures with their samples, accuracy and consistency")
    s = sub.add_parser("show", help="everything about one gesture, as JSON")
    s.add_argument("name", help="the gesture's name")
    d = sub.add_parser("delete", help="remove a gesture (a backup of the store is kept)")
    d.add_argument("name", help="the gesture's name")
    d.add_argument("--user", action="store_true",
                   help="remove only your own samples of it: the shipped ones come back (then retrain)")
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
        if args.action == "add":
            return cmd_add(args, store, settings)
        return ACTIONS[args.action](args, store, settings)
    except (StoreError, SampleError, CorruptFileError, LockTimeout, StreamFileError) as exc:
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
        warned = False
        while not session.done:
            if not warned and (tell := recorder.synthetic_tell()):
                warned = True
                _warn_synthetic(args.topic, tell)
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
    if not warned and (tell := recorder.synthetic_tell()):
        _warn_synthetic(args.topic, tell)
    with store.edit() as db:
        db.add_samples(name, session.samples)
        stages = StageProgress()
        report = None if args.no_train else train(db, max_distance=settings.max_distance, progress=stages)
        stages.close()
    session.remove()
    _after_adding(store, name, report)
    return 0


def _warn_synthetic(topic: str, tell: str) -> None:
    print(f"sensorium gesture: warning: the stream on {topic} looks like the synthetic sensor, not a phone ({tell}): "
          "samples taken from it teach the scripted motions, not yours. Stream from your phone (README, "
          "'IMU and gestures') to teach your own.", file=sys.stderr, flush=True)


def _say(report: TrainReport, only: str | None = None) -> None:
    """What training decided about origins and loose gestures (all of it, or about one gesture)."""
    for line in report.lines():
        if only is None or line.startswith(f"{only}:"):
            print(line, file=sys.stderr)


def _after_adding(store: GestureStore, name: str, report: TrainReport | None) -> None:
    if report is not None:
        print(file=sys.stderr)
        _say(report, name)
    g = store.load().db.gesture(name)
    print(json.dumps(g.summary()))
    if report is not None and name in report.skipped:
        print(f"{name}: not trained yet ({report.skipped[name]})", file=sys.stderr)


def cmd_add(args: argparse.Namespace, store: GestureStore, settings: GestureSettings) -> int:
    name = valid_name(args.name)
    data = read_imu_file(args.source, topic=args.topic)
    for note in data.notes:
        print(f"{args.source}: {note}", file=sys.stderr)
    if tell := file_tell(data):
        _warn_synthetic(f"{args.source}", tell)
    cut = cut_sample(data, args.start, args.end, settings.segmentation, exact=args.exact)
    if cut.problems or cut.quality < args.min_quality:
        why = "; ".join(cut.problems) or f"quality {cut.quality:.2f} < --min-quality {args.min_quality:g}"
        raise StreamFileError(f"{args.source}: {args.start:g}..{args.end:g} s: the motion at {cut.t_start:.2f}.."
                              f"{cut.t_end:.2f} s is no usable sample ({why})")
    print(f"{name}: sample {cut.t_start:.2f}..{cut.t_end:.2f} s of {args.source} ({len(cut.sample.t)} readings, "
          f"quality {cut.quality:.2f})", file=sys.stderr)
    with store.edit() as db:
        db.add_samples(name, [cut.sample])
        stages = StageProgress()
        report = None if args.no_train else train(db, max_distance=settings.max_distance, progress=stages)
        stages.close()
    _after_adding(store, name, report)
    return 0


def cmd_train(args: argparse.Namespace, store: GestureStore, settings: GestureSettings) -> int:
    with store.edit() as db:
        if not db.gestures:
            raise StoreError(f"{store.path}: no gestures to train; record some first")
        stages = StageProgress()
        report = train(db, folds=args.folds, max_distance=settings.max_distance, progress=stages)
        stages.close()
    print(file=sys.stderr)
    for name, info in sorted(report.gestures.items()):
        print(f"{name:<16} samples {info['samples']:>3}  outliers removed {info['outliers_removed']:>2}  "
              f"accuracy {info['accuracy']:.2f}  consistency {info['consistency']:.2f}  v{info['version']}")
    for name, why in sorted(report.skipped.items()):
        print(f"{name:<16} not trained: {why} (at least {MIN_SAMPLES})")
    if report.accuracy is not None:
        print(f"cross-validation accuracy {report.accuracy:.3f} ({report.folds} folds, {report.seconds:.1f} s)")
    _say(report)
    return 0


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _origin(g: Gesture) -> str:
    """Whose samples define the gesture, in words."""
    if g.superseded:
        return f"yours ({g.user_samples}; {len(g.superseded)} shipped superseded)"
    if g.user_samples and g.shipped_samples:
        return f"yours ({g.user_samples}) + shipped ({g.shipped_samples})"
    return "shipped" if g.shipped_samples else "yours"


def cmd_list(args: argparse.Namespace, store: GestureStore, settings: GestureSettings) -> int:
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
              f"accuracy {fmt(g.accuracy)}  consistency {fmt(g.consistency)}  trained {_when(g.trained_at)}  "
              f"samples: {_origin(g)}")
    return 0


def cmd_show(args: argparse.Namespace, store: GestureStore, settings: GestureSettings) -> int:
    g = store.load().db.gesture(args.name)
    info = g.summary()
    info["samples_detail"] = [{"id": s.id, "readings": len(s.t), "duration_s": round(s.duration_s, 3),
                               "quality": s.quality, "source": s.source, "origin": s.origin,
                               "recorded_at": _when(s.recorded_at)}
                              for s in g.samples]
    info["outlier_ids"] = [s.id for s in g.outliers]
    info["superseded_ids"] = [s.id for s in g.superseded]
    print(json.dumps(info, indent=2))
    return 0


def cmd_delete(args: argparse.Namespace, store: GestureStore, settings: GestureSettings) -> int:
    if args.user:
        with store.edit() as db:
            g = db.gesture(args.name)
            if not g.user_samples:
                raise StoreError(f"{args.name!r} has no samples of yours (only {g.shipped_samples} shipped ones)")
            shipped = g.shipped_samples
            removed = db.remove_user_samples(args.name)
            report = train(db, max_distance=settings.max_distance) if args.name in db.gestures else None
        if report is None:
            print(f"deleted your {removed} sample(s) of {args.name!r}; it had no shipped ones, so it is gone "
                  f"(the previous store is in {store.file.backup_dir})", file=sys.stderr)
        else:
            print(f"deleted your {removed} sample(s) of {args.name!r}: its {shipped} shipped samples are in use "
                  f"again (the previous store is in {store.file.backup_dir})", file=sys.stderr)
        return 0
    with store.edit() as db:
        db.gesture(args.name)
        del db.gestures[args.name]
    print(f"deleted {args.name!r} (the previous store is in {store.file.backup_dir})", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace, store: GestureStore, settings: GestureSettings) -> int:
    n = store.export(args.file, args.names or None)
    print(f"exported {n} gestures to {args.file}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace, store: GestureStore, settings: GestureSettings) -> int:
    names = store.import_file(args.file, overwrite=args.overwrite)
    print(f"imported {', '.join(names)} from {args.file}", file=sys.stderr)
    return 0


ACTIONS = {"train": cmd_train, "list": cmd_list, "show": cmd_show, "delete": cmd_delete, "export": cmd_export,
           "import": cmd_import}
