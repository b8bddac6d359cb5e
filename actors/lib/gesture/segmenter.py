"""Cutting motion segments out of a continuous IMU stream by motion energy.

Motion energy per reading is |acc|² + (GYRO_WEIGHT·|gyro|)², smoothed over
``smooth_s``. At rest it sits on the sensor's noise floor, which is tracked
(slow exponential average) while nothing happens; a segment starts when the
energy rises above ``on_factor`` x floor (never below ``min_energy``) and ends
once it has stayed under ``off_factor`` x floor for ``hold_s``
(``SegmentationSettings`` below documents each setting). The adaptive
floor makes the same settings work for a quiet phone on a table and a noisy
one in a hand. ``pre_s``/``post_s`` of context are kept around each segment.

Both the recognizer actor and ``sensorium gesture record`` use it, so a
recorded template is cut exactly like the motions it will be matched with.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from actors.lib.gesture.matching import GYRO_WEIGHT
from config.schema import Strict


class SegmentationSettings(Strict):
    smooth_s: float = Field(0.08, gt=0)
    """Moving-average window of the motion energy, seconds."""
    on_factor: float = Field(6.0, gt=1)
    """A segment starts when the energy exceeds this many times the noise floor."""
    off_factor: float = Field(3.0, gt=0)
    """It ends when the energy stays below this many times the noise floor..."""
    hold_s: float = Field(0.15, gt=0)
    """...for this long, seconds."""
    min_energy: float = Field(1.0, gt=0)
    """Lowest start threshold, (m/s²)²; the end threshold is at least half of it."""
    pre_s: float = Field(0.1, ge=0)
    """Context kept before the start, seconds."""
    post_s: float = Field(0.05, ge=0)
    """Context kept after the end, seconds."""
    min_s: float = Field(0.3, gt=0)
    """Shorter motions are ignored, seconds."""
    max_s: float = Field(3.0, gt=0)
    """Longer motions are dropped and the noise floor adapts to them, seconds."""
    floor_tau_s: float = Field(3.0, gt=0)
    """Time constant of the noise-floor average, seconds."""
    gap_s: float = Field(0.5, gt=0)
    """A time gap longer than this resets the segmenter, seconds."""


@dataclass
class Segment:
    t: np.ndarray
    """float64 (n,), seconds."""
    acc: np.ndarray
    """float32 (n, 3), m/s²."""
    gyro: np.ndarray
    """float32 (n, 3), rad/s."""
    peak_energy: float
    """Highest smoothed energy inside the segment, (m/s²)²."""
    noise_floor: float
    """Noise floor when the segment started, (m/s²)²."""

    @property
    def t_start(self) -> float:
        return float(self.t[0])

    @property
    def t_end(self) -> float:
        return float(self.t[-1])

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0])

    @property
    def snr(self) -> float:
        """Peak energy over the noise floor."""
        return self.peak_energy / max(self.noise_floor, 1e-6)


def motion_energy(acc: np.ndarray, gyro: np.ndarray) -> np.ndarray:
    acc = np.asarray(acc, dtype=np.float64)
    gyro = np.asarray(gyro, dtype=np.float64)
    return np.einsum("ij,ij->i", acc, acc) + GYRO_WEIGHT ** 2 * np.einsum("ij,ij->i", gyro, gyro)


class Segmenter:
    """Feed batches in time order; get back the segments they complete."""

    def __init__(self, settings: SegmentationSettings | None = None) -> None:
        self.s = settings or SegmentationSettings()
        self.noise_floor: float | None = None
        self.too_long = 0
        """Motions dropped for lasting longer than max_s."""
        self.too_short = 0
        """Motions ignored for lasting less than min_s."""
        self.resets = 0
        """Times a time gap reset the segmenter."""
        self._reset()

    def _reset(self) -> None:
        self._t: deque[float] = deque()
        self._rows: deque[np.ndarray] = deque()
        self._window: deque[float] = deque()
        self._window_sum = 0.0
        self._active = False
        self._start_t = 0.0
        self._last_loud_t = 0.0
        self._quiet_since: float | None = None
        self._peak = 0.0
        self._floor_at_start = 0.0
        self._last_t: float | None = None
        self._dt = 0.01

    @property
    def active(self) -> bool:
        return self._active

    def thresholds(self) -> tuple[float, float]:
        """(start, end) thresholds now, (m/s²)²."""
        floor = self.noise_floor if self.noise_floor is not None else 0.0
        return max(self.s.min_energy, self.s.on_factor * floor), max(self.s.min_energy / 2, self.s.off_factor * floor)

    def feed(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray) -> list[Segment]:
        found: list[Segment] = []
        energy = motion_energy(acc, gyro)
        rows = np.hstack([np.asarray(acc, dtype=np.float32), np.asarray(gyro, dtype=np.float32)])
        for i in range(len(t)):
            seg = self._step(float(t[i]), float(energy[i]), rows[i])
            if seg is not None:
                found.append(seg)
        return found

    def _step(self, t: float, e: float, row: np.ndarray) -> Segment | None:
        s = self.s
        if self._last_t is not None:
            dt = t - self._last_t
            if dt > s.gap_s:
                self.resets += 1
                floor = self.noise_floor
                self._reset()
                self.noise_floor = floor
            elif dt > 0:
                self._dt += 0.05 * (dt - self._dt)
        self._last_t = t
        self._t.append(t)
        self._rows.append(row)
        width = max(1, int(round(s.smooth_s / max(self._dt, 1e-4))))
        self._window.append(e)
        self._window_sum += e
        while len(self._window) > width:
            self._window_sum -= self._window.popleft()
        level = max(self._window_sum / len(self._window), 0.0)
        on, off = self.thresholds()
        if not self._active:
            if level > on and len(self._window) >= width:
                self._active = True
                self._start_t = t - s.pre_s - s.smooth_s
                self._last_loud_t = t
                self._quiet_since = None
                self._peak = level
                self._floor_at_start = self.noise_floor if self.noise_floor is not None else level
            else:
                alpha = min(1.0, self._dt / s.floor_tau_s) if self.noise_floor is not None else 1.0
                self.noise_floor = level if self.noise_floor is None else self.noise_floor + alpha * (level - self.noise_floor)
                self._trim(t - s.pre_s - s.smooth_s - self._dt)
            return None
        self._peak = max(self._peak, level)
        if level >= off:
            self._last_loud_t = t
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = t
        if t - self._start_t > s.max_s + s.pre_s + s.hold_s + s.smooth_s:
            self.too_long += 1
            self._active = False
            # Sustained motion (walking, a car): raise the floor towards it.
            self.noise_floor = max(self.noise_floor or 0.0, level / s.on_factor * 1.2)
            self._trim(t)
            return None
        if self._quiet_since is not None and t - self._quiet_since >= s.hold_s:
            self._active = False
            end_t = self._last_loud_t + s.post_s
            seg = self._cut(self._start_t, end_t)
            self._trim(t - s.pre_s - s.smooth_s - self._dt)
            if seg is None or seg.duration_s < s.min_s:
                self.too_short += 1
                return None
            if seg.duration_s > s.max_s + s.pre_s + s.post_s:
                self.too_long += 1
                return None
            return seg
        return None

    def _cut(self, t0: float, t1: float) -> Segment | None:
        times = np.fromiter(self._t, dtype=np.float64, count=len(self._t))
        keep = (times >= t0) & (times <= t1)
        if keep.sum() < 2:
            return None
        rows = np.stack([r for r, k in zip(self._rows, keep) if k])
        return Segment(times[keep], rows[:, :3].copy(), rows[:, 3:].copy(), self._peak, self._floor_at_start)

    def _trim(self, before_t: float) -> None:
        while self._t and self._t[0] < before_t:
            self._t.popleft()
            self._rows.popleft()
