"""Bodies of the audio topics: ``audio.chunk``, ``audio.vad``, ``audio.speech``, ``audio.partial``,
``speech.transcript``, ``speech.partial``.

Time on these topics is *stream time*: seconds from the start of the stream
(one pass through one file, one stdin session, one microphone session), so a
transcript says where in the recording it was said. The header's ``ts`` gives
the wall clock. ``stream`` names the stream; a consumer keeps its state per
(sender, stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np

from bus.messages import ArraySpec, Body, BodyError

SPEECH_RATE_HZ = 16_000
"""The rate of ``audio.speech`` (and what the audio source publishes)."""
MAX_CHUNK_S = 10.0
"""Longest ``audio.chunk`` a consumer accepts, seconds: a chunk is a piece of a live stream (the audio
source sends 0.01-5 s); a longer one is refused by ``from_body`` (BodyError: counted as dropped)."""


@dataclass
class AudioChunk(Body):
    """A piece of a PCM stream. A consumer converts other rates and channel counts."""

    TOPIC: ClassVar[str] = "audio.chunk"

    pcm: Annotated[np.ndarray, ArraySpec("int16", ("N",), ("N", "C"))]
    """int16 samples: shape (N,) mono, or (N, channels) interleaved."""
    rate: int
    """Sample rate, Hz."""
    t_start: float = 0.0
    """Stream time of the first sample, seconds."""
    stream: str = ""
    """Stream id: one pass through one file, one stdin or microphone session."""
    end: bool = False
    """Last chunk of the stream: consumers close whatever they hold open (an unfinished segment)."""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "AudioChunk":
        chunk = super().from_body(body)
        pcm = chunk.pcm
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim not in (1, 2):
            raise BodyError(f"audio.chunk: pcm must be an int16 array of shape (N,) or (N, C), got "
                            f"{getattr(pcm, 'dtype', type(pcm).__name__)} {getattr(pcm, 'shape', '')}")
        if pcm.ndim == 2 and not 1 <= pcm.shape[1] <= 32:
            raise BodyError(f"audio.chunk: {pcm.shape[1]} channels (expected 1..32)")
        if not isinstance(chunk.rate, int) or not 1_000 <= chunk.rate <= 384_000:
            raise BodyError(f"audio.chunk: rate {chunk.rate!r} Hz out of range 1000..384000")
        if pcm.shape[0] > MAX_CHUNK_S * chunk.rate:
            raise BodyError(f"audio.chunk: {pcm.shape[0]} samples at {chunk.rate} Hz is "
                            f"{pcm.shape[0] / chunk.rate:.1f} s, longer than {MAX_CHUNK_S:g} s")
        return chunk

    @property
    def duration_s(self) -> float:
        return self.pcm.shape[0] / self.rate


VAD_STATES = ("speech_start", "speech_end")


@dataclass
class VadState(Body):
    """A change of the smoothed voice-activity state."""

    TOPIC: ClassVar[str] = "audio.vad"

    state: str
    """``speech_start`` or ``speech_end``."""
    t: float
    """Stream time of the change, seconds (start: first frame of the pre-roll; end: last voiced frame)."""
    stream: str = ""
    segment_id: int = 0
    """The segment this change opens or closes (see ``audio.speech``)."""


@dataclass
class SpeechSegment(Body):
    """One stretch of speech, cut by the vad; at most ``max_segment_s`` long."""

    TOPIC: ClassVar[str] = "audio.speech"

    pcm: Annotated[np.ndarray, ArraySpec("int16", ("N",))]
    """int16 samples, 16 kHz mono, shape (N,)."""
    t_start: float
    """Stream time where speech starts (first voiced frame), seconds."""
    t_end: float
    """Stream time where speech ends (end of the last voiced frame), seconds."""
    segment_id: int
    """Counts up per vad instance from 0."""
    pcm_t_start: float = 0.0
    """Stream time of ``pcm[0]``, seconds: ``t_start`` less the pre-roll; the pcm runs on past ``t_end``
    by the same pad (hangover audio)."""
    stream: str = ""
    rate: int = SPEECH_RATE_HZ
    """Sample rate, Hz (always 16000)."""
    split: bool = False
    """True when the segment was cut at max_segment_s while speech went on."""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "SpeechSegment":
        seg = super().from_body(body)
        if not isinstance(seg.pcm, np.ndarray) or seg.pcm.dtype != np.int16 or seg.pcm.ndim != 1:
            raise BodyError(f"audio.speech: pcm must be int16 of shape (N,), got "
                            f"{getattr(seg.pcm, 'dtype', type(seg.pcm).__name__)} {getattr(seg.pcm, 'shape', '')}")
        if seg.rate != SPEECH_RATE_HZ:
            raise BodyError(f"audio.speech: rate {seg.rate!r} Hz, expected {SPEECH_RATE_HZ}")
        return seg


@dataclass
class SpeechSoFar(Body):
    """The audio of a segment still being spoken, from its pre-roll to now, on ``audio.partial``.

    Published by the vad about every ``partial_every_s`` while speech goes on (never for a segment that
    has ended: that one is on ``audio.speech``), so a speech actor can transcribe ahead. Its own topic,
    so consumers of ``audio.speech`` see no change.
    """

    TOPIC: ClassVar[str] = "audio.partial"

    pcm: Annotated[np.ndarray, ArraySpec("int16", ("N",))]
    """int16 samples, 16 kHz mono, shape (N,): the segment so far."""
    t_start: float
    """Stream time where speech started, seconds."""
    segment_id: int
    """The id the finished segment will have on ``audio.speech``."""
    pcm_t_start: float = 0.0
    """Stream time of ``pcm[0]``, seconds."""
    stream: str = ""
    rate: int = SPEECH_RATE_HZ
    """Sample rate, Hz (always 16000)."""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "SpeechSoFar":
        seg = super().from_body(body)
        if not isinstance(seg.pcm, np.ndarray) or seg.pcm.dtype != np.int16 or seg.pcm.ndim != 1:
            raise BodyError(f"audio.partial: pcm must be int16 of shape (N,), got "
                            f"{getattr(seg.pcm, 'dtype', type(seg.pcm).__name__)} {getattr(seg.pcm, 'shape', '')}")
        if seg.rate != SPEECH_RATE_HZ:
            raise BodyError(f"audio.partial: rate {seg.rate!r} Hz, expected {SPEECH_RATE_HZ}")
        return seg


@dataclass
class PartialTranscript(Body):
    """What has been said so far in a segment still being spoken, on ``speech.partial``."""

    TOPIC: ClassVar[str] = "speech.partial"

    text: str
    """The text so far (stripped)."""
    stable: int
    """Length of the prefix of ``text`` (characters) that later partials and the final transcript keep."""
    segment_id: int
    """The segment (see ``audio.speech``); its final text comes on ``speech.transcript``."""
    latency_ms: float = 0.0
    """From the ``audio.partial`` message's header ts to this message, ms."""
    audio_s: float = 0.0
    """Seconds of audio the text covers (from the pre-roll)."""
    stream: str = ""


