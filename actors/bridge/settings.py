"""Settings of the bridge kind: one host's links to its peer hosts."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from bus.topics import validate_prefix
from config.schema import BackoffSettings, Strict


class PeerSettings(Strict):
    """One peer host: who it is, where to reach it, and which topics cross each way."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
    """The peer's host name: its ``bus.host`` (the origin host in its headers) and the name of its trusted key."""
    endpoint: str = ""
    """``tcp://ADDR:PORT`` of the peer's bridge to dial; '' when the peer dials us (one side of a pair dials)."""
    public_key: str = ""
    """The peer's public key (40 Z85 characters); '' means the trusted key ``trusted/NAME.key``."""
    key_file: str = ""
    """A file holding the peer's public key (a zmq ``.key`` certificate), instead of ``public_key``."""
    imports: list[str] = []
    """Topic prefixes taken from this peer ('' takes all of its exports, ``sensor.`` an area, or one topic)."""
    exports: list[str] = []
    """Topic prefixes sent to this peer (only messages that originate on this host; ``ctl.`` only when listed)."""
    ctl: bool = False
    """Let ``ctl`` commands addressed to an actor of the peer (``HOST/ACTOR``) cross, and their replies return."""

    @field_validator("imports", "exports")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            validate_prefix(prefix)
        return value


class BridgeSettings(Strict):
    """Links this host's bus to other hosts over tcp with CURVE (see the README, "Two hosts")."""

    bind: str = ""
    """``tcp://ADDR:PORT`` this bridge listens on as a CURVE server; '' means it only dials its peers."""
    keys_dir: str = ""
    """Keys folder (host keypair, ``trusted/``); '' means $SENSORIUM_KEYS_DIR or ~/.config/sensorium/keys."""
    peers: list[PeerSettings] = []
    heartbeat_ivl_s: float = Field(1.0, gt=0)
    """Seconds between pings on a link (ZeroMQ heartbeats and the bridge's own clock pings)."""
    heartbeat_timeout_s: float = Field(3.0, gt=0)
    """A link with nothing heard for this long is down, seconds."""
    report_s: float = Field(1.0, gt=0)
    """Seconds between ``sys.link`` reports (and catalogue exchanges)."""
    trust_check_s: float = Field(1.0, gt=0)
    """Seconds between reads of the trusted-keys folder (a removed key closes that peer's link)."""
    hwm: int = Field(1000, ge=1)
    """Messages queued per link before dropping (counted)."""
    backoff: BackoffSettings = BackoffSettings(initial_s=0.2, max_s=5.0, reset_after_s=10.0)
    """Spacing of redials after a link went down."""

    @model_validator(mode="after")
    def _check(self) -> "BridgeSettings":
        names = [p.name for p in self.peers]
        if len(set(names)) != len(names):
            raise ValueError(f"peers: a peer is listed twice ({', '.join(sorted(names))})")
        if self.heartbeat_timeout_s <= self.heartbeat_ivl_s:
            raise ValueError("heartbeat_timeout_s must exceed heartbeat_ivl_s")
        if any(not p.endpoint for p in self.peers) and not self.bind:
            raise ValueError("a peer without an endpoint dials us, so bind must be set")
        for p in self.peers:
            if p.endpoint and not p.endpoint.startswith("tcp://"):
                raise ValueError(f"peers {p.name}: endpoint {p.endpoint!r} is not tcp://ADDR:PORT")
        if self.bind and not self.bind.startswith("tcp://"):
            raise ValueError(f"bind {self.bind!r} is not tcp://ADDR:PORT")
        return self
