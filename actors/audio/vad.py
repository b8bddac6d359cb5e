"""The vad actor: ``audio.chunk`` in, ``audio.vad`` state changes and ``audio.speech`` segments out.

One ``SpeechSegmenter`` (the same class batch mode uses) per stream, keyed by
(sender, ``stream``), each behind a ``StreamResampler`` so that chunks at any
rate or channel count are converted to 16 kHz mono first. A stream ends with
a chunk marked ``end``; one whose sender went quiet for ``idle_flush_s`` (a
remote source that died) is closed by a timer, and at most ``max_streams``
are tracked (the least recently heard is closed first), so memory stays
bounded whatever the senders do.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from actors.audio.decode import StreamResampler
from actors.audio.segmenter import SegmenterParams, SegmenterStats, SpeechSegmenter
from actors.base import Actor
from bus.bodies.audio import AudioChunk, SpeechSegment
from bus.envelope import Message


@dataclass
class _Stream:
    segmenter: SpeechSegmenter
    resampler: StreamResampler
    rate: int
    channels: int
    last_heard: float


class VadActor(Actor):
    kind = "vad"

    def setup(self) -> None:
        s = self.settings
        self.params = SegmenterParams(aggressiveness=s.aggressiveness, start_window_ms=s.start_window_ms,
                                      hangover_ms=s.hangover_ms, ratio=s.ratio, pad_ms=s.pad_ms,
                                      min_segment_ms=s.min_segment_ms, max_segment_s=s.max_segment_s)
        self.ids = itertools.count()
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.totals = SegmenterStats()
        self.subscribe(s.topic, self.on_audio_chunk)
        self.every(1.0, self.close_idle_streams)

    def on_audio_chunk(self, msg: Message) -> None:
        chunk = AudioChunk.from_body(msg.body)
        key = (msg.header.src, chunk.stream)
        pcm = chunk.pcm
        channels = 1 if pcm.ndim == 1 else pcm.shape[1]
        state = self.streams.get(key)
        if state is not None and (state.rate != chunk.rate or state.channels != channels):
            self.close_stream(key)  # a new format is a new stream
            state = None
        if state is None:
            state = self.open_stream(key, chunk, channels)
        state.last_heard = time.monotonic()
        events = state.segmenter.feed(state.resampler.convert(pcm))  # feed() copies what it keeps
        if events:  # most chunks change nothing
            self.emit(events)
        if chunk.end:
            self.close_stream(key)

    def open_stream(self, key: tuple[str, str], chunk: AudioChunk, channels: int) -> _Stream:
        if len(self.streams) >= self.settings.max_streams:
            oldest = min(self.streams, key=lambda k: self.streams[k].last_heard)
            self.log.warning("too_many_streams", closing=list(oldest), max_streams=self.settings.max_streams)
            self.close_stream(oldest)
        stream_name = f"{key[0]}/{key[1]}" if key[1] else key[0]
        state = _Stream(SpeechSegmenter(self.params, stream=stream_name, t0=chunk.t_start, ids=self.ids),
                        StreamResampler(chunk.rate, channels), chunk.rate, channels, time.monotonic())
        self.streams[key] = state
        return state

    def close_stream(self, key: tuple[str, str]) -> None:
        state = self.streams.pop(key)
        tail = state.resampler.flush()
        events = state.segmenter.feed(tail) if tail.size else []
        self.emit(events + state.segmenter.flush())
        for name, value in vars(state.segmenter.stats).items():
            setattr(self.totals, name, getattr(self.totals, name) + value)

    def close_idle_streams(self) -> None:
        now = time.monotonic()
        for key in [k for k, st in self.streams.items() if now - st.last_heard > self.settings.idle_flush_s]:
            self.log.info("stream_idle_closed", src=key[0], stream=key[1])
            self.close_stream(key)

    def emit(self, events: list) -> None:
        for event in events:
            self.publish(event)
            if isinstance(event, SpeechSegment):
                self.log.debug("speech_segment", segment_id=event.segment_id, t_start=event.t_start,
                               t_end=event.t_end)

    def heartbeat_extra(self) -> dict[str, Any]:
        if not hasattr(self, "streams"):
            return {}
        live = [st.segmenter.stats for st in self.streams.values()]
        total = {name: getattr(self.totals, name) + sum(getattr(s, name) for s in live)
                 for name in vars(self.totals)}
        total["speech_s"] = round(total["speech_s"], 3)
        return {"streams": len(self.streams), "in_speech": sum(st.segmenter.in_speech for st in self.streams.values()),
                **total}

    def teardown(self) -> None:
        for key in list(getattr(self, "streams", {})):
            self.close_stream(key)
