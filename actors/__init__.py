"""Actors: the Actor base class and one module per actor kind.

``python -m actors KIND --name NAME [-c CONFIG]`` runs one instance. Kinds are
imported lazily so that running the monitor never imports torch.
"""

from __future__ import annotations

import importlib

from actors.base import Actor, ActorExit, handles

KINDS: dict[str, str] = {
    "monitor": "actors.monitor:MonitorActor",
    "probe": "actors.probe:ProbeActor",
    "camera": "actors.camera:CameraActor",
    "detector": "actors.detector:DetectorActor",
    "audio_source": "actors.audio.source:AudioSourceActor",
    "vad": "actors.audio.vad:VadActor",
    "speech": "actors.audio.speech:SpeechActor",
    "audio_events": "actors.events.actor:AudioEventsActor",
    "sensor": "actors.sensor:SensorActor",
    "gesture": "actors.gesture:GestureActor",
    "recorder": "actors.recorder:RecorderActor",
}
"""Kind -> "module:Class". Keep in step with config.schema.KIND_SETTINGS."""


def load_kind(kind: str) -> type[Actor]:
    try:
        target = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown actor kind {kind!r}; expected one of {', '.join(sorted(KINDS))}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["KINDS", "Actor", "ActorExit", "handles", "load_kind"]
