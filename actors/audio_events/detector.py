"""Streaming sound-event detection: PCM in, ``AudioEvent``s out (shared by the actor and batch mode).

``EventDetector`` = ``PatchFramer`` (YAMNet framing) -> classifier -> ``EventTracker``.
A class is *on* in a patch when its score reaches that class's threshold;
consecutive on-patches make one event, published when the class goes off
(or the stream ends). Each patch speaks for the middle of its window (its
hop, 0.24-0.72 s into the 0.96 s patch; the first patch of a stream from its
start), so an event runs from the first on-patch's middle to the last one's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from actors.audio_events.features import PATCH_HOP_S, PATCH_S, PatchFramer
from bus.bodies.audio import AudioEvent

Classifier = Callable[[np.ndarray], np.ndarray]
EDGE_S = (PATCH_S - PATCH_HOP_S) / 2  # 0.24 s: the part of a patch its neighbours see better


@dataclass
class TrackerParams:
    labels: list[str]
    thresholds: np.ndarray
    """Per class, 0..1."""
    report: np.ndarray
    """Per class: publish its events (background classes such as noise and silence are not)."""
    min_patches: int = 1
    model: str = ""

    @classmethod
    def build(cls, labels: list[str], thresholds: dict[str, float], default_threshold: float,
              report: list[str], ignore: list[str], min_patches: int = 1, model: str = "") -> "TrackerParams":
        """``report`` empty: every label not in ``ignore``. Unknown labels in thresholds/report are errors."""
        unknown = sorted((set(thresholds) | set(report)) - set(labels))
        if unknown:
            shown = ", ".join(labels[:12]) + (" ..." if len(labels) > 12 else "")
            raise ValueError(f"unknown event labels {unknown}: the classifier knows {shown}")
        th = np.array([thresholds.get(label, default_threshold) for label in labels], np.float32)
        rep = np.array([(label in report) if report else (label not in ignore) for label in labels])
        return cls(labels, th, rep, min_patches, model)


@dataclass
class _Open:
    t_start: float
    t_end: float
    score: float
    patches: int = 1


@dataclass
class EventTracker:
    params: TrackerParams
    stream: str = ""
    t0: float = 0.0
    open: dict[int, _Open] = field(default_factory=dict)

    def update(self, t_starts: np.ndarray, scores: np.ndarray) -> list[AudioEvent]:
        events: list[AudioEvent] = []
        p = self.params
        on_all = (scores >= p.thresholds) & p.report
        for t, row, on in zip(t_starts, scores, on_all):
            lo = t if t <= self.t0 else t + EDGE_S
            hi = t + PATCH_S - EDGE_S
            for c in np.flatnonzero(on):
                current = self.open.get(c)
                if current is None:
                    self.open[c] = _Open(lo, hi, float(row[c]))
                else:
                    current.t_end, current.score = hi, max(current.score, float(row[c]))
                    current.patches += 1
            for c in [c for c in self.open if not on[c]]:
                events.extend(self._close(c))
        return events

    def _close(self, c: int, t_end_max: float | None = None) -> list[AudioEvent]:
        ev = self.open.pop(c)
        if ev.patches < self.params.min_patches:
            return []
        t_end = ev.t_end if t_end_max is None else min(ev.t_end, t_end_max)
        return [AudioEvent(label=self.params.labels[c], score=round(ev.score, 4), t_start=round(ev.t_start, 3),
                           t_end=round(max(t_end, ev.t_start), 3), stream=self.stream, patches=ev.patches,
                           model=self.params.model)]

    def flush(self, t_end_stream: float) -> list[AudioEvent]:
        events: list[AudioEvent] = []
        for c in sorted(self.open):
            events.extend(self._close(c, t_end_stream))
        return sorted(events, key=lambda e: e.t_start)


class EventDetector:
    """One stream: ``feed`` 16 kHz mono int16 chunks, get the events that ended; ``flush`` at the end."""

    def __init__(self, classifier: Classifier, params: TrackerParams, stream: str = "", t0: float = 0.0) -> None:
        self.classifier = classifier
        self.framer = PatchFramer(t0)
        self.tracker = EventTracker(params, stream, t0)
        self.patches = 0

    def feed(self, pcm: np.ndarray) -> list[AudioEvent]:
        patches = self.framer.feed(pcm)
        return self._classify(patches.data, patches.t_start)

    def _classify(self, data: np.ndarray, t_start: np.ndarray) -> list[AudioEvent]:
        if data.shape[0] == 0:
            return []
        self.patches += data.shape[0]
        return self.tracker.update(t_start, self.classifier(data))

    def flush(self) -> list[AudioEvent]:
        tail = self.framer.flush()
        events = self._classify(tail.data, tail.t_start)
        return events + self.tracker.flush(self.framer.t0 + self.framer.duration_s)
