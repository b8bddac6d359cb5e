"""YAMNet's log-mel frontend in numpy, streaming: 16 kHz PCM in, 96x64 patches every 0.48 s out.

The constants are YAMNet's (``research/audioset/yamnet/params.py`` of
tensorflow/models): STFT with a 25 ms periodic Hann window and a 10 ms hop
(400 and 160 samples, FFT 512), magnitude, 64 mel bands 125-7500 Hz (HTK mel,
the matrix of ``tf.signal.linear_to_mel_weight_matrix``), ``log(mel + 0.001)``,
patches of 96 frames (0.96 s) every 48 frames (0.48 s).

Numpy rather than ``tf.signal`` so the framing runs on any chunk size with a
bounded state and no TensorFlow graph per call; the test compares it with
``tf.signal`` on the same waveform. ``PatchFramer`` keeps only the samples of
the next STFT frame and the mel frames of the next patch, whatever the length
of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE_HZ = 16_000
WINDOW_SAMPLES = 400          # 0.025 s
HOP_SAMPLES = 160             # 0.010 s
FFT_LENGTH = 512              # next power of two above the window
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96             # 0.96 s
PATCH_HOP_FRAMES = 48         # 0.48 s
PATCH_S = PATCH_FRAMES * HOP_SAMPLES / RATE_HZ
PATCH_HOP_S = PATCH_HOP_FRAMES * HOP_SAMPLES / RATE_HZ


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, as tf.signal uses."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(num_mel_bins: int = MEL_BANDS, num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
               sample_rate: float = RATE_HZ, lower_hz: float = MEL_MIN_HZ, upper_hz: float = MEL_MAX_HZ) -> np.ndarray:
    """``tf.signal.linear_to_mel_weight_matrix``: (spectrogram bins, mel bins), the DC bin zeroed."""
    linear_hz = np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins)[1:]
    bins_mel = hertz_to_mel(linear_hz)[:, None]
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_mel_bins + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    lower_slopes = (bins_mel - lower) / (center - lower)
    upper_slopes = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    return np.pad(weights, [[1, 0], [0, 0]]).astype(np.float32)


# The periodic Hann window tf.signal.stft uses.
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW_SAMPLES) / WINDOW_SAMPLES)).astype(np.float32)
_MEL = mel_matrix()


def log_mel_frames(samples: np.ndarray) -> np.ndarray:
    """Log-mel frames (n, 64) of every complete STFT frame of float samples in [-1, 1]."""
    if samples.size < WINDOW_SAMPLES:
        return np.zeros((0, MEL_BANDS), np.float32)
    n = (samples.size - WINDOW_SAMPLES) // HOP_SAMPLES + 1
    frames = np.lib.stride_tricks.as_strided(samples, shape=(n, WINDOW_SAMPLES),
                                             strides=(samples.strides[0] * HOP_SAMPLES, samples.strides[0]),
                                             writeable=False)
    magnitude = np.abs(np.fft.rfft(frames * _WINDOW, n=FFT_LENGTH, axis=1)).astype(np.float32)
    return np.log(magnitude @ _MEL + LOG_OFFSET)


@dataclass
class Patches:
    """Patches framed from one feed: ``data`` (k, 96, 64) float32, ``t_start`` (k,) stream seconds."""

    data: np.ndarray
    t_start: np.ndarray

    def __len__(self) -> int:
        return self.data.shape[0]


class PatchFramer:
    """Streaming YAMNet framing of one stream. ``feed`` int16 (or float) 16 kHz mono, get the patches completed.

    State: at most one STFT window of samples and one patch of mel frames.
    Patch ``i`` covers stream time ``t0 + 0.48 i`` to ``+ 0.96`` s.
    """

    def __init__(self, t0: float = 0.0) -> None:
        self.t0 = t0
        self._tail = np.zeros(0, np.float32)   # samples not yet in a complete STFT frame
        self._mel = np.zeros((0, MEL_BANDS), np.float32)
        self._mel_first = 0                    # global index of self._mel[0]
        self._next_patch = 0                   # global frame index where the next patch starts
        self.samples_in = 0
        self.patches_out = 0

    def feed(self, pcm: np.ndarray) -> Patches:
        samples = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float32)
        self.samples_in += samples.size
        buf = np.concatenate([self._tail, samples]) if self._tail.size else samples
        frames = log_mel_frames(buf)
        self._tail = buf[frames.shape[0] * HOP_SAMPLES:].copy()  # a copy: never pin the caller's chunk
        self._mel = np.concatenate([self._mel, frames]) if self._mel.size else frames
        return self._take()

    def _take(self) -> Patches:
        out, starts = [], []
        while self._next_patch + PATCH_FRAMES <= self._mel_first + self._mel.shape[0]:
            i = self._next_patch - self._mel_first
            out.append(self._mel[i:i + PATCH_FRAMES])
            starts.append(self.t0 + self._next_patch * HOP_SAMPLES / RATE_HZ)
            self._next_patch += PATCH_HOP_FRAMES
        drop = self._next_patch - self._mel_first
        if drop > 0:
            self._mel = self._mel[drop:].copy()
            self._mel_first = self._next_patch
        self.patches_out += len(out)
        data = np.stack(out) if out else np.zeros((0, PATCH_FRAMES, MEL_BANDS), np.float32)
        return Patches(data, np.asarray(starts, np.float64))

    def flush(self) -> Patches:
        """End of stream: pad with silence, as YAMNet's ``pad_waveform`` does, until every sample is in a patch.

        A stream shorter than a patch gets one patch; otherwise patches go on while
        the last one leaves more than half a hop of audio uncovered.
        """
        covered = (self._next_patch - PATCH_HOP_FRAMES + PATCH_FRAMES) * HOP_SAMPLES if self.patches_out else 0
        uncovered = self.samples_in - covered
        if self.samples_in == 0 or uncovered * 2 <= PATCH_HOP_FRAMES * HOP_SAMPLES and self.patches_out:
            return Patches(np.zeros((0, PATCH_FRAMES, MEL_BANDS), np.float32), np.zeros(0))
        need = (self._next_patch + PATCH_FRAMES - 1) * HOP_SAMPLES + WINDOW_SAMPLES - self.samples_in
        pad = np.zeros(max(need, 0), np.float32)
        samples_in = self.samples_in
        patches = self.feed(pad)
        self.samples_in = samples_in  # padding is not stream audio
        return patches

    @property
    def duration_s(self) -> float:
        return self.samples_in / RATE_HZ
