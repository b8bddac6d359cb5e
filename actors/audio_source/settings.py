"""Settings of the audio_source kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from config.paths import Locations
from config.schema import Strict


class AudioSourceSettings(Strict):
    """Plays audio onto ``audio.chunk``: files, raw PCM on stdin, or a microphone."""

    source: Literal["file", "stdin", "mic"] = "file"
    """file: ``path`` (a file or a folder of files); stdin: raw s16le PCM; mic: a sounddevice input (extra 'mic')."""
    path: str = ""
    """Audio file or folder (WAV, FLAC, MP3, OGG, ...); '' means the shipped demo recording."""
    loop: bool = False
    """Play the file(s) again from the start when done."""
    speed: float = Field(1.0, ge=0)
    """Playback pace: 1.0 real time, 2.0 twice as fast; 0 as fast as the bus takes it."""
    chunk_ms: int = Field(100, ge=10, le=5000)
    """Audio per audio.chunk message, milliseconds."""
    wait_for_subscriber: bool = True
    """Hold playback until something subscribes to audio.chunk (nothing is played into the void)."""
    stdin_rate_hz: int = Field(16_000, ge=1000, le=384_000)
    """Sample rate of raw PCM on stdin, Hz."""
    stdin_channels: int = Field(1, ge=1, le=32)
    """Interleaved channels of raw PCM on stdin."""
    mic_device: str = ""
    """sounddevice input device (name or index); '' is the system default."""
    mic_rate_hz: int = Field(16_000, ge=8000, le=192_000)
    """Rate the microphone is opened at, Hz (converted to 16 kHz)."""
    queue_chunks: int = Field(64, ge=2)
    """Chunks decoded ahead of playback (bounds memory); a microphone overflowing it drops the oldest (counted)."""

    def default_paths(self, where: Locations) -> dict[str, Any]:
        if self.source != "file":
            return {}
        from actors.lib.audio import DEMO_RECORDING  # noqa: PLC0415 - only `config show` needs it

        return {"path": str(where.resolve(self.path) if self.path else DEMO_RECORDING)}
