"""The tracker kind: per-frame detections (``detect.<signal>``) in, stable tracks (``track.<signal>``) out."""

from actors.spec import KindSpec
from actors.tracker.settings import TrackerSettings
from bus.bodies.vision import Tracks

SPEC = KindSpec(
    name="tracker",
    description="stable tracks over the last N frames (k-of-N presence, smoothed boxes, ids): detect.* in, track.* out",
    actor="actors.tracker.actor:TrackerActor",
    settings=TrackerSettings,
    publishes=(Tracks,),
)
