"""Bodies of the vision topics: ``camera.frame`` and ``detect.<signal>``.

The ``detect`` topic has one sub-topic per signal (``detect.circle``); the
body is the same for all of them. ``from_body`` checks the array shapes and
dtypes, so a consumer gets a ``BodyError`` naming the topic and field instead
of a crash deep in its own code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np

from bus.messages import ArraySpec, Body, BodyError

DETECT_PREFIX = "detect."
QUALITY_FLAGS = ("blurry", "dark", "bright")
"""Flags a frame may carry when its quality crosses the camera's thresholds."""


def detect_topic(signal: str) -> str:
    return f"{DETECT_PREFIX}{signal}"


@dataclass
class CameraFrame(Body):
    TOPIC: ClassVar[str] = "camera.frame"

    image: Annotated[np.ndarray, ArraySpec("uint8", ("H", "W", 3))]
    """uint8 H x W x 3, BGR (OpenCV's order)."""
    frame_id: int
    """Counts frames published by this camera instance, from 0."""
    fps: float
    """Frame rate the camera is publishing at when it sent this frame, frames/s."""
    quality: dict[str, float] = field(default_factory=dict)
    """``blur``: variance of the Laplacian of the grey image (higher is sharper, unitless);
    ``brightness``: mean grey level, 0..255."""
    flags: list[str] = field(default_factory=list)
    """Quality flags out of ``QUALITY_FLAGS``: thresholds crossed by this frame."""
    source: str = ""
    """What produced the frame: ``synthetic``, a device index, a file or a URL."""
    t_capture_ns: int = 0
    """Wall clock when the frame was captured, ns."""

    def check_image(self, max_side: int = 4096) -> np.ndarray:
        """The image if it is uint8 HxWx3 with sides in 8..max_side, else BodyError."""
        img = self.image
        if not isinstance(img, np.ndarray):
            raise BodyError(f"{self.TOPIC}: image is {type(img).__name__}, expected a uint8 HxWx3 array")
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise BodyError(f"{self.TOPIC}: image is {img.dtype} {img.shape}, expected uint8 HxWx3 (BGR)")
        if not (8 <= img.shape[0] <= max_side and 8 <= img.shape[1] <= max_side):
            raise BodyError(f"{self.TOPIC}: image is {img.shape[1]}x{img.shape[0]}, sides must be 8..{max_side}")
        return img


@dataclass
class Detections(Body):
    """Detections of one signal in one frame, on ``detect.<signal>``."""

    TOPIC: ClassVar[str] = "detect."  # the signal completes it: see topic()

    boxes: Annotated[np.ndarray, ArraySpec("float32", ("K", 4))]
    """float32 K x 4: x1, y1, x2, y2 in pixels of the camera frame."""
    scores: Annotated[np.ndarray, ArraySpec("float32", ("K",))]
    """float32 K: confidence 0..1 of each box (peak of the head's centre heatmap)."""
    frame_id: int
    """``frame_id`` of the camera.frame these come from."""
    head_version: str
    """Version of the head that produced them: "N" shipped (models/heads/SIGNAL/vN.pt), "uN" the user's."""
    latency_ms: float
    """Time the detector spent on this frame (backbone, every head, decoding), ms."""
    signal: str = ""
    """The signal (also the last segment of the topic)."""
    backbone_version: str = ""
    """Version of the shared backbone: "N" shipped (models/backbone/vN.pt), "uN" the user's."""

    def topic(self) -> str:
        return detect_topic(self.signal)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "Detections":
        det = super().from_body(body)
        boxes, scores = det.boxes, det.scores
        if not isinstance(boxes, np.ndarray) or boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
            raise BodyError(f"detect.*: boxes must be float32 Kx4, got {getattr(boxes, 'dtype', type(boxes))} "
                            f"{getattr(boxes, 'shape', '')}")
        if not isinstance(scores, np.ndarray) or scores.dtype != np.float32 or scores.shape != (boxes.shape[0],):
            raise BodyError(f"detect.*: scores must be float32 K={boxes.shape[0]}, got "
                            f"{getattr(scores, 'dtype', type(scores))} {getattr(scores, 'shape', '')}")
        return det


TRACK_PREFIX = "track."


def track_topic(signal: str) -> str:
    return f"{TRACK_PREFIX}{signal}"


@dataclass
class Tracks(Body):
    """Stable tracks of one signal after one frame, on ``track.<signal>`` (the tracker's output).

    Unlike ``detect.<signal>`` (what one frame showed), a track turns present
    only after it was seen in ``k`` of the last ``N`` frames and gone only after
    ``k`` misses of ``N``; its box is smoothed. Each entry of ``tracks``:
    ``id`` (int, per tracker instance and signal, never reused), ``box``
    ([x1, y1, x2, y2] pixels, smoothed), ``present`` (bool), ``age`` (frames
    since the track was opened), ``hits`` (frames of the last N it was seen
    in), ``score`` (its last detection score, 0..1).
    """

    TOPIC: ClassVar[str] = TRACK_PREFIX  # the signal completes it: see topic()

    signal: str
    """The signal (also the last segment of the topic)."""
    frame_id: int
    """``frame_id`` of the detections this update follows."""
    tracks: list[dict[str, Any]]
    """Open tracks, present or not yet / no longer present (see the class doc for the keys)."""
    window: int = 5
    """N: frames each track's history covers."""
    present: int = 0
    """How many of ``tracks`` are present."""

    def topic(self) -> str:
        return track_topic(self.signal)
