"""Streaming audio input: any file PyAV (FFmpeg) can read, raw PCM, other rates.

Everything here yields 16 kHz mono int16 numpy chunks of a fixed length and
never holds a whole file: PyAV decodes packet by packet, FFmpeg's resampler
(swresample) converts rate and channels, and only one chunk is buffered.

Bad input raises ``AudioInputError`` naming the file and what is wrong: not
audio or an unsupported format, empty, truncated (fewer samples than the
header declares), corrupt data, NaN/inf samples. Samples decoded before the
problem was found have already been yielded; the caller decides what an error
means for them (the source actor logs and goes on to the next file, batch mode
writes an error line for the file).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO, Iterator

import av
import numpy as np

RATE_HZ = 16_000
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm", ".mka")
"""File names the source and batch mode pick up from a folder."""
TRUNCATION_TOLERANCE_S = 0.05
"""Decoded audio may fall short of the duration the header declares by this much (encoder padding)."""

# FFmpeg prints warnings for every damaged packet on stderr; we report one error per file instead.
logging.getLogger("libav").setLevel(logging.ERROR)


class AudioInputError(ValueError):
    """Audio that cannot be used; the message names the source and the reason."""

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def to_int16(samples: np.ndarray, source: str | Path, t_s: float) -> np.ndarray:
    """Float samples in [-1, 1] to int16; NaN or inf is an error (it would become noise)."""
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AudioInputError(source, f"{bad} NaN/inf samples near {t_s:.2f} s")
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


class Rechunker:
    """Collects variable-length pieces into chunks of exactly ``chunk_samples`` (the last may be short)."""

    def __init__(self, chunk_samples: int) -> None:
        self.chunk_samples = chunk_samples
        self._parts: list[np.ndarray] = []
        self._held = 0

    def push(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        if samples.size:
            self._parts.append(samples)
            self._held += samples.size
        while self._held >= self.chunk_samples:
            data = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            yield data[: self.chunk_samples]
            rest = data[self.chunk_samples:]
            self._parts = [rest] if rest.size else []
            self._held = rest.size

    def flush(self) -> Iterator[np.ndarray]:
        if self._held:
            yield np.concatenate(self._parts)
        self._parts, self._held = [], 0


def _wav_declared_s(path: Path) -> float | None:
    """Duration a RIFF/WAVE header declares (FFmpeg clamps it to the file size, hiding truncation)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk_id, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk_id == b"fmt " and pos + 16 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16:pos + 20], "little")
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF mark a stream whose writer never knew the length.
            return size / byte_rate if byte_rate and 0 < size < 0xFFFFFFFF else None
        pos += 8 + size + (size & 1)
    return None


def _declared_duration_s(path: Path, container: "av.container.InputContainer",
                         stream: "av.audio.stream.AudioStream") -> float | None:
    if path.suffix.lower() == ".wav":
        return _wav_declared_s(path)
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def decode_file(path: str | Path, chunk_samples: int = 1600) -> Iterator[np.ndarray]:
    """Yield 16 kHz mono int16 chunks of ``path``, streaming; raises AudioInputError."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise AudioInputError(path, "empty file")
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except AudioInputError:
        raise
    except (OSError, av.error.FFmpegError) as exc:
        raise AudioInputError(path, f"not a readable audio file ({exc.__class__.__name__}: {exc})") from None
    with container:
        if not container.streams.audio:
            raise AudioInputError(path, "no audio stream")
        stream = container.streams.audio[0]
        declared_s = _declared_duration_s(path, container, stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE_HZ)
        chunks = Rechunker(chunk_samples)
        decoded = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    pcm = to_int16(samples, path, decoded / RATE_HZ)
                    decoded += pcm.size
                    yield from chunks.push(pcm)
            for out in resampler.resample(None):
                pcm = to_int16(out.to_ndarray().reshape(-1), path, decoded / RATE_HZ)
                decoded += pcm.size
                yield from chunks.push(pcm)
        except AudioInputError:
            raise
        except (OSError, av.error.FFmpegError) as exc:
            raise AudioInputError(path, f"corrupt audio data after {decoded / RATE_HZ:.2f} s ({exc})") from None
        yield from chunks.flush()
        if decoded == 0:
            raise AudioInputError(path, "no audio samples (empty or truncated before the first frame)")
        if declared_s is not None and decoded / RATE_HZ < declared_s - TRUNCATION_TOLERANCE_S:
            raise AudioInputError(path, f"truncated: decoded {decoded / RATE_HZ:.2f} s of the {declared_s:.2f} s "
                                        "the header declares")


class StreamResampler:
    """Converts a stream of int16 chunks at any rate and channel count to 16 kHz mono int16.

    Stateful (FFmpeg keeps the filter history between chunks), so one
    instance per stream. A 16 kHz mono stream passes through untouched.
    """

    def __init__(self, rate_hz: int, channels: int) -> None:
        self.rate_hz = rate_hz
        self.channels = channels
        self._passthrough = rate_hz == RATE_HZ and channels == 1
        self._resampler = None if self._passthrough else av.AudioResampler(format="s16", layout="mono", rate=RATE_HZ)
        self._layout = {1: "mono", 2: "stereo"}.get(channels)
        self._pts = 0

    def convert(self, pcm: np.ndarray) -> np.ndarray:
        """``pcm``: int16 (N,) or (N, channels)."""
        if self._passthrough:
            return pcm if pcm.ndim == 1 else pcm.reshape(-1)
        if pcm.ndim == 1:
            pcm = pcm.reshape(-1, 1)
        if pcm.shape[1] != self.channels:
            raise ValueError(f"chunk has {pcm.shape[1]} channels, the stream {self.channels}")
        if self._layout is None:
            # No FFmpeg layout name for this many channels: mix down here, then resample mono.
            mono = pcm.astype(np.int32).mean(axis=1).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(mono, format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm).reshape(1, -1), format="s16",
                                               layout=self._layout)
        frame.sample_rate = self.rate_hz
        frame.pts = self._pts
        self._pts += pcm.shape[0]
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def flush(self) -> np.ndarray:
        if self._passthrough:
            return np.zeros(0, np.int16)
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        return np.concatenate(out) if out else np.zeros(0, np.int16)


def decode_raw(stream: BinaryIO, rate_hz: int, channels: int, chunk_samples: int = 1600,
               name: str = "stdin") -> Iterator[np.ndarray]:
    """Raw little-endian int16 PCM (``rate_hz``, ``channels`` interleaved) to 16 kHz mono chunks."""
    frame_bytes = 2 * channels
    read_bytes = max(chunk_samples * rate_hz // RATE_HZ, 1) * frame_bytes
    resampler = StreamResampler(rate_hz, channels)
    chunks = Rechunker(chunk_samples)
    leftover = b""
    while True:
        data = stream.read(read_bytes)
        if not data:
            break
        data = leftover + data
        usable = len(data) - len(data) % frame_bytes
        data, leftover = data[:usable], data[usable:]
        pcm = np.frombuffer(data, dtype="<i2").reshape(-1, channels)
        yield from chunks.push(resampler.convert(pcm))
    yield from chunks.push(resampler.flush())
    yield from chunks.flush()
    if leftover:
        raise AudioInputError(name, f"stream ended inside a sample frame ({len(leftover)} stray bytes)")


def audio_files(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` (recursive), by suffix, in sorted order; a file is itself."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
