"""From raw readings to a clean batch: align, validate, calibrate.

* ``Aligner`` pairs accelerometer and gyroscope streams that arrive apart
  (Sensor Logger sends each on its own clock): every accelerometer reading
  takes the gyroscope value interpolated at its time. It waits up to
  ``align_wait_s`` for gyroscope readings past it; after that it goes out
  with what there is (no gyroscope at all: zeros, flag ``no_gyro``).
* ``Validator`` drops what cannot be a reading - NaN/inf, |acc| > 16 g,
  |gyro| > 35 rad/s, a timestamp that repeats or goes backwards - and finds
  dropouts (gaps over ``dropout_factor`` sample periods); each with a flag
  and a counter.
* ``Calibrator`` removes sensor biases learned from stationary periods:
  while every axis is still (small standard deviation over a window), the
  mean gyroscope reading is its bias, and so is the mean acceleration
  (or, with gravity included, its magnitude error along gravity).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from actors.lib.imu.readings import Readings
from bus.bodies.imu import ImuFlag
from actors.sensor.settings import CalibrationSettings, ValidationSettings

GYRO_HISTORY_S = 2.0
"""Gyroscope readings kept for interpolation, seconds."""
GYRO_REACH_S = 0.25
"""An accelerometer reading farther than this from any gyroscope reading gets no gyro, seconds."""


class Aligner:
    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._acc_t: list[np.ndarray] = []
        self._acc: list[np.ndarray] = []
        self._arrived: list[np.ndarray] = []
        self._gyro_t = np.zeros(0)
        self._gyro = np.zeros((0, 3))
        self._ready: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, readings: Readings, now: float) -> None:
        if readings.acc is not None and readings.gyro is not None:
            self._ready.append((readings.t, readings.acc, readings.gyro))
        elif readings.acc is not None:
            self._acc_t.append(readings.t)
            self._acc.append(readings.acc)
            self._arrived.append(np.full(len(readings.t), now))
        elif readings.gyro is not None:
            ok = np.isfinite(readings.t) & np.isfinite(readings.gyro).all(axis=1)
            t = np.concatenate([self._gyro_t, readings.t[ok]])
            g = np.concatenate([self._gyro, readings.gyro[ok]])
            t, first = np.unique(t, return_index=True)   # sorted, duplicates out: np.interp needs that
            keep = t >= t[-1] - GYRO_HISTORY_S if len(t) else slice(None)
            self._gyro_t, self._gyro = t[keep], g[first][keep]

    def take(self, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Readings ready to go: t, acc, gyro, and whether some lacked a gyroscope."""
        out_t, out_acc, out_gyro = [], [], []
        for t, a, g in self._ready:
            out_t.append(t)
            out_acc.append(a)
            out_gyro.append(g)
        self._ready.clear()
        no_gyro = False
        if self._acc_t:
            t = np.concatenate(self._acc_t)
            a = np.concatenate(self._acc)
            arrived = np.concatenate(self._arrived)
            newest_gyro = self._gyro_t[-1] if len(self._gyro_t) else -np.inf
            ready = (t <= newest_gyro) | (arrived <= now - self.wait_s) | ~np.isfinite(t)
            if ready.any():
                g, missing = self._gyro_at(t[ready])
                no_gyro = bool(missing.any())
                out_t.append(t[ready])
                out_acc.append(a[ready])
                out_gyro.append(g)
            self._acc_t, self._acc, self._arrived = [t[~ready]], [a[~ready]], [arrived[~ready]]
            if not (~ready).any():
                self._acc_t, self._acc, self._arrived = [], [], []
        if not out_t:
            return np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)), False
        return np.concatenate(out_t), np.concatenate(out_acc), np.concatenate(out_gyro), no_gyro

    def _gyro_at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._gyro_t) == 0:
            return np.zeros((len(t), 3)), np.ones(len(t), dtype=bool)
        safe_t = np.where(np.isfinite(t), t, self._gyro_t[-1])
        g = np.stack([np.interp(safe_t, self._gyro_t, self._gyro[:, c]) for c in range(3)], axis=1)
        last = len(self._gyro_t) - 1
        idx = np.searchsorted(self._gyro_t, safe_t)
        nearest = np.minimum(np.abs(self._gyro_t[np.clip(idx - 1, 0, last)] - safe_t),
                             np.abs(self._gyro_t[np.clip(idx, 0, last)] - safe_t))
        missing = nearest > GYRO_REACH_S
        g[missing] = 0.0
        return g, missing


@dataclass
class Checked:
    t: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray
    received: int
    flags: set[str] = field(default_factory=set)
    missing: int = 0
    """Readings the dropouts in this batch lost (estimated from the sample period)."""

    @property
    def quality(self) -> float:
        kept = len(self.t)
        if self.received == 0:
            return 0.0
        return float(kept / self.received * (kept / (kept + self.missing) if kept else 0.0))


