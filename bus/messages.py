"""Typed bodies of the system topics: one dataclass per topic.

Each class names its topic (``TOPIC``) and converts with ``to_body()`` /
``from_body()``; the field docstrings give units. A state-like topic says so
with ``LATCHED = True`` (and ``LATCH_KEY`` when one sender holds several
values on it): the broker keeps its last value and hands it to every new
subscriber (``bus/latched.py``). ``from_body`` checks that
required fields are present and raises ``BodyError`` naming the topic and
field otherwise. Bodies of the perception topics live in ``bus/bodies/``,
one module per area, built on the same ``Body`` base.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Body")


@dataclass(frozen=True)
class ArraySpec:
    """What an array field holds, for its schema: ``Annotated[np.ndarray, ArraySpec("float32", ("N", 3))]``.

    A dimension is a size (``3``) or a name for a free size (``"N"``); several
    shapes are alternatives (``ArraySpec("int16", ("N",), ("N", "C"))``).
    """

    dtype: str
    """numpy dtype name: ``uint8``, ``int16``, ``float32``..."""
    shapes: tuple[tuple[int | str, ...], ...]

    def __init__(self, dtype: str, *shapes: tuple[int | str, ...]) -> None:
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "shapes", tuple(tuple(s) for s in shapes))


class BodyError(ValueError):
    """A message body that does not fit its topic's schema."""


class Body:
    """Base of typed bodies: dataclass fields map one to one onto body keys."""

    TOPIC: ClassVar[str] = ""
    LATCHED: ClassVar[bool] = False
    """A state-like topic: the broker's cache keeps its last value (per sender, and per
    ``LATCH_KEY`` when set) and sends it to each new subscriber, marked ``latched``."""
    LATCH_KEY: ClassVar[str] = ""
    """Body field that tells one sender's values apart on a latched topic ('' : one value per sender)."""

    def to_body(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _required in _schema(type(self))}

    @classmethod
    def from_body(cls: type[T], body: dict[str, Any]) -> T:
        kwargs: dict[str, Any] = {}
        for name, required in _schema(cls):
            if name in body:
                kwargs[name] = body[name]
            elif required:
                raise BodyError(f"{cls.TOPIC or cls.__name__}: missing field {name!r}")
        return cls(**kwargs)


_SCHEMAS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _schema(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, required) of each field of a body class, worked out once per class: ``dataclasses.fields()``
    costs about a microsecond a call, which showed on every message of a hot topic (audio.chunk)."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        schema = _SCHEMAS[cls] = tuple(
            (f.name, f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls))
    return schema


@dataclass
class Counters(Body):
    """Message counters of one actor since it started."""

    received: int = 0
    """Messages handled (``in``)."""
    sent: int = 0
    """Messages published (``out``)."""
    dropped: int = 0
    """Messages dropped on purpose: malformed (``EnvelopeError``, ``BodyError``), over a queue bound."""
    gaps: int = 0
    """Messages missed upstream, from seq gaps."""
    errors: int = 0
    """Handler and timer failures other than bad input: bugs here (a dropped message is not also an error)."""

    def to_body(self) -> dict[str, Any]:
        # DESIGN.md names the first two "in" and "out" on the wire.
        return {"in": self.received, "out": self.sent, "dropped": self.dropped, "gaps": self.gaps,
                "errors": self.errors}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "Counters":
        return cls(received=body.get("in", 0), sent=body.get("out", 0), dropped=body.get("dropped", 0),
                   gaps=body.get("gaps", 0), errors=body.get("errors", 0))


