"""What a bridge decides, as small pure functions (unit-tested without sockets).

* ``exports_to``/``imports_from``: does a topic cross a link? Prefixes come
  from configuration only; ``ctl.`` crosses only when a prefix names it.
* ``clock_sample``: round trip and clock offset from one ping (NTP's formula).
* ``LinkWatch``: up, down or dialing, from what was heard and when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

CTL_PREFIX = "ctl."


def covers(prefixes: Sequence[str], topic: str) -> bool:
    """``topic`` starts with one of ``prefixes``; a ``ctl.`` topic only through a prefix that itself starts with
    ``ctl.`` (so '' or 'c' never sends commands across)."""
    if topic.startswith(CTL_PREFIX):
        return any(topic.startswith(p) and p.startswith(CTL_PREFIX) for p in prefixes)
    return any(topic.startswith(p) for p in prefixes)


def exports_to(topic: str, origin: str, own_host: str, exports: Sequence[str], peer_imports: Sequence[str]) -> bool:
    """Send this message to the peer? Only what originates here (never re-export: no loops), that our
    exports cover and the peer asked for."""
    return origin == own_host and covers(exports, topic) and covers(peer_imports, topic)


def imports_from(topic: str, origin: str, peer: str, imports: Sequence[str]) -> bool:
    """Take this message from the peer? Only the peer's own messages (a peer never relays a third host's),
    under our imports."""
    return origin == peer and covers(imports, topic)


@dataclass(frozen=True)
class ClockSample:
    rtt_ms: float
    """Round trip minus the peer's own processing time, milliseconds."""
    offset_ms: float
    """Peer clock minus our clock, milliseconds (add it to our time to get the peer's)."""


def clock_sample(t1: int, t2: int, t3: int, t4: int) -> ClockSample:
    """From a ping sent at t1 (our clock), received at t2 and answered at t3 (the peer's clock), and the answer
    received at t4 (our clock), all ns: NTP's round-trip delay and offset."""
    rtt = (t4 - t1) - (t3 - t2)
    offset = ((t2 - t1) + (t3 - t4)) / 2
    return ClockSample(rtt_ms=max(rtt, 0) / 1e6, offset_ms=offset / 1e6)


@dataclass
class LinkWatch:
    """One link's state from the monotonic times things happened (seconds)."""

    timeout_s: float
    last_heard: float | None = None
    """When anything (a ping, a pong, data) last came from the peer."""
    state: str = "down"
    changes: int = 0
    history: list[tuple[float, str]] = field(default_factory=list)

    def heard(self, now: float) -> bool:
        """Something came from the peer; True when that brought the link up."""
        self.last_heard = now
        return self._set("up", now)

    def check(self, now: float) -> bool:
        """Call periodically; True when the link just went down (nothing heard within the timeout)."""
        if self.state == "up" and (self.last_heard is None or now - self.last_heard > self.timeout_s):
            return self._set("down", now)
        return False

    def force_down(self, now: float) -> bool:
        return self._set("down", now)

    def _set(self, state: str, now: float) -> bool:
        if state == self.state:
            return False
        self.state = state
        self.changes += 1
        self.history.append((now, state))
        del self.history[:-16]
        return True
