"""Settings of the gesture kind."""

from __future__ import annotations

from pydantic import Field

from actors.lib.gesture.acceptance import (DEFAULT_ACCEPT_SIGMA, DEFAULT_MAX_DISTANCE, DEFAULT_MIN_MARGIN,
                                           AcceptanceRule)
from actors.lib.gesture.segmenter import SegmentationSettings
from actors.lib.gesture.store import GestureStoreSettings
from config.schema import Strict


class GestureSettings(Strict):
    """The gesture recognizer: segments sensor.imu by motion energy and matches templates."""

    input_topic: str = "sensor.imu"
    store: GestureStoreSettings = GestureStoreSettings()
    segmentation: SegmentationSettings = SegmentationSettings()
    reload_check_s: float = Field(1.0, gt=0)
    """How often the store file is checked for changes, seconds."""
    accept_sigma: float = Field(DEFAULT_ACCEPT_SIGMA, gt=0)
    """A match is accepted up to the gesture's mean distance + this many sigma (adapts at run time)..."""
    max_distance: float = Field(DEFAULT_MAX_DISTANCE, gt=0)
    """...but never beyond this normalised DTW distance, however loose the gesture (unknown motions)..."""
    min_margin: float = Field(DEFAULT_MIN_MARGIN, ge=0)
    """...and only when log(runner-up distance / distance) is at least this (ambiguous motions)."""
    publish_unknown: bool = True
    """Publish rejected motions on gesture.unknown (they are counted in the heartbeat either way)."""
    outlier_sigma: float = Field(3.0, gt=0)
    """Matches beyond mean + this many sigma are published with is_outlier = true."""
    history_weight: float = Field(20.0, ge=1)
    """Effective number of recent accepted matches the adaptive threshold remembers."""
    min_confidence: float = Field(0.0, ge=0, le=1)
    """Accepted matches below this confidence are not published (counted)."""
    max_streams: int = Field(16, ge=1)
    """IMU streams segmented at once (one per sender and device); beyond it the least recently heard is dropped."""
    idle_drop_s: float = Field(30.0, gt=0)
    """A stream silent this long is dropped with its segmenter state, seconds."""

    def acceptance(self) -> AcceptanceRule:
        return AcceptanceRule(self.accept_sigma, self.max_distance, self.min_margin)
