"""Body of ``gesture.recognized``: one recognized motion segment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bus.messages import Body


@dataclass
class GestureRecognized(Body):
    TOPIC: ClassVar[str] = "gesture.recognized"

    name: str
    """Name of the best-matching gesture template."""
    confidence: float
    """0..1: probability that the name is right, calibrated on the store's cross-validation."""
    is_outlier: bool
    """The match distance lies more than 3 sigma above the template's usual distance."""
    processing_time_ms: float
    """From the handler receiving the (decoded) batch that closed the segment to this message, milliseconds."""
    template_version: int
    """Version of the matched gesture's template in the store (bumped on every retrain that changes it)."""
    distance: float = 0.0
    """DTW distance to the nearest sample of the template (normalised, unitless)."""
    threshold: float = 0.0
    """Acceptance threshold of the template at the time of the match (same unit as distance)."""
    t_start: float = 0.0
    """Segment start, seconds (clock of sensor.imu t)."""
    t_end: float = 0.0
    """Segment end, seconds (clock of sensor.imu t)."""
    runner_up: str = ""
    """Second-best gesture name, or '' with a single template."""
    store_version: int = 0
    """Revision of the whole gesture store the match was made with."""
