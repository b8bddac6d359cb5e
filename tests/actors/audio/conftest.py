"""Audio test fixtures: the shipped demo recording and its known spans, one Whisper model per run."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from actors.audio_source.actor import DEMO_RECORDING

DEMO_META = DEMO_RECORDING.with_suffix(".json")


@pytest.fixture(scope="session")
def demo() -> dict:
    """demo.json (sentences, spans_s) plus ``pcm`` (int16 16 kHz) and ``path``."""
    meta = json.loads(DEMO_META.read_text())
    with wave.open(str(DEMO_RECORDING), "rb") as w:
        meta["pcm"] = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()
    meta["path"] = DEMO_RECORDING
    return meta


@pytest.fixture(scope="session")
def transcriber():
    """Whisper tiny.en (CPU int8, 2 threads), loaded once for the whole run."""
    from actors.speech.transcriber import Transcriber, TranscriberParams

    return Transcriber(TranscriberParams(device="cpu", threads=2))


def write_wav(path: Path, pcm: np.ndarray, rate: int = 16_000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path
