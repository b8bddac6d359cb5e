"""Bodies of ``gesture.recognized`` (a recognized motion segment) and ``gesture.unknown`` (one matching no gesture)."""

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


@dataclass
class GestureUnknown(Body):
    """A motion segment that is no gesture of the store: never published as ``gesture.recognized``."""

    TOPIC: ClassVar[str] = "gesture.unknown"

    nearest: str
    """Name of the nearest gesture template (which it is not)."""
    reason: str
    """Why it is no gesture: 'far' (beyond the nearest gesture's threshold) or 'ambiguous' (two about as near)."""
    distance: float
    """DTW distance to the nearest sample of ``nearest`` (normalised, unitless)."""
    threshold: float
    """Acceptance threshold of ``nearest`` at that time (same unit as distance)."""
    margin: float
    """log(runner-up distance / distance): how much nearer ``nearest`` is than the runner-up."""
    runner_up: str = ""
    """Second-nearest gesture name, or '' with a single template."""
    processing_time_ms: float = 0.0
    """From the handler receiving the batch that closed the segment to this message, milliseconds."""
    t_start: float = 0.0
    """Segment start, seconds (clock of sensor.imu t)."""
    t_end: float = 0.0
    """Segment end, seconds (clock of sensor.imu t)."""
    store_version: int = 0
    """Revision of the whole gesture store the match was made with."""
