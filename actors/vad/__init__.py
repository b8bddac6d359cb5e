"""The vad kind: webrtcvad on ``audio.chunk``, speech segments on ``audio.speech``."""

from actors.spec import Extra, KindSpec
from actors.vad.settings import VadSettings
from bus.bodies.audio import SpeechSegment, VadState

SPEC = KindSpec(
    name="vad",
    description="voice activity (webrtcvad): audio.chunk in, audio.vad changes and audio.speech segments out",
    actor="actors.vad.actor:VadActor",
    settings=VadSettings,
    publishes=(VadState, SpeechSegment),
    extras=(Extra("audio", ("webrtcvad",)),),
)
