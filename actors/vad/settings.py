"""Settings of the vad kind."""

from __future__ import annotations

from pydantic import Field

from config.schema import Strict


class VadSettings(Strict):
    """Voice activity detection: audio.chunk in, audio.vad and audio.speech out."""

    aggressiveness: int = Field(3, ge=0, le=3)
    """webrtcvad mode: 0 least, 3 most aggressive at filtering out non-speech."""
    start_window_ms: int = Field(300, ge=30, le=3000)
    """Speech starts when `ratio` of the frames in this window are voiced, ms."""
    hangover_ms: int = Field(450, ge=30, le=5000)
    """Speech ends when `ratio` of the frames in this window are unvoiced, ms."""
    ratio: float = Field(0.9, gt=0, le=1)
    """Fraction of frames that flips the state (py-webrtcvad's vad_collector uses 0.9)."""
    pad_ms: int = Field(210, ge=0, le=2000)
    """Audio kept before the first and after the last voiced frame of a segment, ms (<= hangover_ms)."""
    min_segment_ms: int = Field(250, ge=0)
    """Speech shorter than this is not published on audio.speech, ms."""
    max_segment_s: float = Field(20.0, gt=0.5, le=300)
    """Longer speech is cut into segments of this length, seconds (Whisper hears 30 s at most)."""
    partial_every_s: float = Field(1.0, ge=0, le=30)
    """While speech goes on, the segment so far is published on audio.partial every this many seconds of
    speech (for partial transcripts); 0: never."""
    partial_first_s: float = Field(0.6, ge=0, le=30)
    """The first audio.partial of a segment comes after this much speech, seconds (sooner than the next ones,
    for a first partial transcript within ~1.5 s of speech start)."""
    topic: str = "audio.chunk"
    """Topic of the input audio."""
    idle_flush_s: float = Field(5.0, gt=0)
    """A stream silent this long (its sender gone) has its open segment closed, seconds."""
    max_streams: int = Field(16, ge=1)
    """Streams tracked at once; a new one beyond this closes the least recently heard."""
