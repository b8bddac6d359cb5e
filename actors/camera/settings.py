"""Settings of the camera kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from config.schema import BackoffSettings, Strict


class CameraSettings(Strict):
    """A camera: an OpenCV source or a synthetic scene, publishing camera.frame."""

    source: str = "synthetic"
    """'synthetic', a device index ('0'), a video file path, or an rtsp:// / http:// URL."""
    min_fps: float = Field(1.0, gt=0)
    """Lowest frame rate the adaptive rate goes down to, frames/s."""
    max_fps: float = Field(10.0, gt=0)
    """Highest frame rate (also the rate before any detector latency is heard), frames/s."""
    latency_headroom: float = Field(1.5, ge=1.0)
    """Frame period = this x the smoothed detector latency (from detect.* latency_ms), within the fps bounds."""
    blur_below: float = Field(30.0, ge=0)
    """Flag 'blurry' when the variance of the Laplacian is below this (unitless)."""
    dark_below: float = Field(40.0, ge=0, le=255)
    """Flag 'dark' when the mean grey level is below this, 0..255."""
    bright_above: float = Field(220.0, ge=0, le=255)
    """Flag 'bright' when the mean grey level is above this, 0..255."""
    reconnect: BackoffSettings = BackoffSettings()
    """Backoff between attempts to reopen a lost or unopenable source (reset_after_s unused)."""
    loop_file: bool = True
    """A video file starts again at its end instead of counting as a lost source."""
    width: int = Field(160, ge=16, le=4096)
    """Synthetic source: frame width, pixels."""
    height: int = Field(120, ge=16, le=4096)
    """Synthetic source: frame height, pixels."""
    objects: int = Field(4, ge=0, le=50)
    """Synthetic source: number of moving shapes."""
    kinds: list[Literal["circle", "square", "triangle", "cross", "ring"]] = ["circle", "square", "triangle"]
    """Synthetic source: kinds of shapes drawn."""
    speed_px_s: float = Field(12.0, ge=0)
    """Synthetic source: speed of the shapes, pixels/s."""
    seed: int = 0
    """Synthetic source: random seed of the scene."""

    @field_validator("max_fps")
    @classmethod
    def _fps_order(cls, v: float, info: Any) -> float:
        low = info.data.get("min_fps")
        if low is not None and v < low:
            raise ValueError(f"max_fps {v} is below min_fps {low}")
        return v
