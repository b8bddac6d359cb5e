"""``sensorium topic``: what is on the live bus, like ``ros2 topic``.

* ``topic list``: live topics with their type, publishers, rate and bandwidth;
* ``topic hz TOPIC`` / ``topic bw TOPIC``: messages/s and bytes/s, per window;
* ``topic info TOPIC``: type, publishers (name, kind, pid, host, instance), subscribers;
* ``topic schema TOPIC``: the JSON Schema of its body (``bus/schema.py``; no bus needed).

Measuring does not load the bus: every actor's heartbeat carries, per topic
it publishes, the messages and bytes sent since it started (``Heartbeat.topics``),
so rates are differences of two heartbeats of one sender divided by the time
between their header ``ts``. Only what has no heartbeat (an outside client
publishing with its own code) is measured by listening, and only when asked
(``--listen``) or when no heartbeat names the topic (``hz``/``bw``).

Subscribers: an actor's heartbeat lists what it subscribes to, so
``info`` counts the actors that receive a topic by name. Tools and outside
clients send no heartbeat; what the broker holds is shown too: a fresh
publisher connected to the broker is sent every distinct subscription
prefix (libzmq's XSUB does that), so ``info`` lists the prefixes that match
the topic. ZeroMQ merges equal prefixes of several subscribers into one, so
that is not a count of subscribers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, TextIO

import zmq

from bus.endpoints import EndpointError, runtime_paths
from bus.envelope import Message
from bus.messages import BodyError, Heartbeat
from bus.pubsub import Subscriber
from bus.schema import body_for_topic, json_schema
from config.schema import Config

HEARTBEAT_WINDOW_S = 2.5
"""Default listening time: long enough for two heartbeats (1/s) of every actor, seconds."""

Sender = tuple[str, str, str]
"""(host, src, iid)."""


@dataclass
class Beat:
    """One heartbeat as the tool keeps it."""

    ts_ns: int
    """Header ts, wall clock ns."""
    hb: Heartbeat


@dataclass
class TopicFigures:
    topic: str
    publishers: list[str] = field(default_factory=list)
    """``src`` of each sender that published it."""
    out: int = 0
    """Messages sent since the publishers started."""
    hz: float | None = None
    """Messages/s over the window (None: fewer than two heartbeats of any publisher)."""
    bytes_per_s: float | None = None
    source: str = "heartbeats"
    """Where the figures come from: ``heartbeats`` (publishers' counters) or ``listening``."""


def figures_from_heartbeats(beats: dict[Sender, list[Beat]]) -> dict[str, TopicFigures]:
    """Per topic: publishers, total sent, and rates from the first and last heartbeat of each sender.

    A pure function of the heartbeats: rates are counter differences over header-ts differences, summed
    over the senders of a topic.
    """
    out: dict[str, TopicFigures] = {}
    for (_host, src, _iid), seen in sorted(beats.items()):
        first, last = seen[0], seen[-1]
        dt = (last.ts_ns - first.ts_ns) / 1e9
        for topic, counts in sorted(last.hb.topics.items()):
            fig = out.setdefault(topic, TopicFigures(topic))
            fig.publishers.append(src)
            fig.out += int(counts.get("out", 0))
            if dt <= 0:
                continue
            before = first.hb.topics.get(topic, {"out": 0, "bytes": 0})
            hz = (counts.get("out", 0) - before.get("out", 0)) / dt
            bw = (counts.get("bytes", 0) - before.get("bytes", 0)) / dt
            fig.hz = (fig.hz or 0.0) + hz
            fig.bytes_per_s = (fig.bytes_per_s or 0.0) + bw
    return out


def subscribers_of(topic: str, beats: dict[Sender, list[Beat]]) -> list[str]:
    """Names of the actors whose heartbeat says they subscribe to ``topic``."""
    return sorted({src for (_h, src, _i), seen in beats.items() if _matches(topic, seen[-1].hb.subscriptions)})


def _matches(topic: str, subscriptions: Iterable[str]) -> bool:
    return any(topic.startswith(s[:-1]) if s.endswith("*") else topic == s for s in subscriptions)


class Bus:
    """The tool's own connection: heartbeats, optional listening, the broker's subscriptions."""

    def __init__(self, config: Config) -> None:
        self.endpoints = runtime_paths(config).endpoints
        self.ctx = zmq.Context.instance()

    def heartbeats(self, window_s: float, listen: Iterable[str] = ()) -> tuple[dict[Sender, list[Beat]],
                                                                              dict[str, "Listened"]]:
        """Heartbeats heard within ``window_s``, per sender; and what was heard on ``listen`` prefixes."""
        listen = list(listen)
        sub = Subscriber(self.ctx, self.endpoints.backend, ["sys.heartbeat"], prefixes=listen)
        beats: dict[Sender, list[Beat]] = {}
        listened: dict[str, Listened] = {}
        try:
            sub.wait_subscribed(self.endpoints.frontend, min(window_s, 5.0))
            end = time.monotonic() + window_s
            while (left := end - time.monotonic()) > 0:
                msg = sub.recv(timeout_ms=max(1, int(left * 1000)))
                if msg is None or msg.topic.startswith("sys.sync."):
                    continue
                if listen and any(msg.topic.startswith(p) for p in listen):
                    listened.setdefault(msg.topic, Listened(msg.topic)).add(msg)
                if msg.topic == "sys.heartbeat":
                    try:
                        hb = Heartbeat.from_body(msg.body)
                    except BodyError:
                        continue
                    beats.setdefault(msg.header.sender, []).append(Beat(msg.header.ts, hb))
        finally:
            sub.close()
        return beats, listened

    def broker_subscriptions(self, timeout_s: float = 1.0) -> list[str]:
        """Distinct subscription prefixes the broker holds, as a fresh publisher is told them."""
        sock = self.ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.LINGER, 0)
        found: set[str] = set()
        try:
            sock.connect(self.endpoints.frontend)
            end = time.monotonic() + timeout_s
            while (left := end - time.monotonic()) > 0:
                if not sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                    break
                raw = sock.recv()
                if raw[:1] == b"\x01":
                    found.add(raw[1:].decode("utf-8", "replace"))
                end = min(end, time.monotonic() + 0.2)  # they come at once; stop soon after the last
        finally:
            sock.close()
        return sorted(p for p in found if not p.startswith("sys.sync."))


