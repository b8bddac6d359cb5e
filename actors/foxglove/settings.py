"""Settings of the foxglove kind."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from bus.topics import validate_prefix
from config.schema import Strict

DESTRUCTIVE_WORDS = frozenset({"stop", "unload", "delete", "remove"})
"""A ctl command with one of these words (``stop``, ``unload_head``) stops or removes something: it is offered
as a service only with a token, and each call must carry it."""


def is_destructive(cmd: str) -> bool:
    return bool(DESTRUCTIVE_WORDS & set(cmd.lower().split("_")))


class FoxgloveSettings(Strict):
    """Serves the bus to Foxglove over the Foxglove WebSocket protocol (foxglove-sdk)."""

    host: str = "127.0.0.1"
    """Address viewers connect to (the gate). Off loopback only with ``tls_cert``, ``tls_key`` and ``token_file``:
    refused at start. foxglove-sdk's own server always listens on 127.0.0.1."""
    port: int = Field(8765, ge=0, le=65535)
    """TCP port; 0 picks a free one (the actor logs it and puts it in its heartbeat)."""
    prefixes: list[str] = ["camera.", "detect.", "sensor.", "speech.", "gesture.", "audio.vad", "audio.event",
                           "monitor.", "sys.actor"]
    """Topics (exact) or prefixes ending in '.' to advertise as channels; '' is not allowed (heartbeats,
    ctl)."""
    compressed_images: bool = False
    """Also serve camera frames as JPEG ``foxglove.CompressedImage`` (``TOPIC/compressed``), for remote viewers."""
    jpeg_quality: int = Field(80, ge=10, le=100)
    """JPEG quality of the compressed images, 10..100."""
    max_array_elements: int = Field(4096, ge=0)
    """Arrays of JSON channels up to this many elements go as lists; bigger ones as a summary
    (dtype, shape, min, max, mean)."""
    backlog: int = Field(64, ge=1, le=100_000)
    """Messages foxglove-sdk's server queues per connection (message_backlog_size; oldest dropped when full).
    Its only connections are the gate's relays, which drain it as fast as it fills."""
    services: list[str] = []
    """ctl commands offered as Foxglove services (``ctl/CMD``; request ``{"actor": NAME, "args": {...}}``);
    empty: none. Commands that stop, unload, delete or remove need ``token_file``."""
    service_timeout_s: float = Field(5.0, gt=0, le=60)
    """How long a service call waits for the actor's ctl.reply, seconds."""
    client_publish: list[str] = []
    """Topics (exact) or prefixes ending in '.' viewers may publish onto the bus (JSON); empty: off."""
    token_file: str = ""
    """File holding the access token (mode 0600): viewers must send it (``?token=`` in the URL or
    ``Authorization: Bearer``). '' : no token (loopback only)."""
    tls_cert: str = ""
    """PEM certificate for wss:// (required off loopback)."""
    tls_key: str = ""
    """PEM private key matching ``tls_cert``."""
    name: str = "sensorium"
    """Server name shown in Foxglove."""

    @field_validator("prefixes", "client_publish")
    @classmethod
    def _prefixes(cls, prefixes: list[str]) -> list[str]:
        for p in prefixes:
            if p == "":
                raise ValueError("'' (everything) is not allowed: name the topics or areas")
            validate_prefix(p)
        return prefixes

    @field_validator("client_publish")
    @classmethod
    def _no_control(cls, prefixes: list[str]) -> list[str]:
        for p in prefixes:
            if p.startswith(("ctl.", "sys.")) or p in ("ctl", "sys"):
                raise ValueError(f"{p!r}: viewers may not publish control or system topics (use services)")
        return prefixes

    @field_validator("services")
    @classmethod
    def _services(cls, services: list[str]) -> list[str]:
        for s in services:
            if not s.isidentifier():
                raise ValueError(f"service {s!r} is not a ctl command name")
        return services

    @model_validator(mode="after")
    def _guarded(self) -> "FoxgloveSettings":
        destructive = sorted(c for c in self.services if is_destructive(c))
        if destructive and not self.token_file:
            raise ValueError(f"services {destructive} stop or remove things: they need token_file")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        return self
