"""The console kind: the web console and its JSON-over-WebSocket API (docs/api.md)."""

from actors.console.settings import ConsoleSettings
from actors.spec import Extra, KindSpec

SPEC = KindSpec(
    name="console",
    description="web console and JSON-over-WebSocket API: actors, live views, models, gestures, jobs",
    actor="actors.console.actor:ConsoleActor",
    settings=ConsoleSettings,
    extras=(Extra("console", ("aiohttp",)),),
    doc="README.md#the-web-console",
)
