"""Bus-side command-line tools: ``tap`` prints messages, ``inject`` publishes them,
``ctl`` sends one actor a command and prints its answer.

``tap`` of a latched topic (``sensor.state``, ``monitor.active_alerts``,
``sys.actor``) prints its current value at once, marked ``"latched": true``.

All speak only to the broker's endpoints, so they work from any terminal or
script while ``sensorium run`` is up. Output goes to stdout; what the tools
say about themselves (and any log line of the bus code) goes to stderr, so a
pipe gets JSON lines only.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import time
import uuid
from typing import Any, Callable, Iterable, TextIO

import numpy as np
import zmq

from bus.direct import folder_for
from bus.endpoints import runtime_paths
from bus.envelope import Message
from bus.messages import Command, CommandReply
from bus.pubsub import Publisher, Subscriber
from bus.topics import ctl_topic, validate_topic
from config.schema import Config


def _json_default(full: bool) -> Callable[[Any], Any]:
    """What json.dumps makes of arrays, bytes and numpy scalars: summaries unless ``full``."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            if full:
                return obj.tolist()
            return {"dtype": str(obj.dtype), "shape": list(obj.shape)}
        if isinstance(obj, (bytes, bytearray, memoryview)):
            data = bytes(obj)
            return {"base64": base64.b64encode(data).decode()} if full else {"bytes": len(data)}
        if isinstance(obj, np.generic):
            return obj.item()
        return repr(obj)

    return default


def message_to_json(msg: Message, full: bool = False) -> str:
    """One JSON line: topic, src, seq, ts, corr, iid, host, ``latched: true`` on a last value the broker's
    cache replayed (sent before tap arrived), and body; arrays summarised unless ``full``."""
    record = {"topic": msg.topic, "src": msg.header.src, "seq": msg.header.seq, "ts": msg.header.ts,
              "body": msg.body}
    if msg.header.corr is not None:
        record["corr"] = msg.header.corr
    if msg.header.iid:  # the sender's instance and host (docs/wire.md, section 8)
        record["iid"] = msg.header.iid
    if msg.header.host:
        record["host"] = msg.header.host
    if msg.header.latched:
        record["latched"] = True
    return json.dumps(record, default=_json_default(full), separators=(",", ":"), allow_nan=True)


def tap(ctx: zmq.Context, frontend: str, backend: str, prefixes: Iterable[str], *, count: int | None = None,
        full: bool = False, out: TextIO = sys.stdout, timeout_s: float | None = None,
        on_listening: Callable[[], None] = lambda: None, direct: bool = False) -> int:
    """Print matching messages as JSON lines until ``count`` are printed or the timeout.

    ``on_listening`` is called once the broker holds the subscriptions, so a
    script knows from when on nothing is missed. Returns the number printed.
    ``direct``: read straight from this host's publishers over direct links (bus/direct.py), arrays through
    shared memory, instead of through the broker; ``on_listening`` is called after the first look for them.
    """
    if direct:
        folder = folder_for(frontend)
        if folder is None:
            raise ValueError(f"direct links need a bus on an absolute ipc:// path, not {frontend}")
        sub = Subscriber(ctx, None, prefixes=list(prefixes) or [""], direct_dir=folder)
    else:
        sub = Subscriber(ctx, backend, prefixes=list(prefixes) or [""])
    printed = 0
    end = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        if direct or sub.wait_subscribed(frontend, 10.0 if timeout_s is None else min(timeout_s, 10.0)):
            on_listening()
        while count is None or printed < count:
            if end is not None and time.monotonic() >= end:
                break
            msg = sub.recv(timeout_ms=200)
            if msg is None or msg.topic.startswith("sys.sync."):
                continue
            out.write(message_to_json(msg, full) + "\n")
            out.flush()
            printed += 1
    finally:
        sub.close()
    return printed


