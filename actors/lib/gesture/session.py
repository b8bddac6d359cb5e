"""Recording sessions: cutting gesture samples from ``sensor.imu``, resumable.

A session records ``target`` samples of one gesture. For each: a countdown,
then the first motion segment (the same ``Segmenter`` the recognizer uses)
that ends after "go" is the sample; its quality is scored and a poor one is
asked for again. The session file (``STORE_DIR/sessions/NAME.session``, a
``GuardedFile``: sealed, atomic) is saved after every sample, so a session
killed at any point resumes with every sample recorded before the kill.
When complete, its samples go into the store and the file is removed.

Samples taught from the synthetic sensor teach the scripted motions, not
the user's: ``synthetic_tell`` tells such a stream by the batches' source
(``synthetic``) or by timestamps on an exact grid (a phone's clock jitters
by tens of microseconds at least; a generated stream's does not).
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np

from actors.lib.gesture.segmenter import Segment, SegmentationSettings, Segmenter
from actors.lib.gesture.store import Sample, sample_problems
from bus.bodies.imu import ImuBatch, ImuFlag
from bus.pubsub import Subscriber
from config.storage import CorruptFileError, GuardedFile


@dataclass
class RecordingSession:
    name: str
    target: int
    samples: list[Sample] = field(default_factory=list)
    rejected: int = 0
    """Takes asked for again (poor quality, implausible)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started_at: float = field(default_factory=time.time)
    file: GuardedFile | None = None

    @classmethod
    def open(cls, folder: Path, name: str, target: int, *, fresh: bool = False) -> tuple["RecordingSession", bool]:
        """The session of ``name`` in ``folder``: resumed when one exists (returns True), else new."""
        gf = GuardedFile(folder / f"{name}.session", keep=2, retention_days=7)
        if gf.exists() and not fresh:
            try:
                loaded = gf.load()
            except CorruptFileError:
                loaded = None
            if loaded is not None:
                d = msgpack.unpackb(loaded.payload, raw=False)
                session = cls(d["name"], max(target, d["target"]), [Sample.from_dict(s) for s in d["samples"]],
                              d["rejected"], d["id"], d["started_at"], gf)
                return session, True
        return cls(name, target, file=gf), False

    @property
    def done(self) -> bool:
        return len(self.samples) >= self.target

    def save(self) -> None:
        assert self.file is not None
        payload = msgpack.packb({"name": self.name, "target": self.target, "rejected": self.rejected, "id": self.id,
                                 "started_at": self.started_at, "samples": [s.to_dict() for s in self.samples]},
                                use_bin_type=True)
        self.file.save(payload, kind="gesture-session", samples=len(self.samples))

    def remove(self) -> None:
        assert self.file is not None
        self.file.path.unlink(missing_ok=True)
        for backup in self.file.backups():
            backup.unlink(missing_ok=True)


SYNTHETIC_SOURCES = frozenset({"synthetic"})
"""Source kinds (``ImuBatch.source``) of generated streams."""
MIN_INTERVALS = 50
"""Reading intervals needed before the timing is judged."""
MAX_GRID_JITTER_S = 1e-6
"""Intervals that never stray further than this from their median are a generated grid, seconds."""


def synthetic_tell(sources: set[str], intervals: np.ndarray) -> str:
    """Why a stream looks like the synthetic sensor rather than a phone; '' when it does not (or too little seen).

    ``sources``: the ``ImuBatch.source`` values seen; ``intervals``: differences of consecutive reading times, s."""
    named = sorted(sources & SYNTHETIC_SOURCES)
    if named:
        return f"its batches come from the {named[0]!r} source"
    dt = np.asarray(intervals, dtype=np.float64)
    dt = dt[np.isfinite(dt) & (dt > 0)]
    if len(dt) >= MIN_INTERVALS:
        median = float(np.median(dt))
        jitter = float(np.max(np.abs(dt - median)))
        if jitter <= MAX_GRID_JITTER_S:
            return (f"its {len(dt) + 1} readings lie exactly {median * 1000:.3f} ms apart (jitter {jitter * 1e6:.2f} µs; "
                    "a phone's clock jitters)")
    return ""


