"""``sensorium batch events DIR [--per-user] [--out FILE]``: sound events for a folder of recordings.

The nightly job of a laughter detector: every file is decoded in 10 s chunks
(``actors.lib.audio.decode.decode_file``, streaming: a 30-minute file is never
whole in memory) and run through the audio_events actor's ``EventDetector``
with one classifier loaded once for the whole run.

Output, JSON lines (``--out FILE`` makes it resumable, see ``actors.lib.batch``):

* per file: ``kind = "file"``, ``user``, ``file``, ``status`` ok/error,
  ``error``, ``duration_s``, ``events`` [{label, score, t_start, t_end}],
  ``counts`` {label: n}, ``patches``, ``wall_s``, ``rtf``;
* with ``--per-user`` (each sub-folder of DIR is a user, files directly in
  DIR belong to user ``.``), after a user's last file: ``kind = "user"``,
  ``file = "user:NAME"``, ``files``, ``failed``, ``duration_s``, ``counts``
  and ``seconds`` per label, ``times`` per label (file, t_start, t_end; the
  first ``--max-times`` by file path and time), ``events_per_hour``,
  ``rss_bytes`` (RSS after the user: what stays for the next; on a cluster,
  of the worker that ran the user's last file). A user's summary is built
  from its file lines, those of an earlier interrupted run included.

A bad file is one error line (and one line on stderr); the run goes on.
``--cleanup`` runs what the product this replaces did between users (one process only)
(``gc``, ``clear_session``, ``malloc_trim``); bench/events.py measures
whether any of it helps (it does not, so the default is none).
Exit code 0 when every file has an ok line, 1 when a file failed (in this run, or
in an earlier one and skipped), 2 when the classifier cannot be loaded (the
message names the file). At the end the results file holds one line per file
and per user (a retried file's newest).

``--workers N`` / ``--scheduler ADDRESS`` run the files on a Dask cluster
(``actors.lib.executor``): the same lines, in the order files finish.
"""

from __future__ import annotations

import argparse
import bisect
import ctypes
import gc
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psutil

from actors.lib.audio.decode import RATE_HZ, AudioInputError, audio_files, decode_file
from actors.lib.batch import Done, iter_records, run_with_output, write_record
from actors.lib.executor import (BatchSetupError, ClusterError, Deadline, Task, add_cluster_args,
                                 executor_from_args)
from actors.lib.progress import progress as progress_bar
from actors.audio_events.settings import AudioEventsSettings
from config.schema import Config
from config.storage import CorruptFileError

PROG = "batch events"
CHUNK_SAMPLES = 10 * RATE_HZ
"""10 s per decode step: ~21 patches per model call, a bounded buffer."""
CLEANUPS = ("gc", "clear_session", "malloc_trim")


