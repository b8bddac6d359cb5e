"""Streaming decode of common formats, raw PCM, and one clear error per kind of bad input."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from actors.lib.audio.decode import AudioInputError, audio_files, decode_file, decode_raw
from actors.lib.audio.wer import normalize, word_error_rate
from tests.actors.audio.conftest import write_wav


def encode(path: Path, codec: str, fmt: str, samples: np.ndarray, rate: int, layout: str = "mono") -> Path:
    """Write ``samples`` (shape (channels, N) planar or (1, N*channels) packed) with FFmpeg."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def decoded(path: Path, chunk: int = 1600) -> np.ndarray:
    chunks = list(decode_file(path, chunk))
    assert all(c.dtype == np.int16 and c.ndim == 1 for c in chunks)
    assert all(c.size == chunk for c in chunks[:-1])
    return np.concatenate(chunks)


@pytest.mark.parametrize("name,codec,fmt", [("a.flac", "flac", "s16"), ("a.mp3", "mp3", "fltp"),
                                            ("a.ogg", "libopus", "flt"), ("a.wav", "pcm_s16le", "s16")])
def test_common_formats_at_other_rates_and_channels_become_16k_mono(tmp_path, demo, name, codec, fmt):
    pcm = demo["pcm"][: 3 * 16_000]
    rate = 48_000 if codec == "libopus" else 44_100
    up = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
    frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate = 16_000
    parts = [f.to_ndarray() for f in up.resample(frame) + up.resample(None)]
    samples = np.concatenate(parts, axis=1)
    path = encode(tmp_path / name, codec, fmt, samples, rate, "stereo")
    out = decoded(path)
    assert abs(out.size - pcm.size) < 0.1 * 16_000  # codec priming/padding only
    # Same sound: correlation with the original over the common part.
    lag = int(np.argmax(np.correlate(out[:16_000].astype(float), pcm[:4000].astype(float), "valid")))
    n = min(out.size - lag, pcm.size)
    assert np.corrcoef(out[lag:lag + n], pcm[:n])[0, 1] > 0.9


def test_a_long_file_is_read_in_bounded_pieces(tmp_path, demo):
    path = write_wav(tmp_path / "long.wav", np.tile(demo["pcm"], 4))
    sizes = {c.size for c in decode_file(path, 1600)}
    assert max(sizes) == 1600


@pytest.mark.parametrize("case,expected", [
    ("empty", "empty file"),
    ("text", "not a readable audio file"),
    ("header_only", "not a readable audio file"),
    ("truncated", "truncated: decoded"),
    ("nan", "NaN/inf samples"),
    ("inf", "NaN/inf samples"),
    ("missing", "not a readable audio file"),
])
def test_bad_input_is_one_clear_error_naming_the_file(tmp_path, demo, case, expected):
    path = tmp_path / f"{case}.wav"
    good = write_wav(tmp_path / "good.wav", demo["pcm"][:32_000]).read_bytes()
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path = tmp_path / "notes.mp3"
        path.write_text("this is not audio\n" * 50)
    elif case == "header_only":
        path.write_bytes(good[:30])
    elif case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case in ("nan", "inf"):
        x = (np.sin(np.arange(32_000) / 9) * 0.3).astype(np.float32)
        x[20_000] = np.nan if case == "nan" else np.inf
        encode(path, "pcm_f32le", "flt", x.reshape(1, -1), 16_000)
    with pytest.raises(AudioInputError) as err:
        decoded(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_raw_pcm_from_a_pipe_at_another_rate(demo):
    pcm = demo["pcm"][: 2 * 16_000]
    stereo_8k = np.repeat(pcm[::2], 2)  # 8 kHz stereo, interleaved
    chunks = list(decode_raw(io.BytesIO(stereo_8k.astype("<i2").tobytes()), 8_000, 2, chunk_samples=1600))
    out = np.concatenate(chunks)
    assert abs(out.size - pcm.size) <= 160
    with pytest.raises(AudioInputError, match="stray bytes"):
        list(decode_raw(io.BytesIO(b"\x00\x01\x02"), 16_000, 1))


def test_audio_files_finds_audio_by_suffix(tmp_path):
    for name in ("b.wav", "a.FLAC", "c.txt", "sub/d.mp3"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in audio_files(tmp_path)] == ["a.FLAC", "b.wav", "sub/d.mp3"]


def test_word_error_rate_is_word_level_levenshtein():
    assert normalize("The train leaves in 10 minutes.") == "the train leaves in ten minutes".split()
    assert word_error_rate("a b c d", "a b c d") == 0.0
    assert word_error_rate("a b c d", "a x c d") == 0.25          # substitution
    assert word_error_rate("a b c d", "a c d") == 0.25            # deletion
    assert word_error_rate("a b c d", "a b b c d") == 0.25        # insertion
    assert word_error_rate("a b", "") == 1.0 and word_error_rate("", "") == 0.0
    assert word_error_rate("quick brown fox", "brown fox quick") == pytest.approx(2 / 3)