def score_sample(segment: Segment, batch_quality: float, flags: set[str]) -> tuple[float, list[str]]:
    """0..1 and the problems: batch quality x signal-to-noise x plausibility."""
    sample = Sample(segment.t - segment.t[0], segment.acc, segment.gyro)
    problems = sample_problems(sample)
    snr_factor = float(np.clip(math.log10(max(segment.snr, 1.0)) / 2.0, 0.0, 1.0))   # 100x the floor: 1.0
    quality = batch_quality * snr_factor * (0.9 if ImuFlag.UNCALIBRATED.value in flags else 1.0)
    if ImuFlag.DROPOUT.value in flags:
        problems.append("the sensor dropped readings during the motion")
    return (0.0 if problems else quality), problems


class Recorder:
    """Feeds sensor.imu batches to a segmenter and returns the next sample after 'go'."""

    def __init__(self, sub: Subscriber, topic: str, settings: SegmentationSettings | None = None) -> None:
        self.sub = sub
        self.topic = topic
        self.segmenter = Segmenter(settings)
        self._recent: list[tuple[float, float, float, set[str]]] = []   # (t0, t1, quality, flags) per batch
        self.batches = 0
        self.sources: set[str] = set()
        """``ImuBatch.source`` values seen."""
        self.intervals: deque[float] = deque(maxlen=2000)
        """The latest intervals between consecutive readings, seconds."""
        self._last_t: float | None = None

    def _note(self, batch: ImuBatch) -> None:
        self.batches += 1
        self.sources.add(batch.source)
        if len(batch):
            t = np.asarray(batch.t, dtype=np.float64)
            if self._last_t is not None:
                self.intervals.append(float(t[0] - self._last_t))
            self.intervals.extend(np.diff(t).tolist())
            self._last_t = float(t[-1])

    def synthetic_tell(self) -> str:
        """Why the stream looks synthetic ('' when it does not, or too little was seen)."""
        return synthetic_tell(self.sources, np.fromiter(self.intervals, dtype=np.float64))

    def next_segment(self, go_wall: float, timeout_s: float,
                     tick: Callable[[], None] = lambda: None) -> tuple[Segment, float, set[str]] | None:
        """The first segment completed after wall time ``go_wall``, with the mean quality and flags of its batches."""
        deadline = go_wall + timeout_s
        while time.time() < deadline:
            tick()
            msg = self.sub.recv(timeout_ms=100)
            if msg is None or msg.topic != self.topic:
                continue
            batch = ImuBatch.from_body(msg.body)
            self._note(batch)
            if len(batch):
                self._recent.append((float(batch.t[0]), float(batch.t[-1]), batch.quality, set(batch.flags)))
                self._recent = self._recent[-400:]
            for seg in self.segmenter.feed(batch.t, batch.acc, batch.gyro):
                if time.time() < go_wall:
                    continue   # a motion before "go" is not a take
                overlapping = [(q, f) for t0, t1, q, f in self._recent if t1 >= seg.t_start and t0 <= seg.t_end]
                quality = float(np.mean([q for q, _ in overlapping])) if overlapping else 1.0
                flags = set().union(*[f for _, f in overlapping]) if overlapping else set()
                return seg, quality, flags
        return None

    def idle(self, seconds: float) -> None:
        """Keep consuming (the noise floor keeps learning) for ``seconds``."""
        end = time.time() + seconds
        while time.time() < end:
            msg = self.sub.recv(timeout_ms=50)
            if msg is not None and msg.topic == self.topic:
                batch = ImuBatch.from_body(msg.body)
                self._note(batch)
                self.segmenter.feed(batch.t, batch.acc, batch.gyro)


def sample_from(segment: Segment, quality: float, session_id: str) -> Sample:
    return Sample(segment.t - segment.t[0], segment.acc, segment.gyro, quality=round(quality, 4),
                  source=f"session:{session_id}")


def session_summary(session: RecordingSession) -> dict[str, Any]:
    return {"name": session.name, "target": session.target, "samples": len(session.samples),
            "rejected": session.rejected, "id": session.id}