@dataclass
class Heartbeat(Body):
    TOPIC: ClassVar[str] = "sys.heartbeat"

    state: str
    """``starting``, ``ready`` or ``stopping``."""
    pid: int
    """Process id of the actor."""
    uptime: float
    """Seconds since the process started."""
    counters: dict[str, int]
    """``Counters.to_body()``: in, out, dropped, gaps, errors."""
    latency_ms: dict[str, float]
    """Handler time percentiles over the last messages, milliseconds: p50, p90, p99, max; n samples."""
    rss: int
    """Resident memory, bytes."""
    kind: str = ""
    """Actor kind, e.g. ``monitor``."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Kind-specific figures (queue backlog, broker statistics...)."""
    topics: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per topic this actor published since it started: ``out`` (messages) and ``bytes`` (all frames);
    ``sensorium topic`` derives rates and bandwidth from these without listening to the topics."""
    subscriptions: list[str] = field(default_factory=list)
    """What this actor subscribes to: exact topics, and prefixes marked by a trailing '*' (``detect.*``)."""
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    """Names under which two live processes of one host publish, as this actor receives them:
    ``host``, ``src``, ``iids``, ``pids`` (see ``bus/senders.py``)."""


ACTOR_EVENTS = ("starting", "ready", "exited", "restarting", "failed", "stopped")


@dataclass
class ActorEvent(Body):
    TOPIC: ClassVar[str] = "sys.actor"
    LATCHED: ClassVar[bool] = True
    LATCH_KEY: ClassVar[str] = "actor"

    actor: str
    """Actor instance name."""
    event: str
    """One of ``ACTOR_EVENTS``."""
    kind: str = ""
    attempt: int = 0
    """Consecutive restarts since the actor last ran healthy."""
    delay: float = 0.0
    """Seconds until the next start (``restarting``, ``failed``)."""
    exit: int | None = None
    """Exit code; negative: killed by that signal number."""
    reason: str = ""
    """Why: ``crashed``, ``hung``, ``start timeout``, ``circuit open``, ``requested``..."""
    pid: int | None = None


@dataclass
class ModelSwitch(Body):
    """An actor switched the model version it runs (a promote, a rollback, a fallback), on ``sys.model``."""

    TOPIC: ClassVar[str] = "sys.model"

    actor: str
    """Actor instance name."""
    model: str
    """What switched: a signal name (a head) or ``backbone``."""
    old_version: str
    """The version it ran before ('' when none was loaded)."""
    new_version: str
    """The version it runs now ("N" shipped, "uN" the user's)."""
    reason: str = ""
    """Why: ``registry changed``, ``ctl promote``, ``ctl rollback``, ``ctl load_head``, ``fallback``..."""


@dataclass
class Health(Body):
    TOPIC: ClassVar[str] = "monitor.health"

    system: dict[str, Any]
    """Machine: cpu_percent, memory_percent, memory_available (bytes), load1, disk_percent."""
    actors: dict[str, dict[str, Any]]
    """Per actor: state, pid, cpu_percent, rss (bytes), threads, counters, latency_ms, heartbeat_age_s."""
    bus: dict[str, Any]
    """Sums over actors: gaps, dropped, errors; messages in/out per second."""
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per peer host: the last ``sys.link`` of this host's bridge (state, rtt_ms, clock_offset_ms, counts)."""


@dataclass
class Alert(Body):
    TOPIC: ClassVar[str] = "monitor.alert"

    level: str
    """``warning`` or ``critical``."""
    metric: str
    """What crossed its threshold, e.g. ``actor.failed``."""
    value: float
    threshold: float
    actor: str = ""
    state: str = "raised"
    """``raised`` or ``cleared``."""
    message: str = ""


@dataclass
class ActiveAlerts(Body):
    """Every alert raised and not cleared yet, published by the monitor on each change: what a newcomer
    (``sensorium top``, a dashboard) needs, where ``monitor.alert`` only tells the changes."""

    TOPIC: ClassVar[str] = "monitor.active_alerts"
    LATCHED: ClassVar[bool] = True

    alerts: list[dict[str, Any]]
    """``Alert.to_body()`` of each raised alert (any sender's), in the order they were raised."""


@dataclass
class Command(Body):
    """A command to one actor, on ``ctl.<actor>``; answered on ``ctl.reply`` with the same corr."""

    cmd: str
    """``stop``, ``ping``, ``stats`` or a kind-specific command."""
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class CommandReply(Body):
    TOPIC: ClassVar[str] = "ctl.reply"

    actor: str
    cmd: str
    ok: bool
    result: Any = None
    error: str = ""


@dataclass
class LinkState(Body):
    """One bridge link between this host and a peer host, on ``sys.link`` (latched by the monitor)."""

    TOPIC: ClassVar[str] = "sys.link"

    host: str
    """This host (the reporting bridge's)."""
    peer: str
    """The peer host."""
    state: str
    """``up``, ``down`` (nothing heard within the heartbeat timeout), ``untrusted`` (its key was removed)."""
    role: str = ""
    """``client`` (this bridge dials the peer) or ``server`` (the peer dials this bridge)."""
    endpoint: str = ""
    """Where the link goes (the peer's endpoint, or this bridge's bind)."""
    rtt_ms: float | None = None
    """Last round trip of a ping, milliseconds (None before the first pong)."""
    clock_offset_ms: float | None = None
    """Peer clock minus this host's clock, milliseconds, from the same ping; cross-host latencies name the
    clock they used."""
    msgs_out: int = 0
    bytes_out: int = 0
    msgs_in: int = 0
    bytes_in: int = 0
    drops_out: int = 0
    """Messages for the peer dropped here (link down or its queue full)."""
    drops_in: int = 0
    """Messages from the peer not imported: not covered by the imports, or not the peer's own (a relay)."""
    refused_handshakes: int = 0
    """Handshakes refused: by our ZAP for keys not trusted (host-wide), or by the peer for ours (this link)."""
    downs: int = 0
    """Times the link went down since the bridge started."""
    since_s: float = 0.0
    """Seconds in the current state."""
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The peer's actors from its last catalogue: name -> kind, state, pid (``top`` and ``status --hosts``)."""
