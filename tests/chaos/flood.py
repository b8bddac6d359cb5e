"""A heartbeat flood: ``python -m tests.chaos.flood FRONTEND SECONDS [SENDERS]``.

A raw pyzmq PUB on the broker's frontend sending valid ``sys.heartbeat``
messages from made-up senders as fast as it can (pre-encoded, so the rate is
the socket's, not the encoder's), for SECONDS; prints ``{"sent": N, "rate_hz": R}``.
A separate process, so that the flood does not share the test's GIL.
"""

from __future__ import annotations

import json
import sys
import time

import zmq

from bus.envelope import Header, encode
from bus.messages import Heartbeat


def flood(frontend: str, seconds: float, senders: int = 1000) -> dict[str, float]:
    body = Heartbeat(state="ready", pid=1, uptime=1.0, counters={"in": 0, "out": 0, "dropped": 0, "gaps": 0,
                     "errors": 0}, latency_ms={"n": 0}, rss=1 << 20, kind="probe").to_body()
    ready = [[bytes(f) for f in encode(Heartbeat.TOPIC, Header(f"ghost@g{i}", 0, time.time_ns()), body)]
             for i in range(senders)]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(frontend)
    time.sleep(0.3)  # the broker's subscriptions reach the PUB (slow joiner); earlier sends would be lost
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


if __name__ == "__main__":
    print(json.dumps(flood(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1000)))
