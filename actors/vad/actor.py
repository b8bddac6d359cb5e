"""The vad actor: ``audio.chunk`` in, ``audio.vad`` state changes and ``audio.speech`` segments out.

While speech goes on it also publishes the segment so far on ``audio.partial``
(``partial_first_s`` after it starts, then every ``partial_every_s``), for partial transcripts; consumers of
``audio.speech`` see no change.

One ``SpeechSegmenter`` (the same class batch mode uses) per stream, keyed by
(sender, ``stream``), each behind a ``StreamResampler`` so that chunks at any
rate or channel count are converted to 16 kHz mono first
(``actors.lib.audio.streams.AudioStreams``, shared with audio_events). A stream
ends with a chunk marked ``end``; one whose sender went quiet for
``idle_flush_s`` (a remote source that died) is closed by a timer, and at
most ``max_streams`` are tracked (the least recently heard is closed first),
so memory stays bounded whatever the senders do.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from actors.lib.audio.segmenter import SegmenterParams, SegmenterStats, SpeechSegmenter
from actors.lib.audio.streams import AudioStreams
from actors.base import Actor
from actors.vad.settings import VadSettings
from bus.bodies.audio import AudioChunk, SpeechSegment
from bus.envelope import Message


class VadActor(Actor[VadSettings]):
    kind = "vad"

    def setup(self) -> None:
        s = self.settings
        self.params = SegmenterParams(aggressiveness=s.aggressiveness, start_window_ms=s.start_window_ms,
                                      hangover_ms=s.hangover_ms, ratio=s.ratio, pad_ms=s.pad_ms,
                                      min_segment_ms=s.min_segment_ms, max_segment_s=s.max_segment_s)
        self.ids = itertools.count()
        self.streams: AudioStreams[SpeechSegmenter] = AudioStreams(self.open_segmenter, self.close_segmenter,
                                                                   s.max_streams, s.idle_flush_s, self.log)
        self.totals = SegmenterStats()
        self.partials = 0
        """audio.partial messages sent (the growing segment, for partial transcripts)."""
        self.subscribe(s.topic, self.on_audio_chunk)
        self.every(1.0, self.streams.close_idle)

    def on_audio_chunk(self, msg: Message) -> None:
        segmenter, pcm, chunk, key = self.streams.receive(msg)
        events = segmenter.feed(pcm)  # feed() copies what it keeps
        if events:  # most chunks change nothing
            self.emit(events)
        so_far = segmenter.so_far(self.settings.partial_every_s, self.settings.partial_first_s)
        if so_far is not None:
            self.partials += 1
            self.publish(so_far)
        if chunk.end:
            self.streams.close(key)

    def open_segmenter(self, name: str, chunk: AudioChunk) -> SpeechSegmenter:
        return SpeechSegmenter(self.params, stream=name, t0=chunk.t_start, ids=self.ids)

    def close_segmenter(self, segmenter: SpeechSegmenter, tail: np.ndarray) -> None:
        events = segmenter.feed(tail) if tail.size else []
        self.emit(events + segmenter.flush())
        for name, value in vars(segmenter.stats).items():
            setattr(self.totals, name, getattr(self.totals, name) + value)

    def emit(self, events: list) -> None:
        for event in events:
            self.publish(event)
            if isinstance(event, SpeechSegment):
                self.log.debug("speech_segment", segment_id=event.segment_id, t_start=event.t_start,
                               t_end=event.t_end)

    def heartbeat_extra(self) -> dict[str, Any]:
        live = [seg.stats for seg in self.streams.workers()]
        total = {name: getattr(self.totals, name) + sum(getattr(s, name) for s in live)
                 for name in vars(self.totals)}
        total["speech_s"] = round(total["speech_s"], 3)
        return {"streams": len(self.streams), "in_speech": sum(seg.in_speech for seg in self.streams.workers()),
                "partials": self.partials, **total}

    def teardown(self) -> None:
        self.streams.close_all()
