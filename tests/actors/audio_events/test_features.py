"""The numpy YAMNet frontend equals tf.signal's, and streaming framing equals framing the whole waveform."""

from __future__ import annotations

import numpy as np
import pytest

from actors.audio_events.features import (FFT_LENGTH, HOP_SAMPLES, LOG_OFFSET, MEL_BANDS, MEL_MAX_HZ, MEL_MIN_HZ,
                                    PATCH_FRAMES, PATCH_HOP_FRAMES, RATE_HZ, WINDOW_SAMPLES, PatchFramer,
                                    log_mel_frames, mel_matrix)


def test_the_log_mel_frontend_matches_yamnets_tf_signal_code(tf):
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE_HZ * 2) / RATE_HZ)
            + 0.05 * rng.normal(size=RATE_HZ * 2)).astype(np.float32)
    tf_mel = tf.signal.linear_to_mel_weight_matrix(MEL_BANDS, FFT_LENGTH // 2 + 1, RATE_HZ, MEL_MIN_HZ, MEL_MAX_HZ)
    np.testing.assert_allclose(mel_matrix(), tf_mel.numpy(), atol=1e-5)
    spectrum = tf.abs(tf.signal.stft(wave, WINDOW_SAMPLES, HOP_SAMPLES, FFT_LENGTH))
    expected = tf.math.log(tf.matmul(spectrum, tf_mel) + LOG_OFFSET).numpy()
    ours = log_mel_frames(wave)
    assert ours.shape == expected.shape == (1 + (wave.size - WINDOW_SAMPLES) // HOP_SAMPLES, MEL_BANDS)
    np.testing.assert_allclose(ours, expected, atol=2e-3)
    patches = tf.signal.frame(expected, PATCH_FRAMES, PATCH_HOP_FRAMES, axis=-2).numpy()
    framed = PatchFramer().feed((wave * 32768).astype(np.int16))
    assert framed.data.shape == patches.shape
    np.testing.assert_allclose(framed.data, patches, atol=5e-3)  # int16 quantisation on our side
    np.testing.assert_allclose(framed.t_start, np.arange(len(patches)) * 0.48)


@pytest.mark.parametrize("chunk", [37, 160, 1600, 7681, 50_000])
def test_streaming_framing_equals_one_pass_whatever_the_chunk_size(chunk):
    pcm = np.random.default_rng(1).integers(-8000, 8000, size=int(RATE_HZ * 3.3)).astype(np.int16)
    whole = PatchFramer(t0=10.0)
    expected = whole.feed(pcm)
    framer = PatchFramer(t0=10.0)
    pieces = [framer.feed(pcm[i:i + chunk]) for i in range(0, pcm.size, chunk)]
    data = np.concatenate([p.data for p in pieces])
    np.testing.assert_allclose(data, expected.data, atol=1e-5)  # FFT batch sizes differ: float rounding
    np.testing.assert_allclose(np.concatenate([p.t_start for p in pieces]), 10.0 + 0.48 * np.arange(len(data)))
    # State stays bounded: one STFT window of samples, one patch of mel frames.
    assert framer._tail.size < WINDOW_SAMPLES and framer._mel.shape[0] < PATCH_FRAMES
    # 3.3 s (328 STFT frames): patches at 0, 0.48 .. 1.92 (5); the end (2.88..3.3 s, more than half a hop)
    # is covered by one zero-padded patch at 2.4 s.
    assert len(data) == 5
    tail = framer.flush()
    assert len(tail) == 1 and tail.t_start[0] == pytest.approx(10.0 + 2.4)
    assert framer.duration_s == pytest.approx(3.3)


def test_a_clip_shorter_than_a_patch_gives_one_padded_patch_and_silence_none():
    framer = PatchFramer()
    assert len(framer.feed(np.ones(4000, np.int16))) == 0
    assert len(framer.flush()) == 1
    assert len(PatchFramer().flush()) == 0
