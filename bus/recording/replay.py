"""``sensorium replay FILE``: publish a recording onto the bus again.

Timing: messages go out at their recorded receive times (``log_time``),
scaled by ``--speed`` (2: twice as fast); ``--speed 0`` sends as fast as
possible. Headers: the sender is the replay (``--src``, default ``replay``)
with its own seq per topic, so live subscribers count gaps and resets as
usual; the original ``ts`` (ns) and ``corr`` are kept. Body and array frames
are sent exactly as recorded.

Explicit choices: ``sys.*`` and ``ctl.*`` topics are skipped unless
``--topics`` names them (a replayed heartbeat or stop command would confuse
the live supervisor); ``--topics`` naming a topic absent from the file is an
error; a message of another envelope version, or one that no longer decodes,
is skipped and counted in the final report.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from bus.envelope import ENVELOPE_VERSION, EnvelopeError, decode, peek_version
from bus.pubsub import Publisher
from bus.recording import RecordingError, ScanReport, scan
from bus.topics import TopicError, validate_prefix
from bus.endpoints import runtime_paths
from config.schema import Config

SKIPPED_BY_DEFAULT = ("sys.", "ctl.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sensorium replay", description="Publish a recording onto the bus again.")
    p.add_argument("file", type=Path, help="the recording (MCAP) to publish")
    p.add_argument("--speed", type=float, default=1.0,
                   help="1: original timing, 2: twice as fast, 0: as fast as possible (default 1)")
    p.add_argument("--topics", nargs="+", metavar="TOPIC",
                   help="topics (exact) or prefixes ending in '.' to replay (default: all but sys.* and ctl.*)")
    p.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    p.add_argument("--src", default="replay", help="sender name in the replayed headers (default: replay)")
    p.add_argument("--wait", type=float, default=2.0, help="seconds to wait for a subscriber first")
    return p


def topic_filter(topics: list[str] | None):
    if not topics:
        return lambda t: not t.startswith(SKIPPED_BY_DEFAULT)
    exact = {t for t in topics if not t.endswith(".")}
    prefixes = tuple(t for t in topics if t.endswith("."))
    return lambda t: t in exact or t.startswith(prefixes)


@dataclass
class ReplayReport:
    sent: int = 0
    skipped_topics: Counter = field(default_factory=Counter)
    """Messages not replayed because of the topic selection (sys.*/ctl.* by default)."""
    other_versions: Counter = field(default_factory=Counter)
    """Messages skipped because their envelope version is not ours, by version."""
    undecodable: int = 0
    """Messages skipped because they no longer decode (framing or body)."""
    gap_records: int = 0
    passes: int = 0
    listened: bool = False
    damage: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"replay: {self.sent} message(s) sent in {self.passes} pass(es)"]
        if self.skipped_topics:
            out.append("replay: not selected: " + ", ".join(f"{t} ({n})" for t, n in sorted(self.skipped_topics.items())))
        for v, n in sorted(self.other_versions.items(), key=str):
            out.append(f"replay: skipped {n} message(s) of envelope version {v!r}: this replay speaks "
                       f"version {ENVELOPE_VERSION} only")
        if self.undecodable:
            out.append(f"replay: skipped {self.undecodable} message(s) that no longer decode")
        out.extend(f"replay: {line}" for line in self.damage)
        return out


def file_topics(file: Path) -> set[str]:
    seen: set[str] = set()
    for _ in scan(file, topics=lambda t: seen.add(t) or False):
        pass
    return seen


def replay(config: Config, file: Path, *, speed: float = 1.0, topics: list[str] | None = None, loop: bool = False,
           src: str = "replay", wait_s: float = 2.0, stop: threading.Event | None = None) -> ReplayReport:
    """Publish ``file``'s messages; raises RecordingError (not a recording) or ValueError (bad --topics)."""
    for t in topics or []:
        try:
            validate_prefix(t)
        except TopicError as exc:
            raise ValueError(f"--topics: {exc}") from None
    present = file_topics(file)
    missing = [t for t in topics or [] if not any(p == t or (t.endswith(".") and p.startswith(t)) for p in present)]
    if missing:
        raise ValueError(f"{file}: no messages on {', '.join(missing)}; the file has: {', '.join(sorted(present))}")
    wanted = topic_filter(topics)
    stop = stop or threading.Event()
    report = ReplayReport()
    endpoints = runtime_paths(config).endpoints
    pub = Publisher(zmq.Context.instance(), endpoints.frontend, src, hwm=config.bus.hwm, linger_ms=5000,
                    direct_dir=endpoints.direct_dir)
    try:
        first = next((t for t in sorted(present) if wanted(t)), None)
        if first is not None:
            report.listened = pub.wait_for_subscriber(first, wait_s)
        while not stop.is_set():
            report.passes += 1
            scan_report = ScanReport(file)
            t0_wall = time.monotonic()
            t0_log: int | None = None
            for rec in scan(file, scan_report):
                if stop.is_set():
                    break
                if rec.kind == "gap":
                    report.gap_records += 1
                    continue
                if not wanted(rec.topic):
                    report.skipped_topics[rec.topic] += 1
                    continue
                try:
                    frames = rec.frames()
                except EnvelopeError:
                    report.undecodable += 1
                    continue
                version = peek_version(frames)
                if version != ENVELOPE_VERSION:
                    if version is None:
                        report.undecodable += 1
                    else:
                        report.other_versions[version] += 1
                    continue
                try:
                    header = decode(frames).header
                except EnvelopeError:
                    report.undecodable += 1
                    continue
                if speed > 0:
                    if t0_log is None:
                        t0_log = rec.log_time_ns
                    due = t0_wall + (rec.log_time_ns - t0_log) / 1e9 / speed
                    delay = due - time.monotonic()
                    if delay > 0 and _sleep_unless_stopped(stop, delay):
                        break
                pub.publish_frames(frames, ts=header.ts, corr=header.corr)
                report.sent += 1
            if report.passes == 1 or not loop:
                report.damage = scan_report.describe()
            if not loop:
                break
    finally:
        pub.close()
    return report


def _sleep_unless_stopped(stop: threading.Event, delay_s: float) -> bool:
    """Sleep ``delay_s``; True, early, once ``stop`` is set (within 50 ms).

    Not ``stop.wait``: the signal handler of ``main`` sets ``stop`` on this thread, between two bytecodes,
    and would wait forever for the event's lock if it landed where ``wait`` holds it. ``is_set`` takes none."""
    end = time.monotonic() + delay_s
    while not stop.is_set():
        left = end - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.05))
    return True


def main(argv: list[str], config: Config) -> int:
    args = build_parser().parse_args(argv)
    if args.speed < 0:
        print("sensorium replay: --speed must be >= 0 (0: as fast as possible)", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        report = replay(config, args.file, speed=args.speed, topics=args.topics, loop=args.loop, src=args.src,
                        wait_s=args.wait, stop=stop)
    except (RecordingError, ValueError, OSError) as exc:
        print(f"sensorium replay: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line, file=sys.stderr)
    if not report.listened and report.sent:
        print("replay: nobody subscribed to the replayed topics: the bus dropped the messages", file=sys.stderr)
    return 1 if report.damage else 0
