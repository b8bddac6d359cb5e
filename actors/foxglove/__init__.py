"""The foxglove kind: the bus live in Foxglove (WebSocket protocol), and ``sensorium export`` of recordings."""

from __future__ import annotations

from actors.foxglove.exposure import exposure_problem
from actors.foxglove.settings import FoxgloveSettings
from actors.spec import Check, Extra, KindSpec
from bus.cli import CliCommand


def check_exposure(name: str, settings: FoxgloveSettings) -> list[Check]:
    """Loopback, or TLS and a token; the files named exist and the token file is private."""
    problem = exposure_problem(settings)
    if problem:
        return [Check(f"{name} listen", "fail", problem)]
    scheme = "wss" if settings.tls_cert else "ws"
    guard = "token required" if settings.token_file else "loopback, no token"
    return [Check(f"{name} listen", "ok", f"{scheme}://{settings.host}:{settings.port} ({guard})")]


SPEC = KindSpec(
    name="foxglove",
    description="serves the bus live to Foxglove (WebSocket protocol): images, boxes, IMU plots, logs",
    actor="actors.foxglove.actor:FoxgloveActor",
    settings=FoxgloveSettings,
    preflight=(check_exposure,),
    commands=(CliCommand("export", "convert a recording into an MCAP file Foxglove decodes (schemas, images)",
                         "actors.foxglove.export:main"),),
    extras=(Extra("foxglove", ("foxglove",)),),
    doc="README.md#foxglove",
)
