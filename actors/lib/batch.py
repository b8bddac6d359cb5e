"""Results of the batch commands (``sensorium batch audio``, ``batch events``).

A batch command runs the same building blocks as the actors (decoders,
segmenters, models) in one process as fast as the machine allows, with no
bus; the kind that owns it declares it in its spec (``group="batch"``).
Shared here: results as JSON lines appended and fsynced per record under a
lock (``run_with_output``), resumable (``read_done`` skips what is already
there and cuts off a torn last line).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from config.storage import LockTimeout, file_lock


def read_done(out: Path, retry_failed: bool, prog: str) -> set[str]:
    """Keys (``file`` field) of the records already in ``out``; cuts off a torn last line (a run killed
    mid-write). A record whose ``status`` is not ok counts as done unless ``retry_failed``."""
    if not out.exists():
        return set()
    raw = out.read_bytes()
    good = raw.rfind(b"\n") + 1
    if good < len(raw):
        print(f"{prog}: {out}: cutting off an unfinished last line ({len(raw) - good} bytes)", file=sys.stderr)
        with open(out, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    done = set()
    for record in iter_records(out, prog):
        if record.get("status") == "ok" or not retry_failed:
            done.add(record.get("file", ""))
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


def run_with_output(out: str, prog: str, retry_failed: bool, run: Callable[[TextIO, set[str]], int]) -> int:
    """Call ``run(sink, done)`` with the results file open for appending under its lock (``-``: stdout, nothing
    done). Appending rather than write_atomic: rewriting the whole file per record would make a long run
    quadratic, and a JSON-lines reader can tell a torn line from a whole one."""
    if out == "-":
        return run(sys.stdout, set())
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with file_lock(path, timeout_s=1.0):
            done = read_done(path, retry_failed, prog)
            with open(path, "a") as sink:
                return run(sink, done)
    except LockTimeout as exc:
        print(f"{prog}: another run is writing {path}: {exc}", file=sys.stderr)
        return 1
