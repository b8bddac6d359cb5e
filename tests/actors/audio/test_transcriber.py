"""Transcriber: real Whisper tiny.en on the demo sentences and on non-speech (the hallucination filter)."""

from __future__ import annotations

import dataclasses

import numpy as np

from actors.speech.transcriber import Transcriber
from actors.lib.audio.wer import word_error_rate


def test_sentences_are_transcribed_with_times_in_stream_time(demo, transcriber):
    start, end = demo["spans_s"][3]
    lo, hi = int((start - 0.2) * 16_000), int((end + 0.2) * 16_000)
    result = transcriber.transcribe(demo["pcm"][lo:hi], t_offset_s=lo / 16_000)
    assert word_error_rate(demo["sentences"][3], result.text) <= 0.2, result.text
    assert result.language == "en" and result.segments
    assert start - 0.5 <= result.segments[0]["t_start"] <= result.segments[-1]["t_end"] <= end + 1.0
    assert result.transcribe_ms > 0 and result.audio_s == (hi - lo) / 16_000


def test_non_speech_gives_no_text_and_counts_the_hallucination(transcriber):
    rng = np.random.default_rng(0)
    for pcm in (np.zeros(48_000, np.int16), rng.normal(0, 3000, 48_000).astype(np.int16)):
        result = transcriber.transcribe(pcm)
        assert result.text == "" and result.segments == []
    # tiny.en says "You" over silence; with the filter off it would be published as text.
    flagging = Transcriber.__new__(Transcriber)
    flagging.__dict__.update(transcriber.__dict__)
    flagging.params = dataclasses.replace(transcriber.params, hallucinations="flag")
    result = flagging.transcribe(np.zeros(48_000, np.int16))
    assert result.text == "" and result.suspect >= 1
    assert result.segments and all(s["suspect"] for s in result.segments)
