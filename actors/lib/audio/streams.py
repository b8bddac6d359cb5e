"""Per-stream state for actors that consume ``audio.chunk`` (the vad, audio_events).

Streams are keyed by (sender, ``stream``). Each has a ``StreamResampler``
(any rate or channel count to 16 kHz mono) and a *worker* the actor makes
(the vad's ``SpeechSegmenter``, audio_events' ``EventDetector``). A stream
closes on a chunk marked ``end``, when a chunk arrives in another format (a
new stream), when its sender has been quiet for ``idle_flush_s`` (a remote
source that died), or when it is the least recently heard of more than
``max_streams``; so memory stays bounded whatever the senders do. Closing
hands the resampler's tail to the actor's ``close`` callback, which flushes
the worker and publishes what it held.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

import numpy as np

from actors.lib.audio.decode import StreamResampler
from bus.bodies.audio import AudioChunk
from bus.envelope import Message

W = TypeVar("W")
Key = tuple[str, str]


@dataclass
class AudioStream(Generic[W]):
    worker: W
    resampler: StreamResampler
    rate: int
    channels: int
    last_heard: float


class AudioStreams(Generic[W]):
    def __init__(self, open_worker: Callable[[str, AudioChunk], W], close_worker: Callable[[W, np.ndarray], None],
                 max_streams: int, idle_flush_s: float, log: Any) -> None:
        """``open_worker(name, first_chunk)``: a worker for a new stream named ``SENDER/STREAM``;
        ``close_worker(worker, tail)``: feed the resampler's last 16 kHz samples, flush, publish."""
        self._open_worker = open_worker
        self._close_worker = close_worker
        self.max_streams = max_streams
        self.idle_flush_s = idle_flush_s
        self.log = log
        self.streams: dict[Key, AudioStream[W]] = {}

    def receive(self, msg: Message) -> tuple[W, np.ndarray, AudioChunk, Key]:
        """Decode an ``audio.chunk`` (BodyError on a bad one) and route it: (worker, 16 kHz mono pcm, chunk, key).

        The caller feeds the worker and then, for ``chunk.end``, calls ``close(key)``.
        """
        chunk = AudioChunk.from_body(msg.body)
        key = (msg.header.src, chunk.stream)
        pcm = chunk.pcm
        channels = 1 if pcm.ndim == 1 else pcm.shape[1]
        state = self.streams.get(key)
        # Two comparisons, not a tuple compare: this runs for every chunk (see bench/audio.py's VAD numbers).
        if state is not None and (state.rate != chunk.rate or state.channels != channels):
            self.close(key)  # a new format is a new stream
            state = None
        if state is None:
            state = self._open(key, chunk, channels)
        state.last_heard = time.monotonic()
        return state.worker, state.resampler.convert(pcm), chunk, key

    def _open(self, key: Key, chunk: AudioChunk, channels: int) -> AudioStream[W]:
        if len(self.streams) >= self.max_streams:
            oldest = min(self.streams, key=lambda k: self.streams[k].last_heard)
            self.log.warning("too_many_streams", closing=list(oldest), max_streams=self.max_streams)
            self.close(oldest)
        name = f"{key[0]}/{key[1]}" if key[1] else key[0]
        state = AudioStream(self._open_worker(name, chunk), StreamResampler(chunk.rate, channels), chunk.rate,
                            channels, time.monotonic())
        self.streams[key] = state
        return state

    def close(self, key: Key) -> None:
        state = self.streams.pop(key)
        self._close_worker(state.worker, state.resampler.flush())

    def close_idle(self) -> None:
        now = time.monotonic()
        for key in [k for k, st in self.streams.items() if now - st.last_heard > self.idle_flush_s]:
            self.log.info("stream_idle_closed", src=key[0], stream=key[1])
            self.close(key)

    def close_all(self) -> None:
        for key in list(self.streams):
            self.close(key)

    def workers(self) -> Iterator[W]:
        return (st.worker for st in self.streams.values())

    def __len__(self) -> int:
        return len(self.streams)
