"""Synthetic IMU: scripted gestures with natural variation and sensor noise.

Each gesture is a shape: a function of normalised time u in [0, 1] giving
six channels (acc x, y, z in m/s² without gravity; gyro x, y, z in rad/s),
starting and ending at rest. A performance varies it the way people do:
duration (speed), amplitude, a non-linear time warp, a small tilt of the
device, per-axis gain; the sensor adds white noise and constant biases.

Pure functions and numpy only (no actor, no bus): the sensor actor streams
it, and the template script, tests and benchmarks draw samples from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Shape = Callable[[np.ndarray], np.ndarray]
"""u (n,) in [0, 1] -> (n, 6): acc xyz m/s², gyro xyz rad/s."""


def _envelope(u: np.ndarray) -> np.ndarray:
    return np.sin(np.pi * u) ** 2


def _bump(u: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((u - centre) / width) ** 2)


def _channels(u: np.ndarray, **axes: np.ndarray) -> np.ndarray:
    out = np.zeros((len(u), 6))
    for i, name in enumerate(("ax", "ay", "az", "gx", "gy", "gz")):
        if name in axes:
            out[:, i] = axes[name]
    return out


def wave(u: np.ndarray) -> np.ndarray:
    w = _envelope(u)
    return _channels(u, ax=8 * np.sin(4 * np.pi * u) * w, gz=3 * np.cos(4 * np.pi * u) * w)


def circle(u: np.ndarray) -> np.ndarray:
    w = _envelope(u)
    return _channels(u, ax=6 * np.sin(2 * np.pi * u) * w, ay=6 * np.cos(2 * np.pi * u) * w, gz=2.5 * w)


def punch(u: np.ndarray) -> np.ndarray:
    return _channels(u, ay=12 * _bump(u, 0.3, 0.08) - 12 * _bump(u, 0.62, 0.1),
                     gx=0.6 * _bump(u, 0.45, 0.15))


def lift(u: np.ndarray) -> np.ndarray:
    w = _envelope(u)
    return _channels(u, az=7 * _bump(u, 0.25, 0.1) - 7 * _bump(u, 0.75, 0.1), gx=1.5 * np.sin(2 * np.pi * u) * w)


def shake(u: np.ndarray) -> np.ndarray:
    w = _envelope(u)
    return _channels(u, ax=7 * np.sin(10 * np.pi * u) * w, gy=2 * np.cos(10 * np.pi * u) * w)


def twist(u: np.ndarray) -> np.ndarray:
    w = _envelope(u)
    return _channels(u, gy=5 * np.sin(2 * np.pi * u) * w, ax=2 * np.sin(2 * np.pi * u) * w, az=1.5 * w)


def swipe_left(u: np.ndarray) -> np.ndarray:
    return _channels(u, ax=-9 * _bump(u, 0.3, 0.1) + 9 * _bump(u, 0.7, 0.1), gz=-2 * _envelope(u))


def swipe_right(u: np.ndarray) -> np.ndarray:
    return _channels(u, ax=9 * _bump(u, 0.3, 0.1) - 9 * _bump(u, 0.7, 0.1), gz=2 * _envelope(u))


GESTURES: dict[str, Shape] = {
    "wave": wave, "circle": circle, "punch": punch, "lift": lift, "shake": shake, "twist": twist,
    "swipe_left": swipe_left, "swipe_right": swipe_right,
}
"""The scripted gestures, by name."""


def random_shape(seed: int) -> Shape:
    """A distinct smooth gesture: a few Gaussian bumps on a few channels (benchmarks need many templates)."""
    rng = np.random.default_rng(seed)
    bumps = []
    for channel in rng.choice(6, size=rng.integers(2, 5), replace=False):
        scale = 8.0 if channel < 3 else 3.0
        for _ in range(rng.integers(1, 4)):
            bumps.append((int(channel), rng.uniform(-scale, scale), rng.uniform(0.15, 0.85), rng.uniform(0.05, 0.15)))

    def shape(u: np.ndarray) -> np.ndarray:
        out = np.zeros((len(u), 6))
        for channel, amp, centre, width in bumps:
            out[:, channel] += amp * _bump(u, centre, width)
        return out * _envelope(u)[:, None] ** 0.25

    return shape


@dataclass(frozen=True)
class Variation:
    """How much performances differ; each is drawn uniformly within its range."""

    duration_s: tuple[float, float] = (0.7, 1.4)
    """Gesture duration, seconds (speed)."""
    amplitude: tuple[float, float] = (0.7, 1.3)
    """Overall gain."""
    axis_gain: float = 0.1
    """Per-axis gain spread, a fraction (0.1: +/-10%)."""
    warp: float = 0.12
    """Strength of the monotonic time warp (0: none; < 0.25 keeps it monotonic)."""
    tilt_deg: float = 8.0
    """Largest random rotation of the device frame, degrees."""
    acc_noise: tuple[float, float] = (0.1, 0.35)
    """White noise of the accelerometer, m/s² (standard deviation)."""
    gyro_noise: tuple[float, float] = (0.01, 0.05)
    """White noise of the gyroscope, rad/s (standard deviation)."""


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(0, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def perform(shape: Shape, rng: np.random.Generator, rate_hz: float = 100.0,
            variation: Variation = Variation()) -> np.ndarray:
    """One noiseless performance of ``shape``: (n, 6) at ``rate_hz``."""
    duration = rng.uniform(*variation.duration_s)
    n = max(int(round(duration * rate_hz)), 8)
    u = np.linspace(0.0, 1.0, n)
    a = rng.uniform(-variation.warp, variation.warp)
    warped = u + 4 * a * u * (1 - u) * (1 - u)
    values = shape(warped) * rng.uniform(*variation.amplitude)
    values *= 1 + rng.uniform(-variation.axis_gain, variation.axis_gain, size=6)
    rot = _rotation(rng, variation.tilt_deg)
    values[:, :3] = values[:, :3] @ rot.T
    values[:, 3:] = values[:, 3:] @ rot.T
    return values


def add_noise(values: np.ndarray, rng: np.random.Generator, variation: Variation = Variation(),
              acc_bias: Sequence[float] = (0, 0, 0), gyro_bias: Sequence[float] = (0, 0, 0)) -> np.ndarray:
    out = values.copy()
    out[:, :3] += rng.normal(0, rng.uniform(*variation.acc_noise), size=(len(out), 3)) + np.asarray(acc_bias)
    out[:, 3:] += rng.normal(0, rng.uniform(*variation.gyro_noise), size=(len(out), 3)) + np.asarray(gyro_bias)
    return out


@dataclass
class Sample:
    """One recorded-like performance: times and readings, with the truth."""

    name: str
    t: np.ndarray
    """float64 (n,), seconds from 0."""
    acc: np.ndarray
    """float32 (n, 3), m/s²."""
    gyro: np.ndarray
    """float32 (n, 3), rad/s."""


def make_sample(name: str, rng: np.random.Generator, *, rate_hz: float = 100.0, shape: Shape | None = None,
                variation: Variation = Variation(), rest_s: float = 0.1) -> Sample:
    """A noisy performance of gesture ``name`` with ``rest_s`` of rest before and after."""
    values = perform(shape or GESTURES[name], rng, rate_hz, variation)
    pad = np.zeros((int(round(rest_s * rate_hz)), 6))
    values = add_noise(np.vstack([pad, values, pad]), rng, variation)
    t = np.arange(len(values)) / rate_hz
    return Sample(name, t, values[:, :3].astype(np.float32), values[:, 3:].astype(np.float32))


@dataclass(frozen=True)
class Event:
    """Ground truth of a scripted stream: which gesture, when (seconds)."""

    name: str
    t_start: float
    t_end: float


class ScriptedStream:
    """An endless IMU stream: rest, a scripted gesture, rest, the next one...

    ``read_until(t)`` returns every reading up to time ``t`` (seconds on the
    stream's clock, which starts at ``t0``); ``events`` is the ground truth.
    The device has constant biases, which the sensor's calibration removes.
    """

    def __init__(self, script: Sequence[str], *, rate_hz: float = 100.0, pause_s: tuple[float, float] = (1.0, 2.0),
                 seed: int = 0, t0: float = 0.0, variation: Variation = Variation(),
                 shapes: dict[str, Shape] | None = None, acc_bias: Sequence[float] = (0.08, -0.05, 0.1),
                 gyro_bias: Sequence[float] = (0.03, -0.02, 0.015), shuffle: bool = False) -> None:
        self.shapes = shapes or GESTURES
        unknown = [n for n in script if n not in self.shapes]
        if unknown or not script:
            raise ValueError(f"script names unknown gestures {unknown}; known: {sorted(self.shapes)}"
                             if unknown else "script is empty")
        self.script = list(script)
        self.rate_hz = rate_hz
        self.pause_s = pause_s
        self.variation = variation
        self.shuffle = shuffle
        self.acc_bias = np.asarray(acc_bias, dtype=float)
        self.gyro_bias = np.asarray(gyro_bias, dtype=float)
        self.rng = np.random.default_rng(seed)
        self.events: list[Event] = []
        self._noise_acc = float(np.mean(variation.acc_noise))
        self._noise_gyro = float(np.mean(variation.gyro_noise))
        self._next_index = 0
        self._n_emitted = 0
        self.t0 = t0
        self._pending = np.zeros((0, 6))
        self._pending_start = 0

    def _next_name(self) -> str:
        if self.shuffle:
            return str(self.rng.choice(self.script))
        name = self.script[self._next_index % len(self.script)]
        self._next_index += 1
        return name

    def _extend(self) -> None:
        """Append one pause and one gesture to the pending readings."""
        pause = np.zeros((int(round(self.rng.uniform(*self.pause_s) * self.rate_hz)), 6))
        name = self._next_name()
        gesture = perform(self.shapes[name], self.rng, self.rate_hz, self.variation)
        start = self._pending_start + len(self._pending) + len(pause)
        self.events.append(Event(name, self.t0 + start / self.rate_hz, self.t0 + (start + len(gesture)) / self.rate_hz))
        block = np.vstack([pause, gesture])
        block[:, :3] += self.rng.normal(0, self._noise_acc, size=(len(block), 3)) + self.acc_bias
        block[:, 3:] += self.rng.normal(0, self._noise_gyro, size=(len(block), 3)) + self.gyro_bias
        self._pending = np.vstack([self._pending, block])

    def read_until(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Readings with time < ``t``: t (n,) float64 s, acc (n, 3) float32, gyro (n, 3) float32."""
        n_total = int(np.floor((t - self.t0) * self.rate_hz))
        while self._pending_start + len(self._pending) < n_total:
            self._extend()
        take = max(0, n_total - self._n_emitted)
        block = self._pending[:take]
        self._pending = self._pending[take:]
        times = self.t0 + (self._n_emitted + np.arange(take)) / self.rate_hz
        self._n_emitted += take
        self._pending_start = self._n_emitted
        return times, block[:, :3].astype(np.float32), block[:, 3:].astype(np.float32)
