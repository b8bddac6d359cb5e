"""The vad kind: webrtcvad on ``audio.chunk``, speech segments on ``audio.speech``."""

from actors.spec import Extra, KindSpec
from actors.vad.settings import VadSettings
from bus.bodies.audio import SpeechSegment, SpeechSoFar, VadState

SPEC = KindSpec(
    name="vad",
    description="voice activity (webrtcvad): audio.chunk in, audio.vad changes, audio.speech segments and "
                "audio.partial (the segment so far) out",
    actor="actors.vad.actor:VadActor",
    settings=VadSettings,
    publishes=(VadState, SpeechSegment, SpeechSoFar),
    extras=(Extra("audio", ("webrtcvad",)),),
)
