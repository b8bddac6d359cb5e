"""Floods from their own process (no GIL shared with the test or bench that starts them).

``python -m tests.chaos.flood FRONTEND SECONDS [SENDERS]``: a heartbeat flood. A raw
pyzmq PUB on the broker's frontend sending valid ``sys.heartbeat`` messages from
made-up senders as fast as it can (pre-encoded, so the rate is the socket's, not
the encoder's), for SECONDS; prints ``{"sent": N, "rate_hz": R}``.

``python -m tests.chaos.flood topic FRONTEND SECONDS RATE_HZ SRC`` with a msgpack list
``[topic, body frame, array frames...]`` on stdin: one sender (SRC, one instance id)
sending that message with seq 0, 1, 2... as fast as it can (RATE_HZ 0) or paced,
for SECONDS. Prints ``{"sent": N, "rate_hz": R, "iid": IID}``: whoever started it
continues the sequence under that sender (``tests.chaos.attacks.account_flood``),
so that losses at the tail show up as a gap too.
"""

from __future__ import annotations

import json
import sys
import time

import msgpack
import zmq

from bus.envelope import Header, encode, encode_header
from bus.messages import Heartbeat
from bus.senders import new_instance_id

SETTLE_S = 0.3
"""The broker's subscriptions reach a new PUB (slow joiner); earlier sends would be lost."""


def _socket(frontend: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.LINGER, 10_000)
    sock.connect(frontend)
    time.sleep(SETTLE_S)
    return ctx, sock


def flood(frontend: str, seconds: float, senders: int = 1000) -> dict[str, float]:
    body = Heartbeat(state="ready", pid=1, uptime=1.0, counters={"in": 0, "out": 0, "dropped": 0, "gaps": 0,
                     "errors": 0}, latency_ms={"n": 0}, rss=1 << 20, kind="probe").to_body()
    ready = [[bytes(f) for f in encode(Heartbeat.TOPIC, Header(f"ghost@g{i}", 0, time.time_ns()), body)]
             for i in range(senders)]
    ctx, sock = _socket(frontend)
    sock.setsockopt(zmq.LINGER, 0)
    sent = 0
    start = time.monotonic()
    end = start + seconds
    send = sock.send_multipart
    while time.monotonic() < end:
        for frames in ready[:200]:
            send(frames)
        sent += 200
        ready.append(ready.pop(0))
    elapsed = time.monotonic() - start
    sock.close()
    ctx.term()
    return {"sent": sent, "seconds": round(elapsed, 2), "rate_hz": round(sent / elapsed)}


def topic_flood(frontend: str, seconds: float, rate_hz: float, src: str, parts: list[bytes]) -> dict[str, float]:
    topic, body, arrays = parts[0], parts[1], parts[2:]
    iid = new_instance_id()
    ctx, sock = _socket(frontend)
    sent = 0
    start = time.monotonic()
    end = start + seconds
    period = 1.0 / rate_hz if rate_hz > 0 else 0.0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if period and now < start + sent * period:
            time.sleep(min(start + sent * period - now, 0.01))  # pacing, not synchronisation
            continue
        head = encode_header(Header(src, sent, time.time_ns(), iid=iid))
        sock.send_multipart([topic, head, body, *arrays], copy=len(arrays) == 0)
        sent += 1
    elapsed = time.monotonic() - start
    sock.close()
    ctx.term()
    return {"sent": sent, "seconds": round(elapsed, 2), "rate_hz": round(sent / elapsed), "iid": iid}


if __name__ == "__main__":
    if sys.argv[1] == "topic":
        frames = msgpack.unpackb(sys.stdin.buffer.read())
        print(json.dumps(topic_flood(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], frames)))
    else:
        print(json.dumps(flood(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1000)))