@dataclass
class Listened:
    """What listening to one topic found."""

    topic: str
    count: int = 0
    nbytes: int = 0
    first_s: float = 0.0
    last_s: float = 0.0
    intervals: list[float] = field(default_factory=list)
    senders: dict[Sender, int] = field(default_factory=dict)

    def add(self, msg: Message) -> None:
        now = time.monotonic()
        if self.count:
            self.intervals.append(now - self.last_s)
        else:
            self.first_s = now
        self.last_s = now
        self.count += 1
        self.nbytes += msg.nbytes
        self.senders[msg.header.sender] = self.senders.get(msg.header.sender, 0) + 1

    def figures(self, window_s: float) -> TopicFigures:
        return TopicFigures(self.topic, sorted({s[1] for s in self.senders}), self.count,
                            self.count / window_s, self.nbytes / window_s, "listening")


# -- output ---------------------------------------------------------------------


def _type_name(topic: str) -> str:
    cls = body_for_topic(topic)
    return cls.__name__ if cls else "-"


def _fmt_rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "B/s":
        for step in ("B/s", "KB/s", "MB/s", "GB/s"):
            if abs(value) < 1000 or step == "GB/s":
                return f"{value:.1f} {step}"
            value /= 1000
    return f"{value:.2f} {unit}"


