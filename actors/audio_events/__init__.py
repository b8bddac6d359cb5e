"""The audio_events kind (TensorFlow): YAMNet-style patches scored by a head, ``audio.event`` out; ``batch events``."""

from __future__ import annotations

from actors.audio_events.settings import AudioEventsSettings
from actors.spec import Check, Extra, KindSpec
from bus.bodies.audio import AudioEvent
from bus.cli import CliCommand
from config.paths import resolve_path
from config.storage import CorruptFileError, unseal


def check_model_files(name: str, settings: AudioEventsSettings) -> list[Check]:
    """The sealed head file against its sha256, or YAMNet's two files present (no TensorFlow)."""
    if settings.model == "yamnet":
        missing = [p for p in (settings.yamnet_weights, settings.yamnet_class_map) if not resolve_path(p).is_file()]
        if missing:
            return [Check(f"{name} model", "fail", f"missing: {', '.join(missing)}")]
        return [Check(f"{name} model", "ok", f"YAMNet: {settings.yamnet_weights}, {settings.yamnet_class_map}")]
    path = resolve_path(settings.head_path)
    try:
        _payload, header = unseal(path.read_bytes(), path)
    except (OSError, CorruptFileError) as exc:
        return [Check(f"{name} head", "fail", str(exc))]
    return [Check(f"{name} head", "ok", f"{path.name}: checksum good, classes " + ", ".join(header.get("classes", [])))]


SPEC = KindSpec(
    name="audio_events",
    description="sound events (TensorFlow): alarm, clapping, laughter, speech... from audio.chunk on audio.event",
    actor="actors.audio_events.actor:AudioEventsActor",
    settings=AudioEventsSettings,
    publishes=(AudioEvent,),
    preflight=(check_model_files,),
    commands=(CliCommand("events", "sound events (laughter, clapping, alarms, speech) per file and per user",
                         "actors.audio_events.batch:main", group="batch"),),
    extras=(Extra("events", ("tensorflow", "h5py")),),
)
