"""Results of the batch commands (``sensorium batch audio``, ``batch events``).

A batch command runs the same building blocks as the actors (decoders,
segmenters, models) in one process as fast as the machine allows, with no
bus; the kind that owns it declares it in its spec (``group="batch"``).
Shared here: results as JSON lines appended and fsynced per record under a
lock (``run_with_output``), resumable (``read_done`` skips what is already
there and cuts off a torn last line). A key's newest line is its result: a
rerun skips the files whose newest line is ok, and those whose newest line is
an error unless ``--retry-failed``, and still exits 1 for the latter
(``Done.failed_among``): the exit code says whether the results file holds an
error for an input, whichever run wrote it. At the end of a run the file is
compacted to one line per key (``compact``, atomic), so after a retry a file
has one line, the retry's.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

from config.storage import LockTimeout, file_lock, write_atomic


@dataclass
class Done:
    """What a results file already holds, by key (the ``file`` field), judged by each key's newest line."""

    skip: set[str] = field(default_factory=set)
    """Keys not to run again: ok, or (without --retry-failed) failed."""
    failed: set[str] = field(default_factory=set)
    """Keys skipped although their newest line is an error: the run still exits 1 for them."""

    def __contains__(self, key: object) -> bool:
        return key in self.skip

    def failed_among(self, keys: Iterable[str]) -> int:
        """How many of ``keys`` (this run's inputs) are skipped with an error line."""
        return sum(key in self.failed for key in keys)


def read_done(out: Path, retry_failed: bool, prog: str) -> Done:
    """What ``out`` already holds; cuts off a torn last line (a run killed mid-write). A key whose newest
    record's ``status`` is not ok is skipped too, unless ``retry_failed``."""
    done = Done()
    if not out.exists():
        return done
    raw_size = out.stat().st_size
    with open(out, "rb") as f:
        f.seek(max(raw_size - 1, 0))
        ends_whole = raw_size == 0 or f.read(1) == b"\n"
    if not ends_whole:
        good = out.read_bytes().rfind(b"\n") + 1
        print(f"{prog}: {out}: cutting off an unfinished last line ({raw_size - good} bytes)", file=sys.stderr)
        with open(out, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    newest: dict[str, bool] = {}
    for record in iter_records(out, prog):
        newest[record.get("file", "")] = record.get("status") == "ok"
    for key, ok in newest.items():
        if ok or not retry_failed:
            done.skip.add(key)
        if not ok and not retry_failed:
            done.failed.add(key)
    return done


def iter_records(out: Path, prog: str) -> Iterator[dict[str, Any]]:
    """The JSON records of a results file, one line at a time (never the whole file in memory)."""
    with open(out, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                print(f"{prog}: {out}:{n}: not JSON, ignored", file=sys.stderr)


def write_record(sink: TextIO, record: dict[str, Any]) -> None:
    """One JSON line, flushed, and fsynced when the sink is a file: a crash loses at most the line being written."""
    sink.write(json.dumps(record, separators=(",", ":")) + "\n")
    sink.flush()
    if sink is not sys.stdout:
        os.fsync(sink.fileno())


def _key(line: bytes) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record.get("file") if isinstance(record, dict) else None


def compact(out: Path, prog: str) -> int:
    """Rewrite ``out`` with one line per key, its newest, where that line stands (a retried file's old
    error line goes); atomically (write_atomic), and only when some key has more than one line. Lines
    without a key are kept. Returns the number of lines dropped."""
    newest: dict[str, int] = {}
    keyed = 0
    with open(out, "rb") as f:
        for n, line in enumerate(f):
            key = _key(line)
            if key is not None:
                newest[key] = n
                keyed += 1
    dropped = keyed - len(newest)
    if dropped == 0:
        return 0
    keep = set(newest.values())
    with open(out, "rb") as f:
        kept = [line for n, line in enumerate(f) if n in keep or _key(line) is None]
    write_atomic(out, b"".join(kept))
    print(f"{prog}: {out}: {dropped} older line(s) of retried files replaced by their newest", file=sys.stderr)
    return dropped


def run_with_output(out: str, prog: str, retry_failed: bool, run: Callable[[TextIO, Done], int]) -> int:
    """Call ``run(sink, done)`` with the results file open for appending under its lock (``-``: stdout, nothing
    done), then compact it to one line per key. Appending while running rather than write_atomic per record:
    rewriting the whole file per record would make a long run quadratic, and a JSON-lines reader can tell a
    torn line from a whole one; the one rewrite is at the end, when a retry left a file two lines."""
    if out == "-":
        return run(sys.stdout, Done())
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with file_lock(path, timeout_s=1.0):
            done = read_done(path, retry_failed, prog)
            with open(path, "a") as sink:
                code = run(sink, done)
            compact(path, prog)
            return code
    except LockTimeout as exc:
        print(f"{prog}: another run is writing {path}: {exc}", file=sys.stderr)
        return 1