def _window_arg(p: argparse.ArgumentParser, default: float = HEARTBEAT_WINDOW_S) -> None:
    p.add_argument("--window", type=float, default=default, metavar="S",
                   help=f"seconds to listen per measurement (default {default}: two heartbeats of every actor)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sensorium topic", description="Live topics of the running bus "
                                "(rates from the publishers' heartbeat counters, so measuring does not load it).")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="live topics: type, publishers, rate, bandwidth",
                        description="Live topics: type, publishers, rate, bandwidth.")
    _window_arg(ls)
    ls.add_argument("--listen", action="store_true",
                    help="also listen to every topic for the window, to find publishers without heartbeats "
                         "(outside clients); this receives all traffic")
    ls.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    for name, what in (("hz", "messages per second"), ("bw", "bytes per second (all frames)")):
        m = sub.add_parser(name, help=f"{what} of one topic, one line per window",
                           description=f"The {what} of one topic, one line per window.")
        m.add_argument("topic", metavar="TOPIC", help="the exact topic, e.g. sensor.imu")
        _window_arg(m)
        m.add_argument("--count", type=int, default=0, metavar="N", help="stop after N windows (default 0: Ctrl-C)")
        m.add_argument("--listen", action="store_true",
                       help="measure by receiving the topic, even when publishers' heartbeats count it")
        m.add_argument("--json", action="store_true", help="JSON lines instead of text")
    info = sub.add_parser("info", help="type, schema, publishers (pid, host, instance), subscribers of one topic",
                          description="Type, schema, publishers (pid, host, instance) and subscribers of one topic.")
    info.add_argument("topic", metavar="TOPIC", help="the exact topic, e.g. sensor.imu")
    _window_arg(info)
    info.add_argument("--listen", action="store_true",
                      help="also receive the topic for the window, to find publishers without heartbeats")
    info.add_argument("--json", action="store_true", help="one JSON object instead of text")
    schema = sub.add_parser("schema", help="the JSON Schema of a topic's body (no running bus needed)",
                            description="The JSON Schema of a topic's body (no running bus needed).")
    schema.add_argument("topic", metavar="TOPIC", help="a topic (sensor.imu) or one of an area (detect.circle)")
    return p