@dataclass
class Transcript(Body):
    """What was said in one speech segment."""

    TOPIC: ClassVar[str] = "speech.transcript"

    text: str
    """The kept segments' text, joined; stripped."""
    segments: list[dict[str, Any]]
    """Whisper's segments: ``text``, ``t_start``/``t_end`` (stream time, s), ``avg_logprob``,
    ``no_speech_prob``, ``compression_ratio``, ``suspect`` (a likely hallucination)."""
    language: str
    """Language code, e.g. ``en``."""
    segment_id: int
    """The ``audio.speech`` segment this transcribes."""
    latency_ms: float
    """From the ``audio.speech`` message's header ts (end of speech decided) to this message, ms."""
    t_start: float = 0.0
    """Stream time of the speech segment, seconds."""
    t_end: float = 0.0
    stream: str = ""
    transcribe_ms: float = 0.0
    """Time spent in Whisper for this segment, ms."""
    queue_ms: float = 0.0
    """Time the segment waited in the speech actor's queue, ms."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AudioEvent(Body):
    """A sound event (laughter, clapping, an alarm, speech...) found by the audio_events actor.

    One message per event, published when it ends (its score fell below the
    class's threshold, or the stream ended). Consecutive 0.96 s patches above
    the threshold make one event.
    """

    TOPIC: ClassVar[str] = "audio.event"

    label: str
    """Class name (the shipped head: alarm, clapping, laughter, speech; YAMNet: its class map's display name)."""
    score: float
    """Highest score of the class over the event's patches, 0..1."""
    t_start: float
    """Stream time where the event starts, seconds (see ``audio.chunk`` ``t_start``)."""
    t_end: float
    """Stream time where the event ends, seconds."""
    stream: str = ""
    """The stream it was heard in: ``SENDER/STREAM`` as on ``audio.speech``."""
    patches: int = 1
    """0.96 s patches (every 0.48 s) above the threshold in the event."""
    model: str = ""
    """The classifier: ``head:SHA256[:12]`` or ``yamnet``."""
