"""The console kind: the web console and its JSON-over-WebSocket API (docs/api.md)."""

from __future__ import annotations

import socket
from pathlib import Path

from actors.console.settings import ConsoleSettings
from actors.spec import Check, Extra, KindSpec


def is_loopback(host: str) -> bool:
    from actors.console.protocol import is_loopback_host  # noqa: PLC0415 - cheap, pure

    return is_loopback_host(host)


def check_address(name: str, s: ConsoleSettings) -> list[Check]:
    """TLS off loopback, the certificate files, and whether the port is free now."""
    checks = []
    if not is_loopback(s.host) and not (s.tls_cert and s.tls_key):
        checks.append(Check(f"{name} address", "fail", f"host {s.host!r} is not loopback: set tls_cert and tls_key "
                                                       "(the console serves other machines only over TLS)"))
    for key in ("tls_cert", "tls_key"):
        path = getattr(s, key)
        if path and not Path(path).expanduser().is_file():
            checks.append(Check(f"{name} {key}", "fail", f"{key} {path!r} is not a file"))
    if s.port:
        with socket.socket(socket.AF_INET6 if ":" in s.host else socket.AF_INET) as sock:
            try:
                sock.bind((s.host, s.port))
            except OSError as exc:
                checks.append(Check(f"{name} port", "warn", f"{s.host}:{s.port} cannot be bound now ({exc.strerror}): "
                                                            "another console or program uses it? set port"))
    if not checks:
        scheme = "https" if s.tls_cert else "http"
        checks.append(Check(f"{name} address", "ok", f"{scheme}://{s.host}:{s.port}/"))
    return checks


SPEC = KindSpec(
    name="console",
    description="web console and JSON-over-WebSocket API: actors, live views, models, gestures, jobs",
    actor="actors.console.actor:ConsoleActor",
    settings=ConsoleSettings,
    preflight=(check_address,),
    extras=(Extra("console", ("aiohttp",)),),
    doc="README.md#the-web-console",
)