def main(argv: list[str], config: Config, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    if args.action == "schema":
        cls = body_for_topic(args.topic)
        if cls is None:
            print(f"sensorium topic schema: no typed body is declared for {args.topic!r}", file=sys.stderr)
            return 1
        out.write(json.dumps(json_schema(cls), indent=2, ensure_ascii=False) + "\n")
        return 0
    if args.window <= 0:
        print("sensorium topic: --window must be > 0 seconds", file=sys.stderr)
        return 2
    try:
        bus = Bus(config)
        if args.action == "list":
            return _list(bus, args, out)
        if args.action == "info":
            return _info(bus, args, out)
        return _measure(bus, args, out)
    except (EndpointError, zmq.ZMQError) as exc:
        print(f"sensorium topic: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _list(bus: Bus, args: argparse.Namespace, out: TextIO) -> int:
    beats, listened = bus.heartbeats(args.window, [""] if args.listen else [])
    figures = figures_from_heartbeats(beats)
    for topic, heard in listened.items():
        if topic not in figures and topic != "sys.heartbeat":
            figures[topic] = heard.figures(args.window)
    if not beats and not figures:
        print(f"sensorium topic list: no heartbeat within {args.window} s: is 'sensorium run' up "
              f"(bus {bus.endpoints.backend})?", file=sys.stderr)
        return 1
    rows = [{"topic": t, "type": _type_name(t), "publishers": f.publishers, "out": f.out, "hz": f.hz,
             "bytes_per_s": f.bytes_per_s, "source": f.source} for t, f in sorted(figures.items())]
    if args.json:
        out.write(json.dumps({"window_s": args.window, "topics": rows}) + "\n")
        return 0
    table = [("TOPIC", "TYPE", "PUBLISHERS", "RATE", "BANDWIDTH")]
    for r in rows:
        table.append((r["topic"], r["type"], ",".join(r["publishers"]), _fmt_rate(r["hz"], "Hz"),
                      _fmt_rate(r["bytes_per_s"], "B/s") + ("" if r["source"] == "heartbeats" else " (listened)")))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    return 0


def _measure(bus: Bus, args: argparse.Namespace, out: TextIO) -> int:
    n = 0
    listen = args.listen
    while args.count <= 0 or n < args.count:
        beats, listened = bus.heartbeats(args.window, [args.topic] if listen else [])
        fig = None if listen else figures_from_heartbeats(beats).get(args.topic)
        if fig is None or fig.hz is None:
            if not listen:
                # Nobody's heartbeat counts it: receive the topic itself, from now on.
                listen = True
                _, listened = bus.heartbeats(args.window, [args.topic])
            heard = listened.get(args.topic)
            fig = heard.figures(args.window) if heard else TopicFigures(args.topic, source="listening", hz=0.0,
                                                                         bytes_per_s=0.0)
        else:
            heard = None
        record: dict[str, Any] = {"topic": args.topic, "hz": fig.hz, "bytes_per_s": fig.bytes_per_s,
                                  "publishers": fig.publishers, "source": fig.source, "window_s": args.window}
        if heard is not None and heard.intervals:
            iv = heard.intervals
            mean = sum(iv) / len(iv)
            record.update(min_s=min(iv), max_s=max(iv), std_s=math.sqrt(sum((x - mean) ** 2 for x in iv) / len(iv)))
        if args.json:
            out.write(json.dumps(record) + "\n")
        else:
            what = _fmt_rate(fig.hz, "Hz") if args.action == "hz" else _fmt_rate(fig.bytes_per_s, "B/s")
            detail = f"from {', '.join(fig.publishers)}'s counters" if fig.source == "heartbeats" else "listened"
            line = f"{args.topic}: {'average rate' if args.action == 'hz' else 'bandwidth'} {what} ({detail})"
            if "min_s" in record and args.action == "hz":
                line += f"  min {record['min_s']:.4f}s max {record['max_s']:.4f}s std dev {record['std_s']:.5f}s"
            out.write(line + "\n")
        out.flush()
        n += 1
    return 0


def _info(bus: Bus, args: argparse.Namespace, out: TextIO) -> int:
    topic = args.topic
    broker = [p for p in bus.broker_subscriptions() if topic.startswith(p)]  # before ours join them
    beats, listened = bus.heartbeats(args.window, [topic] if args.listen else [])
    publishers = []
    for (host, src, iid), seen in sorted(beats.items()):
        hb = seen[-1].hb
        if topic in hb.topics:
            publishers.append({"src": src, "kind": hb.kind, "pid": hb.pid, "host": host, "iid": iid,
                               "out": hb.topics[topic].get("out", 0), "heartbeat": True})
    heard = listened.get(topic)
    if heard is not None:
        known = {(p["host"], p["src"], p["iid"]) for p in publishers}
        for (host, src, iid), count in sorted(heard.senders.items()):
            if (host, src, iid) not in known:
                publishers.append({"src": src, "kind": "", "pid": None, "host": host, "iid": iid, "out": count,
                                   "heartbeat": False})
    subscribers = subscribers_of(topic, beats)
    cls = body_for_topic(topic)
    record = {"topic": topic, "type": cls.__name__ if cls else None, "schema": json_schema(cls) if cls else None,
              "publishers": publishers, "subscriber_count": len(subscribers), "subscribers": subscribers,
              "broker_subscriptions": broker}
    if args.json:
        out.write(json.dumps(record) + "\n")
        return 0
    out.write(f"Topic: {topic}\nType: {record['type'] or '- (no typed body declared)'}"
              + (f"  (schema: sensorium topic schema {topic})" if cls else "") + "\n")
    out.write(f"Publisher count: {len(publishers)}\n")
    for p in publishers:
        out.write(f"  {p['src']}  kind={p['kind'] or '-'}  pid={p['pid'] if p['pid'] is not None else '-'}  "
                  f"host={p['host'] or '-'}  iid={p['iid'] or '-'}  sent={p['out']}"
                  + ("" if p["heartbeat"] else "  (no heartbeat: heard by listening)") + "\n")
    out.write(f"Subscription count: {len(subscribers)} (actors, from their heartbeats)\n")
    for name in subscribers:
        out.write(f"  {name}\n")
    shown = ", ".join(repr(p) for p in broker) or "none"
    out.write(f"Broker subscriptions that match (distinct prefixes of every subscriber, tools included): {shown}\n")
    return 0
