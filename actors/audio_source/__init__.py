"""The audio_source kind: files, raw PCM on stdin or a microphone onto ``audio.chunk``."""

from __future__ import annotations

import importlib.util

from actors.audio_source.settings import AudioSourceSettings
from actors.spec import Check, Extra, KindSpec
from bus.bodies.audio import AudioChunk
from config.paths import resolve_path


def check_input(name: str, settings: AudioSourceSettings) -> list[Check]:
    """The configured input exists: the file or folder, or the microphone's packages."""
    if settings.source == "mic":
        if importlib.util.find_spec("sounddevice") is None:
            return [Check(f"{name} input", "fail", "source = 'mic' needs the 'mic' extra (pip install -e '.[mic]') "
                          "and PortAudio (apt-get install libportaudio2)")]
        return [Check(f"{name} input", "ok", f"microphone {settings.mic_device or '(default)'}")]
    if settings.source == "file" and settings.path:
        path = resolve_path(settings.path)
        if not path.exists():
            return [Check(f"{name} input", "fail", f"{path} does not exist")]
        return [Check(f"{name} input", "ok", str(path))]
    return [Check(f"{name} input", "ok", "stdin" if settings.source == "stdin" else "the shipped demo recording")]


SPEC = KindSpec(
    name="audio_source",
    description="plays audio files, raw PCM on stdin or a microphone onto audio.chunk (16 kHz int16)",
    actor="actors.audio_source.actor:AudioSourceActor",
    settings=AudioSourceSettings,
    publishes=(AudioChunk,),
    preflight=(check_input,),
    extras=(Extra("audio", ("av",)),),
)