def parse_json_body(text: str) -> dict[str, Any]:
    """The body argument of ``inject``: a JSON object."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"body must be a JSON object, got {type(body).__name__}")
    return body


def inject(ctx: zmq.Context, frontend: str, topic: str, body: dict[str, Any], *, repeat: int = 1,
           rate_hz: float = 0.0, wait_s: float = 2.0, src: str | None = None) -> tuple[int, bool]:
    """Publish ``body`` on ``topic`` ``repeat`` times at ``rate_hz`` (0: as fast as possible).

    Waits up to ``wait_s`` for a subscriber first, because a message published
    before any subscription reaches the new socket is lost (ZeroMQ's slow
    joiner). Returns (messages sent, whether a subscriber was seen).
    """
    validate_topic(topic)
    pub = Publisher(ctx, frontend, src or f"inject@{socket.gethostname()}-{os.getpid()}", linger_ms=5000,
                    direct_dir=folder_for(frontend))
    try:
        listened = pub.wait_for_subscriber(topic, wait_s)
        period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        start = time.monotonic()
        for i in range(repeat):
            if period:
                delay = start + i * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pub.publish(topic, body)
        return repeat, listened
    finally:
        pub.close()


class NoReply(RuntimeError):
    """``ctl`` got no answer: nobody subscribes to the actor's ctl topic, or no reply within the time-out."""


def ctl(ctx: zmq.Context, frontend: str, backend: str, actor: str, cmd: str, args: dict[str, Any] | None = None,
        *, timeout_s: float = 10.0, src: str | None = None) -> Message:
    """Send ``Command(cmd, args)`` on ``ctl.<actor>`` and return the ``ctl.reply`` message with its corr.

    The reply subscription is in the broker before the command goes out, and
    the command waits for the actor's subscription (the slow joiner), both
    within ``timeout_s``. Raises NoReply saying which of the two never came.
    """
    host, _, remote_actor = actor.rpartition("/")
    if host:  # HOST/ACTOR: through the bridge linked to HOST, when its link allows commands (ctl = true)
        topic = validate_topic(f"ctl.to.{host.lower()}")
        body = {"actor": remote_actor, "cmd": cmd, "args": dict(args or {})}
    else:
        topic = ctl_topic(actor)
        body = Command(cmd, dict(args or {})).to_body()
    corr = uuid.uuid4().hex
    end = time.monotonic() + timeout_s
    sub = Subscriber(ctx, backend, topics=[CommandReply.TOPIC])
    pub = Publisher(ctx, frontend, src or f"ctl@{socket.gethostname()}-{os.getpid()}", linger_ms=1000,
                    direct_dir=folder_for(frontend))
    try:
        if not sub.wait_subscribed(frontend, max(end - time.monotonic(), 0.1)):
            raise NoReply(f"the broker at {backend} did not take the {CommandReply.TOPIC} subscription within "
                          f"{timeout_s:g} s (is `sensorium run` running with the same config?)")
        if not pub.wait_for_subscriber(topic, max(end - time.monotonic(), 0.1)):
            if host:
                raise NoReply(f"nobody subscribes to {topic} within {timeout_s:g} s: no running bridge has a "
                              f"peer {host!r} with ctl = true")
            raise NoReply(f"nobody subscribes to {topic} within {timeout_s:g} s: is actor {actor!r} running? "
                          "(`sensorium status` lists them)")
        pub.publish(topic, body, corr=corr)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise NoReply(f"{actor} did not answer {cmd!r} within {timeout_s:g} s (corr {corr})")
            msg = sub.recv(timeout_ms=max(1, int(min(left, 0.2) * 1000)))
            if msg is not None and msg.header.corr == corr:
                return msg
    finally:
        pub.close()
        sub.close()


