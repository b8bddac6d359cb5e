"""Who sent a message: senders told apart, and two live processes under one name found.

A *sender* is (origin host, ``src``, ``iid``): the header's ``host``, the
actor name, and the instance id of the publisher (``docs/wire.md``). Every
``Publisher`` draws a new instance id when it is made, so a restarted
process is a new sender whose seq starts at 0: no false gap, no reset. The
id is ``PID-RANDOM`` (decimal process id, ``-``, 8 random hex digits), like
the process id in an RTPS GUID prefix: readers treat it as opaque, except
that alerts name the pid in it.

``SenderBook`` watches, per (host, src), which instance sent the last
message. One process restarting switches instance once (perhaps a few times
while the old one's last messages drain from the broker). Two live
processes publishing under one name keep switching back and forth: after
``min_returns`` returns to an instance already seen, over at least
``min_span_s``, the pair is reported as a duplicate. The check costs one
dict lookup per message (``current``, which a receiver may read itself
before calling ``observe``); the clock is read only on a switch.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

_HOST: str | None = None
HOST_ENV = "SENSORIUM_HOST"
"""Overrides the machine's host name (the supervisor sets it for its actors from ``bus.host``)."""


def origin_host() -> str:
    """This host's name, as publishers put it in the header: ``set_origin_host``, else $SENSORIUM_HOST,
    else the machine's host name."""
    global _HOST
    if _HOST is None:
        _HOST = os.environ.get(HOST_ENV) or socket.gethostname() or "localhost"
    return _HOST


def from_this_host(host: str) -> bool:
    """Whether a header's origin ``host`` is this one ('' : a sender that set none, taken as local). A
    bridge imports other hosts' messages under their own host: this tells them apart by name."""
    return not host or host == origin_host()


def set_origin_host(host: str) -> None:
    """Use ``host`` as this process's origin host ('' : back to the default), and pass it on to children."""
    global _HOST
    if host:
        os.environ[HOST_ENV] = host
    _HOST = None


def new_instance_id() -> str:
    """A fresh instance id: ``PID-RANDOM``."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def pid_of_iid(iid: str) -> int | None:
    """The process id in an instance id of the recommended form, else None."""
    head, sep, _ = iid.partition("-")
    return int(head) if sep and head.isdigit() and len(head) <= 10 else None


@dataclass
class Duplicate:
    """Two or more live instances publishing under one (host, src)."""

    host: str
    src: str
    iids: set[str]
    first_s: float
    """Monotonic time of the first return seen, seconds."""
    last_s: float
    """Monotonic time of the latest switch between the instances, seconds."""

    def pids(self) -> list[int]:
        return sorted({p for p in map(pid_of_iid, self.iids) if p is not None})

    def to_body(self) -> dict[str, object]:
        return {"host": self.host, "src": self.src, "iids": sorted(self.iids), "pids": self.pids()}


@dataclass
class _Track:
    current: str
    seen: set[str] = field(default_factory=set)
    returns: int = 0
    first_return_s: float = 0.0
    last_switch_s: float = 0.0


class SenderBook:
    """Per (host, src): the instance of the last message, and duplicates found."""

    MAX_NAMES = 4096
    """Bound on tracked (host, src) pairs; beyond it tracking starts afresh."""

    def __init__(self, *, min_returns: int = 3, min_span_s: float = 1.0, live_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_returns = min_returns
        self.min_span_s = min_span_s
        self.live_s = live_s
        """A duplicate with no switch for this long is over, seconds."""
        self.clock = clock
        self._tracks: dict[tuple[str, str], _Track] = {}
        self.current: dict[tuple[str, str], str] = {}
        """(host, src) -> iid of its last message; ``observe`` needs calling only when a message differs."""
        self._duplicates: dict[tuple[str, str], Duplicate] = {}

    def observe(self, host: str, src: str, iid: str) -> None:
        """One message from (host, src, iid)."""
        key = (host, src)
        track = self._tracks.get(key)
        if track is None:
            if len(self._tracks) >= self.MAX_NAMES:
                self._tracks.clear()
                self.current.clear()
            self._tracks[key] = _Track(iid, {iid})
        elif track.current != iid:
            self._switch(key, track, iid)
        self.current[key] = iid

    def _switch(self, key: tuple[str, str], track: _Track, iid: str) -> None:
        now = self.clock()
        pid = pid_of_iid(iid)
        # Two publishers of one process under one name are two senders, but not two processes.
        if iid in track.seen and (pid is None or pid != pid_of_iid(track.current)):
            if track.returns == 0 or now - track.last_switch_s > self.live_s:
                track.returns, track.first_return_s = 0, now
            track.returns += 1
            if track.returns >= self.min_returns and now - track.first_return_s >= self.min_span_s:
                dup = self._duplicates.get(key)
                if dup is None:
                    dup = self._duplicates[key] = Duplicate(key[0], key[1], set(), track.first_return_s, now)
                dup.iids.update((iid, track.current))
                dup.last_s = now
        elif len(track.seen) >= 16:  # many restarts: forget the old instances
            track.seen = {track.current}
        track.seen.add(iid)
        track.current = iid
        track.last_switch_s = now

    def duplicates(self) -> list[Duplicate]:
        """The duplicates still live (a switch within ``live_s``)."""
        now = self.clock()
        for key in [k for k, d in self._duplicates.items() if now - d.last_s > self.live_s]:
            del self._duplicates[key]
        return list(self._duplicates.values())