class Validator:
    def __init__(self, settings: ValidationSettings, rate_hz: float, gravity: float = 9.80665) -> None:
        self.max_acc = settings.max_acc_g * gravity
        self.max_gyro = settings.max_gyro
        self.period_s = 1.0 / rate_hz
        self.dropout_s = settings.dropout_factor * self.period_s
        self.last_t: float | None = None
        self.counts: Counter[str] = Counter()
        """Readings dropped per flag, and dropouts (events) and missing readings."""

    def check(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray) -> Checked:
        n = len(t)
        flags: set[str] = set()
        t_ok = np.isfinite(t)
        values_ok = np.isfinite(acc).all(axis=1) & np.isfinite(gyro).all(axis=1)
        self._drop(flags, ImuFlag.NONFINITE, ~(t_ok & values_ok))
        with np.errstate(invalid="ignore", over="ignore"):
            acc_bad = t_ok & values_ok & (np.linalg.norm(np.nan_to_num(acc), axis=1) > self.max_acc)
            gyro_bad = t_ok & values_ok & ~acc_bad & (np.linalg.norm(np.nan_to_num(gyro), axis=1) > self.max_gyro)
        self._drop(flags, ImuFlag.ACC_RANGE, acc_bad)
        self._drop(flags, ImuFlag.GYRO_RANGE, gyro_bad)
        values_ok &= ~acc_bad & ~gyro_bad
        keep = np.zeros(n, dtype=bool)
        missing = 0
        last = self.last_t
        # Sequential: a reading that arrived in order is the next one's reference
        # even when its values are dropped (it did arrive: no dropout there).
        for i in np.flatnonzero(t_ok):
            ti = float(t[i])
            if last is not None and ti <= last:
                if values_ok[i]:
                    flag = ImuFlag.DUPLICATE if ti == last else ImuFlag.NON_MONOTONIC
                    flags.add(flag.value)
                    self.counts[flag.value] += 1
                continue
            if last is not None and ti - last > self.dropout_s:
                flags.add(ImuFlag.DROPOUT.value)
                self.counts[ImuFlag.DROPOUT.value] += 1
                lost = max(int(round((ti - last) / self.period_s)) - 1, 1)
                missing += lost
                self.counts["missing"] += lost
            keep[i] = values_ok[i]
            last = ti
        self.last_t = last
        return Checked(t[keep], acc[keep], gyro[keep], n, flags, missing)

    def _drop(self, flags: set[str], flag: ImuFlag, mask: np.ndarray) -> None:
        count = int(mask.sum())
        if count:
            flags.add(flag.value)
            self.counts[flag.value] += count


class Calibrator:
    def __init__(self, settings: CalibrationSettings) -> None:
        self.s = settings
        self.acc_bias = np.zeros(3)
        """m/s²."""
        self.gyro_bias = np.zeros(3)
        """rad/s."""
        self.updates = 0
        """Stationary windows learned from."""
        self._t: deque[float] = deque()
        self._rows: deque[np.ndarray] = deque()

    @property
    def calibrated(self) -> bool:
        return self.updates > 0 or not self.s.enabled

    def apply(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Learn from ``acc``/``gyro`` (raw, validated) and return them with the biases removed."""
        if self.s.enabled and len(t):
            self._learn(t, acc, gyro)
        return (acc - self.acc_bias).astype(np.float32), (gyro - self.gyro_bias).astype(np.float32)

    def _learn(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray) -> None:
        rows = np.hstack([acc, gyro])
        self._t.extend(t.tolist())
        self._rows.extend(rows)
        while self._t and self._t[0] < self._t[-1] - self.s.stationary_window_s:
            self._t.popleft()
            self._rows.popleft()
        if len(self._t) < 10 or self._t[-1] - self._t[0] < 0.9 * self.s.stationary_window_s:
            return
        window = np.stack(self._rows)
        std = window.std(axis=0)
        mean = window.mean(axis=0)
        still = (std[:3] < self.s.acc_std_max).all() and (std[3:] < self.s.gyro_std_max).all() \
            and float(np.linalg.norm(mean[3:])) < self.s.gyro_mean_max
        if not still:
            return
        if self.s.acc_includes_gravity:
            norm = float(np.linalg.norm(mean[:3]))
            acc_bias = mean[:3] - self.s.gravity * mean[:3] / norm if norm > 0 else np.zeros(3)
        else:
            acc_bias = mean[:3]
        alpha = 1.0 if self.updates == 0 else self.s.alpha
        self.acc_bias += alpha * (acc_bias - self.acc_bias)
        self.gyro_bias += alpha * (mean[3:] - self.gyro_bias)
        self.updates += 1
        # Next judgement on fresh readings, so one still second counts once.
        self._t.clear()
        self._rows.clear()