def parse_args(argv: list[str]) -> argparse.Namespace:
    d = AudioEventsSettings()
    parser = argparse.ArgumentParser(
        prog=f"sensorium {PROG}",
        description="Sound events (laughter, clapping, alarms, speech) for a folder of recordings: one JSON line "
        "per file, and with --per-user one summary line per user. With --out the run is resumable. Exit 0 when "
        "every file has an ok line, 1 when one failed (in this run or an earlier one), 2 when the classifier "
        "cannot be loaded.")
    parser.add_argument("dir", type=Path, help="folder of recordings (searched recursively), or one file")
    parser.add_argument("--per-user", action="store_true", help="each sub-folder of DIR is a user: one summary each")
    parser.add_argument("--out", default="-", help="JSON lines file (resumable); '-' (default): stdout")
    parser.add_argument("--retry-failed", action="store_true", help="redo files whose line in --out is an error")
    parser.add_argument("--model", default=d.model, choices=["head", "yamnet"],
                        help="head: the shipped classifier (alarm, clapping, laughter, speech, noise, silence); "
                        "yamnet: YAMNet from --yamnet-weights and --yamnet-class-map (default %(default)s)")
    parser.add_argument("--head", default=d.head_path, help="sealed head weights (default: the shipped head)")
    parser.add_argument("--yamnet-weights", default="", help="yamnet.h5 (with --model yamnet)")
    parser.add_argument("--yamnet-class-map", default="", help="yamnet_class_map.csv (with --model yamnet)")
    parser.add_argument("--threshold", type=float, default=d.threshold, help="default per-class threshold")
    parser.add_argument("--thresholds", default="", help="per-class thresholds, e.g. laughter=0.6,alarm=0.4")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default %(default)s)")
    parser.add_argument("--max-times", type=int, default=200, help="event times kept per label in a user summary")
    parser.add_argument("--cleanup", default="", help=f"between users, comma-separated: {', '.join(CLEANUPS)}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_cluster_args(parser)
    args = parser.parse_args(argv)
    try:
        args.thresholds = {k.strip(): float(v) for k, v in (p.split("=", 1) for p in args.thresholds.split(",") if p)}
    except ValueError:
        parser.error(f"--thresholds {args.thresholds!r}: expected LABEL=VALUE[,LABEL=VALUE...]")
    if args.model == "yamnet" and not (args.yamnet_weights and args.yamnet_class_map):
        parser.error("--model yamnet needs --yamnet-weights (yamnet.h5) and --yamnet-class-map (yamnet_class_map.csv)")
    args.cleanup = [c for c in args.cleanup.split(",") if c]
    bad = sorted(set(args.cleanup) - set(CLEANUPS))
    if bad:
        parser.error(f"--cleanup {bad}: expected some of {', '.join(CLEANUPS)}")
    return args


def users_of(folder: Path, per_user: bool) -> dict[str, list[Path]]:
    """User -> files, in sorted order; without --per-user every file is user ``.``."""
    users: dict[str, list[Path]] = defaultdict(list)
    for path in audio_files(folder):
        rel = path.relative_to(folder) if folder.is_dir() else Path(path.name)
        users[rel.parts[0] if per_user and len(rel.parts) > 1 else "."].append(path)
    return dict(sorted(users.items()))


def process_file(path: Path, user: str, detector_factory: Any, progress: Any = None,
                 deadline: Deadline | None = None) -> dict[str, Any]:
    """One file's record; an AudioInputError becomes status 'error' with the events found before it.
    ``deadline`` is checked after each chunk (``FileTimeLimit`` goes to the executor)."""
    detector = detector_factory(path.name)
    events = []
    decoded = 0
    started = time.monotonic()
    record: dict[str, Any] = {"kind": "file", "user": user, "file": str(path.resolve()), "status": "ok", "error": ""}
    try:
        for pcm in decode_file(path, CHUNK_SAMPLES):
            decoded += pcm.size
            events.extend(detector.feed(pcm))
            if deadline is not None:
                deadline.check()
            if progress is not None:
                progress.set_postfix_str(f"{user}/{path.name} {decoded / RATE_HZ:.0f} s", refresh=False)
    except AudioInputError as exc:
        record.update(status="error", error=str(exc))
    events.extend(detector.flush())
    wall = time.monotonic() - started
    duration = decoded / RATE_HZ
    record.update(duration_s=round(duration, 3),
                  events=[{"label": e.label, "score": e.score, "t_start": e.t_start, "t_end": e.t_end} for e in events],
                  counts=dict(Counter(e.label for e in events)), patches=detector.patches, wall_s=round(wall, 3),
                  rtf=round(wall / duration, 5) if duration else None)
    return record


class UserSummary:
    """Accumulates a user's file records into the per-user line (bounded: ``max_times`` times per label).

    The times kept are the first ``max_times`` by (file path, t_start), whatever order the files finish in
    (one process: file order; a cluster: as they complete), so a summary does not depend on the executor."""

    def __init__(self, user: str, max_times: int) -> None:
        self.user, self.max_times = user, max_times
        self.files = self.failed = 0
        self.duration_s = 0.0
        self.counts: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.times: dict[str, list[tuple[str, float, float, str]]] = defaultdict(list)

    def add(self, record: dict[str, Any]) -> None:
        self.files += 1
        self.failed += record.get("status") != "ok"
        self.duration_s += record.get("duration_s", 0.0)
        path = record["file"]
        name = Path(path).name
        for e in record.get("events", []):
            self.counts[e["label"]] += 1
            self.seconds[e["label"]] += e["t_end"] - e["t_start"]
            kept = self.times[e["label"]]
            entry = (path, e["t_start"], e["t_end"], name)
            if len(kept) < self.max_times or entry < kept[-1]:
                bisect.insort(kept, entry)
                del kept[self.max_times:]

    def record(self) -> dict[str, Any]:
        hours = self.duration_s / 3600
        return {"kind": "user", "user": self.user, "file": f"user:{self.user}",
                "status": "ok" if not self.failed else "error",
                "error": f"{self.failed} of {self.files} files failed" if self.failed else "",
                "files": self.files, "failed": self.failed, "duration_s": round(self.duration_s, 3),
                "counts": dict(sorted(self.counts.items())),
                "seconds": {k: round(v, 2) for k, v in sorted(self.seconds.items())},
                "events_per_hour": {k: round(v / hours, 2) for k, v in sorted(self.counts.items())} if hours else {},
                "times": {label: [[name, t0, t1] for _path, t0, t1, name in kept]
                          for label, kept in sorted(self.times.items())}}


@dataclass(frozen=True)
class EventsJob:
    """The classifier settings of a run (picklable: on a cluster each worker loads the classifier from them)."""

    model: str
    head: str
    yamnet_weights: str
    yamnet_class_map: str
    threads: int
    thresholds: tuple[tuple[str, float], ...]
    threshold: float

    def setup(self) -> tuple[Any, Any]:
        from actors.audio_events.detector import TrackerParams  # noqa: PLC0415 - imports TensorFlow
        from actors.audio_events.model import ModelFileError, load_classifier  # noqa: PLC0415
        from actors.audio_events.yamnet import YamnetWeightsError  # noqa: PLC0415

        d = AudioEventsSettings()
        try:
            classifier = load_classifier(self.model, self.head, self.yamnet_weights, self.yamnet_class_map,
                                         self.threads, 1)
            params = TrackerParams.build(classifier.labels, dict(self.thresholds), self.threshold, d.report,
                                         d.ignore, d.min_patches, self.model)
        except (CorruptFileError, ModelFileError, YamnetWeightsError, ValueError) as exc:
            raise BatchSetupError(str(exc)) from exc
        return classifier, params

    def run(self, state: tuple[Any, Any], task: Task, deadline: Deadline, progress: Any = None) -> dict[str, Any]:
        from actors.audio_events.detector import EventDetector  # noqa: PLC0415

        classifier, params = state
        return process_file(Path(task.path), task.user, lambda name: EventDetector(classifier, params, stream=name),
                            progress, deadline)

    def failed(self, task: Task, error: str) -> dict[str, Any]:
        return {"kind": "file", "user": task.user, "file": task.path, "status": "error", "error": error,
                "duration_s": 0.0, "events": [], "counts": {}, "patches": 0, "wall_s": 0.0, "rtf": None}


def cleanup(steps: list[str]) -> None:
    """What the replaced product did between users, on request (measured by bench/events.py)."""
    if "clear_session" in steps:
        from actors.audio_events.tfruntime import keras  # noqa: PLC0415

        keras().backend.clear_session()
    if "gc" in steps:
        for _ in range(10):
            gc.collect()
    if "malloc_trim" in steps:
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run(args: argparse.Namespace, sink: TextIO, done: Done) -> int:
    if not args.dir.exists():
        print(f"{PROG}: {args.dir} does not exist", file=sys.stderr)
        return 1
    users = users_of(args.dir, args.per_user)
    if not users:
        print(f"{PROG}: no audio files under {args.dir}", file=sys.stderr)
        return 1
    total = sum(len(files) for files in users.values())
    todo = {u: [f for f in files if str(f.resolve()) not in done] for u, files in users.items()}
    if args.per_user:
        todo = {u: files for u, files in todo.items() if files or f"user:{u}" not in done}
    n_todo = sum(len(files) for files in todo.values())
    if n_todo < total:
        print(f"{PROG}: {total - n_todo} of {total} files already done, skipped", file=sys.stderr)
    failed_before = done.failed_among(str(f.resolve()) for files in users.values() for f in files)
    if failed_before:
        print(f"{PROG}: {failed_before} of them failed in an earlier run (their lines say why; "
              "--retry-failed redoes them)", file=sys.stderr)
    if not n_todo and not (args.per_user and todo):  # per user, a summary an interrupted run left out is due
        return 1 if failed_before else 0

    out_path = Path(args.out) if args.out != "-" else None

    def summary_of(user: str) -> UserSummary:
        """A user's summary, started from its file lines of an earlier (interrupted) run."""
        summary = UserSummary(user, args.max_times)
        if args.per_user and out_path is not None and len(todo[user]) < len(users[user]):
            redo = {str(f.resolve()) for f in todo[user]}
            earlier: dict[str, dict] = {}  # the last line per file: a retried file has two
            for rec in iter_records(out_path, PROG):  # this user's files from an earlier run
                if rec.get("kind") == "file" and rec.get("user") == user and rec["file"] not in redo:
                    earlier[rec["file"]] = rec
            for rec in earlier.values():
                summary.add(rec)
        return summary

    def user_done(summary: UserSummary, rss_bytes: int) -> None:
        if args.per_user:
            # RSS after the user (and the cleanup) in the process that ran its last file: what one user
            # leaves behind for the next.
            write_record(sink, {**summary.record(), "rss_bytes": rss_bytes})

    job = EventsJob(args.model, args.head, args.yamnet_weights, args.yamnet_class_map, args.threads,
                    tuple(sorted(args.thresholds.items())), args.threshold)
    try:
        executor = executor_from_args(args, PROG)
    except ClusterError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    failed = 0
    local = not (args.workers or args.scheduler)
    try:
        try:
            executor.prepare(job)
        except BatchSetupError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        for user in [u for u, files in todo.items() if not files]:  # only the summary is due
            user_done(summary_of(user), psutil.Process().memory_info().rss)
        remaining = {u: len(files) for u, files in todo.items() if files}
        open_users: dict[str, UserSummary] = {}
        tasks = (Task(str(f.resolve()), user) for user, files in todo.items() for f in files)
        with progress_bar(total=n_todo, unit="file", file=sys.stderr, disable=args.no_progress,
                          desc=PROG) as progress:
            for outcome in executor.results(tasks, progress):
                record, user = outcome.record, outcome.task.user
                if record["status"] != "ok":
                    failed += 1
                    progress.write(f"{PROG}: {record['error']}", file=sys.stderr)
                write_record(sink, record)
                if user not in open_users:
                    open_users[user] = summary_of(user)
                open_users[user].add(record)
                progress.update(1)
                remaining[user] -= 1
                if not remaining[user]:
                    rss = outcome.rss_bytes
                    if local:  # a cluster's workers run many users at once: no "between users" there
                        cleanup(args.cleanup)
                        rss = psutil.Process().memory_info().rss
                    user_done(open_users.pop(user), rss)
    finally:
        executor.close()
    print(f"{PROG}: {n_todo - failed} ok, {failed} failed", file=sys.stderr)
    return 1 if failed or failed_before else 0


def main(argv: list[str], config: Config) -> int:
    args = parse_args(argv)
    return run_with_output(args.out, PROG, args.retry_failed, lambda sink, done: run(args, sink, done))
