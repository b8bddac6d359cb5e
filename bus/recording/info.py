"""``sensorium info FILE``: what a recording holds, and what it lost.

Topics with message counts, rates, sizes and senders; the time span; seq gaps
(the recorder's gap records); and, for a damaged file, what could not be
read. ``--recover`` turns a ``.active`` file left by a crash into a closed
recording first; a recovery that cannot complete (disk full) removes its
partial output, leaves the ``.active`` file as it was, and says so. Exit code:
0 intact, 1 damaged (read up to the damage), 2 not a recording, or not
readable, or not recovered.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.envelope import EnvelopeError
from bus.recording import ACTIVE_SUFFIX, RecordingError, ScanReport, recover, scan
from config.schema import Config


@dataclass
class TopicStats:
    count: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    senders: set[str] = field(default_factory=set)
    undecodable: int = 0

    def rate_hz(self) -> float | None:
        span = (self.last_ns - self.first_ns) / 1e9
        return (self.count - 1) / span if self.count > 1 and span > 0 else None


def summarize(file: Path) -> dict[str, Any]:
    """Everything ``info`` prints, as a JSON-ready dict; raises RecordingError."""
    report = ScanReport(file)
    topics: dict[str, TopicStats] = {}
    gaps: dict[tuple[str, str], int] = {}
    first = last = None
    for rec in scan(file, report):
        first = rec.log_time_ns if first is None else min(first, rec.log_time_ns)
        last = rec.log_time_ns if last is None else max(last, rec.log_time_ns)
        if rec.kind == "gap":
            g = rec.gap()
            key = (g.get("topic", "?"), g.get("src", "?"))
            gaps[key] = gaps.get(key, 0) + int(g.get("missed", 0))
            continue
        st = topics.setdefault(rec.topic, TopicStats(first_ns=rec.log_time_ns))
        st.count += 1
        st.bytes += len(rec.data)
        st.last_ns = rec.log_time_ns
        try:
            st.senders.add(rec.decode().header.src)
        except EnvelopeError:
            st.undecodable += 1
    duration = (last - first) / 1e9 if first is not None and last is not None else 0.0
    return {
        "file": str(file), "bytes": report.size, "complete": report.complete, "duration_s": round(duration, 3),
        "start_ns": first, "end_ns": last, "messages": sum(s.count for s in topics.values()),
        "topics": {t: {"count": s.count, "bytes": s.bytes, "rate_hz": None if s.rate_hz() is None else
                       round(s.rate_hz(), 2), "senders": sorted(s.senders), "undecodable": s.undecodable}
                   for t, s in sorted(topics.items())},
        "gaps": [{"topic": t, "src": src, "missed": n} for (t, src), n in sorted(gaps.items())],
        "metadata": report.metadata, "damage": report.describe(),
    }


def format_summary(s: dict[str, Any]) -> str:
    state = "closed properly" if s["complete"] else "NOT closed (crash or still being written)"
    lines = [f"{s['file']}: {s['bytes'] / 1e6:.2f} MB, {state}",
             f"messages: {s['messages']}  duration: {s['duration_s']:.3f} s"]
    rows = [("TOPIC", "COUNT", "RATE_HZ", "MB", "SENDERS")]
    for t, st in s["topics"].items():
        rate = "-" if st["rate_hz"] is None else f"{st['rate_hz']:.2f}"
        rows.append((t, str(st["count"]), rate, f"{st['bytes'] / 1e6:.2f}", ",".join(st["senders"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    missed = sum(g["missed"] for g in s["gaps"])
    lines.append(f"gaps: {missed} message(s) missed" + ("" if not missed else ": " + ", ".join(
        f"{g['topic']} from {g['src']}: {g['missed']}" for g in s["gaps"])))
    if "sensorium.recovery" in s["metadata"]:
        rec = s["metadata"]["sensorium.recovery"]
        lines.append(f"recovered from {rec.get('source')} after a crash: {rec.get('damage')}")
    for line in s["damage"]:
        lines.append(f"DAMAGE: {line}")
    return "\n".join(lines)


def main(argv: list[str], config: Config) -> int:
    p = argparse.ArgumentParser(prog="sensorium info", description="Summarize a recording (topics, counts, "
                                "rates, duration, gaps, damage).")
    p.add_argument("file", type=Path, help="the recording (MCAP) to summarize")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--recover", action="store_true",
                   help=f"FILE is a '{ACTIVE_SUFFIX}' file left by a crash: write the closed recording first")
    args = p.parse_args(argv)
    file: Path = args.file
    try:
        if args.recover:
            done = recover(file)
            print(f"info: recovered {done.messages} message(s) from {file} into {done.path}", file=sys.stderr)
            file = done.path
        summary = summarize(file)
    except (RecordingError, OSError) as exc:
        print(f"sensorium info: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 1 if summary["damage"] else 0
