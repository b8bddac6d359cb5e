"""Stable tracks from per-frame detections: k-of-N presence, smoothed boxes, ids. Pure.

A per-frame detector flickers: a missed frame makes an object vanish, a
false positive makes one appear, and boxes jitter by a few pixels. A
``SignalTracker`` keeps, for each object, the last N frames' hit/miss
history (the production system's "5-frame stabilisation buffer": 3 frames
for speed, 7-10 for stability):

* detections are matched to open tracks greedily by IoU (highest first, at
  least ``min_iou``); an unmatched detection opens a new track (a new id);
* a track turns *present* once it was seen in ``k_present`` of its last N
  frames, and *gone* once it was missed in ``k_gone`` of its last N frames; a
  track that is not present and was seen in none of its last N frames is
  closed (its id is never reused);
* its box is an exponential moving average of the matched detections
  (``smoothing`` is the weight of the old box), so jitter is damped while a
  moving object is still followed.

So a real appearance seen in every frame is reported after ``k_present``
(<= N) frames, and a single missed frame or a lone false positive changes
nothing.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class TrackerParams:
    window: int = 5
    """N: frames of history per track."""
    k_present: int = 3
    """Hits in the last N frames that make a track present."""
    k_gone: int = 3
    """Misses in the last N frames that make a present track gone."""
    min_iou: float = 0.2
    """Least overlap (intersection over union) for a detection to continue a track."""
    smoothing: float = 0.6
    """Weight of the previous box in the smoothed box, 0 (no smoothing) .. <1."""
    min_score: float = 0.0
    """Detections scoring below this are ignored."""
    max_tracks: int = 64
    """Open tracks per signal; beyond it the weakest new detections open none."""

    def __post_init__(self) -> None:
        if not 1 <= self.k_present <= self.window or not 1 <= self.k_gone <= self.window:
            raise ValueError(f"k_present ({self.k_present}) and k_gone ({self.k_gone}) must be in 1..window "
                             f"({self.window})")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing {self.smoothing} must be in [0, 1)")


@dataclass
class Track:
    id: int
    box: np.ndarray
    """float64 x1, y1, x2, y2, smoothed."""
    history: deque[bool]
    score: float = 0.0
    present: bool = False
    age: int = 1
    """Frames since the track was opened."""

    @property
    def hits(self) -> int:
        return sum(self.history)

    @property
    def misses(self) -> int:
        return len(self.history) - self.hits

    def to_body(self) -> dict:
        return {"id": self.id, "box": [round(float(v), 2) for v in self.box], "present": self.present,
                "age": self.age, "hits": self.hits, "score": round(self.score, 4)}


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (M x 4) with every box of ``b`` (K x 4): M x K."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class SignalTracker:
    params: TrackerParams = field(default_factory=TrackerParams)
    tracks: list[Track] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=itertools.count)
    flips: int = 0
    """Present/gone changes so far (for the heartbeat and the stability test)."""

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> list[Track]:
        """One frame's detections (K x 4 boxes, K scores) -> the open tracks after it."""
        p = self.params
        keep = scores >= p.min_score
        boxes, scores = np.asarray(boxes, np.float64)[keep], np.asarray(scores, np.float64)[keep]
        overlap = iou(np.array([t.box for t in self.tracks]).reshape(-1, 4), boxes)
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        for flat in np.argsort(-overlap, axis=None):
            ti, di = divmod(int(flat), overlap.shape[1])
            if overlap[ti, di] < p.min_iou:
                break
            if ti in matched_tracks or di in matched_dets:
                continue
            matched_tracks.add(ti)
            matched_dets.add(di)
            track = self.tracks[ti]
            track.box = p.smoothing * track.box + (1 - p.smoothing) * boxes[di]
            track.score = float(scores[di])
            track.history.append(True)
        for ti, track in enumerate(self.tracks):
            track.age += 1
            if ti not in matched_tracks:
                track.history.append(False)
        for di in np.argsort(-scores):
            if int(di) in matched_dets or len(self.tracks) >= p.max_tracks:
                continue
            self.tracks.append(Track(next(self.ids), boxes[di].copy(), deque([True], maxlen=p.window),
                                     float(scores[di])))
        for track in self.tracks:
            if not track.present and track.hits >= p.k_present:
                track.present = True
                self.flips += 1
            elif track.present and track.misses >= p.k_gone:
                track.present = False
                self.flips += 1
        self.tracks = [t for t in self.tracks if t.present or t.hits > 0]
        return self.tracks

    @property
    def present(self) -> int:
        return sum(t.present for t in self.tracks)
