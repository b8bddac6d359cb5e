"""``sensorium record FILE [PREFIX...]``: record bus topics to an MCAP file, no actor needed.

Runs until Ctrl-C/SIGTERM, ``--duration`` or ``--count``; then closes the file
properly. Killed harder than that, it leaves ``FILE.active``, which holds
everything up to the last flush (``--flush``, default 1 s) and which
``sensorium info --recover FILE.active`` turns into a closed ``FILE``. A full
disk stops it early (exit 1) and usually leaves ``FILE.active`` too (no room
for the summary): its last line names the file it left, closed or not.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import zmq

from bus.envelope import Limits, now_ns
from bus.pubsub import Subscriber
from bus.endpoints import runtime_paths
from bus.recording import ACTIVE_SUFFIX, COMPRESSIONS, RecordingSession, SessionSettings
from config.schema import Config

RECORD_HWM = 200_000
"""Receive queue of the recording socket, messages: bursts wait here rather than drop."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sensorium record", description="Record bus topics to an MCAP file.")
    p.add_argument("file", type=Path, help="the recording to write (must not exist)")
    p.add_argument("prefixes", nargs="*", metavar="PREFIX",
                   help="topics (exact) or prefixes ending in '.'; default: everything")
    p.add_argument("--duration", type=float, help="stop after S seconds")
    p.add_argument("--count", type=int, help="stop after N messages")
    p.add_argument("--flush", type=float, default=1.0, metavar="S",
                   help="close the chunk and fsync at least this often: a crash loses at most this (default 1)")
    p.add_argument("--compression", choices=sorted(COMPRESSIONS), default="none",
                   help="chunk compression (default none)")
    p.add_argument("--no-fsync", action="store_true", help="flush to the OS only (survives a process crash, "
                   "not a power cut)")
    return p


def record(config: Config, file: Path, prefixes: list[str], *, duration_s: float | None = None,
           count: int | None = None, settings: SessionSettings = SessionSettings(),
           stop: threading.Event | None = None, on_listening: Callable[[], None] = lambda: None,
           ) -> RecordingSession:
    """Record until ``stop`` is set, the duration or the count; returns the closed session."""
    paths = runtime_paths(config)
    ctx = zmq.Context.instance()
    sub = Subscriber(ctx, paths.endpoints.backend, hwm=RECORD_HWM,
                     limits=Limits(max_message_bytes=config.bus.max_message_bytes))
    sub.keep_frames = True
    for p in prefixes or [""]:
        sub.subscribe(p, exact=not (p == "" or p.endswith(".")))
    stop = stop or threading.Event()
    session = RecordingSession(lambda: file, settings,
                               meta={"recorder": "sensorium record", "prefixes": " ".join(prefixes) or "(all)"})
    try:
        if not sub.wait_subscribed(paths.endpoints.frontend, 10.0):
            print("sensorium record: the broker did not confirm the subscription within 10 s (is "
                  "`sensorium run` up?); recording anyway", file=sys.stderr)
        on_listening()
        end = None if duration_s is None else time.monotonic() + duration_s
        n = 0
        while not stop.is_set() and (count is None or n < count) and (end is None or time.monotonic() < end):
            msg = sub.recv(timeout_ms=100)
            if msg is None or msg.topic.startswith("sys.sync."):
                continue
            session.submit(msg, now_ns())
            n += 1
            if session.stats.state == "stopped":
                break
    finally:
        sub.close()
        session.close()
    return session


def main(argv: list[str], config: Config) -> int:
    args = build_parser().parse_args(argv)
    file: Path = args.file
    for existing in (file, file.with_name(file.name + ACTIVE_SUFFIX)):
        if existing.exists():
            hint = (f"; it was left by a crash: `sensorium info --recover {existing}`"
                    if existing.name.endswith(ACTIVE_SUFFIX) else "")
            print(f"sensorium record: {existing} exists, not overwriting it{hint}", file=sys.stderr)
            return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    settings = SessionSettings(flush_s=args.flush, compression=args.compression, fsync=not args.no_fsync)
    session = record(config, file, args.prefixes, duration_s=args.duration, count=args.count,
                     settings=settings, stop=stop,
                     on_listening=lambda: print(f"record: recording {' '.join(args.prefixes) or 'everything'} "
                                                f"to {file}", file=sys.stderr, flush=True))
    st = session.stats
    # The file as it is on disk: after a full disk that is FILE.active, not FILE.
    left = st.last_file.describe() if st.last_file else f"no file ({file} could not be started)"
    print(f"record: {st.messages} message(s), {st.bytes / 1e6:.1f} MB, {st.gaps} gap record(s), "
          f"{st.dropped} dropped -> {left}", file=sys.stderr)
    if st.state == "stopped":
        print(f"sensorium record: recording stopped early: {st.reason}", file=sys.stderr)
        return 1
    return 0
