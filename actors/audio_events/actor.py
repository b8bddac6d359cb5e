"""The audio_events actor: ``audio.chunk`` in, ``audio.event`` out (TensorFlow).

Setup loads the classifier once (``actors.audio_events.model.load_classifier``:
the shipped head, or YAMNet from the user's files) with the configured
TensorFlow thread counts. Streams are handled like the vad's
(``actors.lib.audio.streams.AudioStreams``: keyed by sender and ``stream``, any
rate or channel count resampled to 16 kHz mono, closed on ``end``, after
``idle_flush_s`` of quiet, or beyond ``max_streams``); each has an
``EventDetector`` that frames YAMNet patches, scores them and tracks events.
An event is published when it ends, a stream's open events when the stream
closes.

A classifier file that cannot be used (sha256 mismatch, wrong layout, a
threshold naming a class the classifier does not have) ends the actor with a
message naming the file or the setting: without a model it can do nothing,
and the supervisor shows the reason.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from actors.lib.audio.decode import RATE_HZ
from actors.lib.audio.streams import AudioStreams
from actors.base import Actor, ActorExit
from actors.audio_events.settings import AudioEventsSettings
from actors.audio_events.detector import EventDetector, TrackerParams
from bus.bodies.audio import AudioChunk, AudioEvent
from bus.envelope import Message
from config.storage import CorruptFileError


class AudioEventsActor(Actor[AudioEventsSettings]):
    kind = "audio_events"

    def setup(self) -> None:
        from actors.audio_events.model import ModelFileError, load_classifier  # noqa: PLC0415 - imports TensorFlow
        from actors.audio_events.yamnet import YamnetWeightsError  # noqa: PLC0415

        s = self.settings
        started = time.monotonic()
        try:
            self.classifier = load_classifier(s.model, s.head_path, s.yamnet_weights, s.yamnet_class_map,
                                              s.intra_op_threads, s.inter_op_threads)
        except (CorruptFileError, ModelFileError, YamnetWeightsError) as exc:
            raise ActorExit(1, f"audio_events: {exc}") from None
        except ImportError as exc:
            raise ActorExit(1, f"audio_events needs TensorFlow, the 'events' extra (pip install "
                               f"'sensorium[events]'): {exc}") from None
        tag = f"head:{self.classifier.sha256[:12]}" if s.model == "head" else "yamnet"
        try:
            self.params = TrackerParams.build(self.classifier.labels, s.thresholds, s.threshold, s.report, s.ignore,
                                              s.min_patches, tag)
        except ValueError as exc:
            raise ActorExit(1, f"audio_events: settings: {exc}") from None
        self.streams: AudioStreams[EventDetector] = AudioStreams(self.open_detector, self.close_detector,
                                                                 s.max_streams, s.idle_flush_s, self.log)
        self.counts: Counter[str] = Counter()
        self.patches_closed = 0
        self.audio_s = 0.0
        self.work_s = 0.0
        self.log.info("model_loaded", model=tag, classes=len(self.classifier.labels),
                      load_s=round(time.monotonic() - started, 2))
        self.subscribe(s.topic, self.on_audio_chunk)
        self.every(1.0, self.streams.close_idle)

    def on_audio_chunk(self, msg: Message) -> None:
        detector, pcm, chunk, key = self.streams.receive(msg)
        started = time.perf_counter()
        events = detector.feed(pcm)
        self.work_s += time.perf_counter() - started
        if events:  # most chunks end no event
            self.emit(events)
        self.audio_s += pcm.size / RATE_HZ
        if chunk.end:
            self.streams.close(key)

    def open_detector(self, name: str, chunk: AudioChunk) -> EventDetector:
        return EventDetector(self.classifier, self.params, stream=name, t0=chunk.t_start)

    def close_detector(self, detector: EventDetector, tail: np.ndarray) -> None:
        events = detector.feed(tail) if tail.size else []
        self.emit(events + detector.flush())
        self.patches_closed += detector.patches

    def emit(self, events: list[AudioEvent]) -> None:
        for event in events:
            self.publish(event)
            self.counts[event.label] += 1
            self.log.debug("audio_event", label=event.label, score=event.score, t_start=event.t_start,
                           t_end=event.t_end, stream=event.stream)

    def heartbeat_extra(self) -> dict[str, Any]:
        patches = self.patches_closed + sum(d.patches for d in self.streams.workers())
        return {"streams": len(self.streams), "events": dict(self.counts), "patches": patches,
                "audio_s": round(self.audio_s, 2),
                "rtf": round(self.work_s / self.audio_s, 4) if self.audio_s else None}

    def teardown(self) -> None:
        self.streams.close_all()