def tap_main(argv: list[str], config: Config) -> int:
    """``sensorium tap [PREFIX...]``."""
    p = argparse.ArgumentParser(prog="sensorium tap", description="Print bus messages as JSON lines: "
                                '{"topic", "src", "seq", "ts", "body"} per message; arrays as {"dtype", "shape"}. '
                                'A latched topic\'s current value comes first, with "latched": true.')
    p.add_argument("prefixes", nargs="*", metavar="PREFIX",
                   help="topics (exact) or prefixes ending in '.' (default: everything)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--full", action="store_true", help="print arrays in full instead of dtype and shape")
    p.add_argument("--direct", action="store_true",
                   help="read straight from this host's publishers (direct links, no broker; arrays through shared "
                        "memory); outside publishers and latched values are not heard")
    args = p.parse_args(argv)
    endpoints = runtime_paths(config).endpoints
    if args.direct and endpoints.direct_dir is None:
        print(f"tap: --direct needs a bus on an ipc:// path, not {endpoints.frontend}", file=sys.stderr)
        return 2
    try:
        tap(zmq.Context.instance(), endpoints.frontend, endpoints.backend, args.prefixes, count=args.count,
            full=args.full, timeout_s=args.timeout, direct=args.direct,
            on_listening=lambda: print(f"tap: listening to {' '.join(args.prefixes) or 'everything'}",
                                       file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        pass  # a reader that closed the pipe (tap | head) is handled for every command (supervisor._as_a_tool)
    return 0


def inject_main(argv: list[str], config: Config) -> int:
    """``sensorium inject TOPIC JSON``; exit 1 when nobody subscribes to TOPIC."""
    p = argparse.ArgumentParser(prog="sensorium inject", description="Publish a message built from JSON.")
    p.add_argument("topic", help="the topic, e.g. test.hello")
    p.add_argument("body", metavar="JSON", help='the body, a JSON object, e.g. \'{"n": 1}\'')
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="publish it N times (default 1)")
    p.add_argument("--rate", type=float, default=0.0, metavar="HZ", help="messages per second (0: at once)")
    p.add_argument("--wait", type=float, default=2.0, metavar="S",
                   help="seconds to wait for a subscriber first (default 2)")
    args = p.parse_args(argv)
    try:
        body = parse_json_body(args.body)
        sent, listened = inject(zmq.Context.instance(), runtime_paths(config).endpoints.frontend, args.topic, body,
                                repeat=args.repeat, rate_hz=args.rate, wait_s=args.wait)
    except ValueError as exc:
        print(f"sensorium inject: {exc}", file=sys.stderr)
        return 1
    if not listened:
        print(f"sensorium: nobody subscribes to {args.topic}; {sent} message(s) published and dropped "
              "by the bus", file=sys.stderr)
        return 1
    print(f"published {sent} message(s) on {args.topic}", file=sys.stderr)
    return 0


def ctl_main(argv: list[str], config: Config) -> int:
    """``sensorium ctl ACTOR CMD [JSON]``: exit 0 on an ok reply, 1 on an error reply, 2 on no reply."""
    p = argparse.ArgumentParser(
        prog="sensorium ctl", description="Send one actor a command on ctl.ACTOR and print its reply (from "
        "ctl.reply, matched by corr) as one JSON line: actor, cmd, ok, result, error. Every actor answers stop, "
        "ping and stats; kinds add their own (e.g. the detector's heads, load_head, promote, rollback). Exit 0 "
        "when the reply is ok, 1 when it is an error, 2 when no reply came.")
    p.add_argument("actor", help="the actor's name, as in the config (e.g. detector, probe@echo); HOST/ACTOR for "
                   "an actor of another host, through a bridge whose link to HOST has ctl = true on both sides")
    p.add_argument("cmd", metavar="CMD", help="the command: stop, ping, stats or one of the kind's")
    p.add_argument("args", metavar="JSON", nargs="?", default="{}",
                   help='the command\'s arguments, a JSON object (default {}), e.g. \'{"signal": "wifi_24"}\'')
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the actor and its reply (default 10)")
    args = p.parse_args(argv)
    endpoints = runtime_paths(config).endpoints
    try:
        body = parse_json_body(args.args)
        msg = ctl(zmq.Context.instance(), endpoints.frontend, endpoints.backend, args.actor, args.cmd, body,
                  timeout_s=args.timeout)
    except ValueError as exc:
        print(f"sensorium ctl: {exc}", file=sys.stderr)
        return 2
    except NoReply as exc:
        print(f"sensorium ctl: {exc}", file=sys.stderr)
        return 2
    reply = dict(msg.body)
    print(json.dumps(reply, default=_json_default(False), separators=(",", ":"), allow_nan=True), flush=True)
    if not reply.get("ok"):
        print(f"sensorium ctl: {args.actor} {args.cmd}: {reply.get('error') or 'error reply'}", file=sys.stderr)
        return 1
    return 0
