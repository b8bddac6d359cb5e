"""``sensorium top``: a live terminal table of the actors, from ``monitor.health``.

One screen per health message (plain ANSI: home, clear, bold, colours for
stale actors and raised alerts), with the machine's figures on top and the
alerts currently raised below. Not a terminal (a pipe): plain text, one
frame after another. Needs the monitor actor running.

The alerts come from ``monitor.active_alerts``, the monitor's latched set of every
active alert: the broker's cache hands it over as ``top`` subscribes, so
alerts raised before it started show on its first screens.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

import zmq

from bus.endpoints import runtime_paths
from bus.messages import ActiveAlerts, Health
from bus.pubsub import Subscriber
from config.schema import Config

HOME_CLEAR = "\x1b[H\x1b[2J"
BOLD, DIM, RED, YELLOW, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[33m", "\x1b[0m"
COLUMNS = ("ACTOR", "KIND", "STATE", "PID", "CPU%", "RSS_MB", "THR", "FDS", "IN/s", "OUT/s", "DROP", "GAPS", "ERR",
           "P50_MS", "P99_MS", "HB_AGE")


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def render(health: dict[str, Any], alerts: dict[tuple[str, str], dict[str, Any]], *, color: bool,
           width: int = 200) -> str:
    """One screen of ``top`` from a monitor.health body and the raised alerts."""
    b = (lambda s: f"{BOLD}{s}{RESET}") if color else (lambda s: s)
    sysr, bus = health.get("system", {}), health.get("bus", {})
    head = (f"sensorium top  {time.strftime('%H:%M:%S')}  cpu {_num(sysr.get('cpu_percent'))}% of "
            f"{sysr.get('cpu_count', '?')}  mem {_num(sysr.get('memory_percent'))}%  "
            f"disk {_num(sysr.get('disk_percent'))}%  load {_num(sysr.get('load1'), '{:.2f}')}")
    for g in sysr.get("gpu", []):
        if "memory_used" in g:
            head += f"  gpu{g['index']} {g['memory_used'] / 2**20:.0f}/{g['memory_total'] / 2**20:.0f} MiB"
    bus_line = (f"bus  in {_num(bus.get('in_per_s'))}/s  out {_num(bus.get('out_per_s'))}/s  "
                f"dropped {bus.get('dropped', 0)}  gaps {bus.get('gaps', 0)}  errors {bus.get('errors', 0)}")
    rows = [COLUMNS]
    stale_rows = set()
    for name, a in sorted(health.get("actors", {}).items()):
        c, lat = a.get("counters", {}), a.get("latency_ms", {})
        rss = a.get("rss")
        rows.append((name, a.get("kind") or "-", a.get("state", "?"), str(a.get("pid", "-")),
                     _num(a.get("cpu_percent")), _num(None if rss is None else rss / 2**20),
                     _num(a.get("threads"), "{}"), _num(a.get("open_files"), "{}"), _num(a.get("in_per_s")),
                     _num(a.get("out_per_s")), str(c.get("dropped", 0)), str(c.get("gaps", 0)),
                     str(c.get("errors", 0)), _num(lat.get("p50"), "{:.2f}"), _num(lat.get("p99"), "{:.2f}"),
                     _num(a.get("heartbeat_age_s"))))
        if a.get("stale"):
            stale_rows.add(len(rows) - 1)
    links = health.get("links", {})
    for peer, link in sorted(links.items()):  # other hosts' actors, as their bridges last said
        for name, a in sorted((link.get("actors") or {}).items()):
            rows.append((f"{peer}/{name}", a.get("kind") or "-", a.get("state") or "?", str(a.get("pid") or "-"),
                         *["-"] * (len(COLUMNS) - 4)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [b(head), bus_line]
    for peer, link in sorted(links.items()):
        rtt, offset = link.get("rtt_ms"), link.get("clock_offset_ms")
        lines.append(f"link {peer}  {link.get('state', '?')}  rtt {_num(rtt, '{:.2f}')} ms  clock offset "
                     f"{_num(offset, '{:+.2f}')} ms  in {link.get('msgs_in', 0)}  out {link.get('msgs_out', 0)}  "
                     f"drops {link.get('drops_in', 0)}/{link.get('drops_out', 0)}  refused "
                     f"{link.get('refused_handshakes', 0)}")
    lines.append("")
    for i, r in enumerate(rows):
        line = "  ".join(cell.rjust(w) if 3 <= j else cell.ljust(w) for j, (cell, w) in enumerate(zip(r, widths)))
        line = line.rstrip()[:width]
        if i == 0:
            line = b(line)
        elif i in stale_rows and color:
            line = f"{DIM}{line}  (stale){RESET}"
        elif i in stale_rows:
            line += "  (stale)"
        lines.append(line)
    lines.append("")
    if alerts:
        lines.append(b(f"alerts raised ({len(alerts)}):"))
        for a in alerts.values():
            text = f"  {a.get('level', '?'):8} {a.get('metric')}  {a.get('message', '')}"[:width]
            colour = RED if a.get("level") == "critical" else YELLOW
            lines.append(f"{colour}{text}{RESET}" if color else text)
    else:
        lines.append("no alerts raised")
    return "\n".join(lines) + "\n"


def alerts_by_key(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The alerts of a ``monitor.active_alerts`` body by (metric, actor); entries that are not maps are skipped."""
    found = body.get("alerts")
    if not isinstance(found, list):
        return {}
    return {(a.get("metric", ""), a.get("actor", "")): a for a in found if isinstance(a, dict)}


def top(config: Config, *, count: int | None = None, timeout_s: float | None = None, out: TextIO = sys.stdout,
        color: bool | None = None) -> int:
    """Draw a screen per monitor.health until ``count`` screens or the timeout; returns screens drawn."""
    paths = runtime_paths(config)
    tty = out.isatty()
    color = tty if color is None else color
    sub = Subscriber(zmq.Context.instance(), paths.endpoints.backend, [Health.TOPIC, ActiveAlerts.TOPIC])
    alerts: dict[tuple[str, str], dict[str, Any]] = {}
    drawn = 0
    end = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        sub.wait_subscribed(paths.endpoints.frontend, 10.0)
        if tty:
            out.write(HOME_CLEAR + "waiting for monitor.health (is the monitor actor running?)\n")
            out.flush()
        while (count is None or drawn < count) and (end is None or time.monotonic() < end):
            msg = sub.recv(timeout_ms=200)
            if msg is None:
                continue
            if msg.topic == ActiveAlerts.TOPIC:
                alerts = alerts_by_key(msg.body)
                continue
            width = (os.get_terminal_size(out.fileno()).columns if tty else 0) or 200  # a new pty says 0
            out.write((HOME_CLEAR if tty else "") + render(msg.body, alerts, color=color, width=width))
            out.flush()
            drawn += 1
    finally:
        sub.close()
    return drawn


def main(argv: list[str], config: Config) -> int:
    p = argparse.ArgumentParser(prog="sensorium top", description="Live table of the actors and their figures "
                                "(from monitor.health). Ctrl-C quits.")
    p.add_argument("--count", type=int, help="quit after N screens")
    p.add_argument("--timeout", type=float, help="quit after S seconds")
    p.add_argument("--no-color", action="store_true", help="plain text, no colours (also when not a terminal)")
    args = p.parse_args(argv)
    try:
        drawn = top(config, count=args.count, timeout_s=args.timeout, color=False if args.no_color else None)
    except KeyboardInterrupt:
        return 0
    if drawn == 0:
        print("sensorium top: no monitor.health received (is the monitor actor running?)", file=sys.stderr)
        return 1
    return 0
