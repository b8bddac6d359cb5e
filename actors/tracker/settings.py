"""Settings of the tracker kind."""

from __future__ import annotations

from pydantic import Field, model_validator

from config.schema import Strict


class TrackerSettings(Strict):
    """Stable tracks: detect.<signal> in, track.<signal> out (k of N frames, smoothed boxes, ids)."""

    detect_prefix: str = "detect."
    """Where per-frame detections come from (every signal under it)."""
    window: int = Field(5, ge=1, le=100)
    """N: frames of history per track (3 reacts fast, 7-10 is steadier)."""
    k_present: int = Field(3, ge=1)
    """Hits within the last N frames that make a track present (<= window)."""
    k_gone: int = Field(3, ge=1)
    """Misses within the last N frames that make a present track gone (<= window)."""
    min_iou: float = Field(0.2, gt=0, le=1)
    """Least box overlap (IoU) for a detection to continue a track."""
    smoothing: float = Field(0.6, ge=0, lt=1)
    """Weight of the previous box in the smoothed one (0: none)."""
    min_score: float = Field(0.0, ge=0, le=1)
    """Detections below this score are ignored."""
    max_tracks: int = Field(64, ge=1)
    """Open tracks per signal and sender."""
    max_streams: int = Field(64, ge=1)
    """(sender, signal) pairs tracked at once; a new one beyond it forgets the least recently updated."""

    @model_validator(mode="after")
    def _ks_fit_the_window(self) -> "TrackerSettings":
        for name in ("k_present", "k_gone"):
            if getattr(self, name) > self.window:
                raise ValueError(f"{name} = {getattr(self, name)} is more than window = {self.window}")
        return self
