"""A user who performs the shipped gesture names their own way, and motions nobody taught.

Built from ``actors/lib/imu/synthetic.py``'s building blocks, but unlike the
shipped templates (``make_templates.py``: the ``GESTURES`` shapes, 0.7-1.4 s,
0.7-1.3 x, no bias, seed 7): other shapes for the same names (other axes,
cycles, timing), slower and weaker performances, other sensor biases and
noise, other seeds.
"""

from __future__ import annotations

import numpy as np

from actors.lib.gesture.segmenter import Segmenter
from actors.lib.gesture.store import Sample
from actors.lib.imu.synthetic import GESTURES, ScriptedStream, Shape, Variation, _bump, _channels, _envelope, random_shape

USER_VARIATION = Variation(duration_s=(1.0, 1.9), amplitude=(0.5, 0.95), axis_gain=0.12, warp=0.15, tilt_deg=12.0,
                           acc_noise=(0.15, 0.4), gyro_noise=(0.02, 0.06))
"""Slower, weaker, more tilted and noisier than the shipped templates' performances."""
USER_ACC_BIAS = (0.2, -0.15, 0.12)
"""m/s² (the shipped templates have none; the live synthetic sensor 0.08, -0.05, 0.1)."""
USER_GYRO_BIAS = (-0.04, 0.035, 0.02)
"""rad/s."""


def _wave(u: np.ndarray) -> np.ndarray:        # three cycles, sideways and up
    w = _envelope(u)
    return _channels(u, ax=6 * np.sin(6 * np.pi * u) * w, ay=2.5 * np.sin(6 * np.pi * u) * w,
                     gz=2 * np.cos(6 * np.pi * u) * w)


def _circle(u: np.ndarray) -> np.ndarray:      # the other way round, in the x-z plane
    w = _envelope(u)
    return _channels(u, ax=5 * np.cos(2 * np.pi * u) * w, az=-5 * np.sin(2 * np.pi * u) * w, gy=-2 * w)


def _punch(u: np.ndarray) -> np.ndarray:       # forward along z, with a wrist turn
    return _channels(u, az=10 * _bump(u, 0.35, 0.1) - 8 * _bump(u, 0.7, 0.12), gy=1.2 * _bump(u, 0.5, 0.15))


def _lift(u: np.ndarray) -> np.ndarray:        # raised along y, tilting as it goes
    w = _envelope(u)
    return _channels(u, ay=6 * _bump(u, 0.3, 0.12) - 6 * _bump(u, 0.7, 0.12), gz=1.8 * np.sin(2 * np.pi * u) * w)


def _shake(u: np.ndarray) -> np.ndarray:       # four shakes along y
    w = _envelope(u)
    return _channels(u, ay=7 * np.sin(8 * np.pi * u) * w, gx=2.5 * np.cos(8 * np.pi * u) * w)


def _twist(u: np.ndarray) -> np.ndarray:       # about x rather than y
    w = _envelope(u)
    return _channels(u, gx=4 * np.sin(2 * np.pi * u) * w, ay=2 * np.sin(2 * np.pi * u) * w, az=1.5 * w)


def _swipe_left(u: np.ndarray) -> np.ndarray:  # a quicker start, a long stop, a roll
    return _channels(u, ax=-9 * _bump(u, 0.22, 0.07) + 6 * _bump(u, 0.65, 0.15), gy=-1.5 * _envelope(u),
                     gz=-1.0 * _envelope(u))


def _swipe_right(u: np.ndarray) -> np.ndarray:
    return _channels(u, ax=9 * _bump(u, 0.22, 0.07) - 6 * _bump(u, 0.65, 0.15), gy=1.5 * _envelope(u),
                     gz=1.0 * _envelope(u))


USER_SHAPES: dict[str, Shape] = {"wave": _wave, "circle": _circle, "punch": _punch, "lift": _lift, "shake": _shake,
                                 "twist": _twist, "swipe_left": _swipe_left, "swipe_right": _swipe_right}
"""The user's way of performing each shipped gesture name."""
assert set(USER_SHAPES) == set(GESTURES)


def _figure_eight(u: np.ndarray) -> np.ndarray:
    w = _envelope(u)
    return _channels(u, ax=6 * np.sin(2 * np.pi * u) * w, ay=6 * np.sin(4 * np.pi * u) * w, gz=1.5 * np.cos(2 * np.pi * u) * w)


def _double_tap(u: np.ndarray) -> np.ndarray:
    return _channels(u, az=-10 * _bump(u, 0.25, 0.04) + 6 * _bump(u, 0.33, 0.04) - 10 * _bump(u, 0.65, 0.04)
                     + 6 * _bump(u, 0.73, 0.04))


def _jerks(seed: int) -> Shape:
    """A few sharp jolts on random channels at random times."""
    rng = np.random.default_rng(seed)
    jolts = [(int(rng.integers(6)), rng.uniform(0.1, 0.9), rng.choice([-1, 1]) * rng.uniform(6, 12))
             for _ in range(int(rng.integers(3, 6)))]

    def shape(u: np.ndarray) -> np.ndarray:
        out = np.zeros((len(u), 6))
        for channel, centre, amp in jolts:
            out[:, channel] += (amp if channel < 3 else amp / 3) * _bump(u, centre, 0.03)
        return out

    return shape


def _zigzag(u: np.ndarray) -> np.ndarray:       # a Z drawn in the air
    return _channels(u, ax=7 * _bump(u, 0.15, 0.06) - 7 * _bump(u, 0.3, 0.06) - 7 * _bump(u, 0.45, 0.06)
                     + 7 * _bump(u, 0.6, 0.06) + 7 * _bump(u, 0.75, 0.06) - 7 * _bump(u, 0.9, 0.06),
                     ay=-5 * _bump(u, 0.5, 0.1) + 5 * _bump(u, 0.6, 0.1))


def _spin(u: np.ndarray) -> np.ndarray:         # turning the phone over, about all three axes
    w = _envelope(u)
    return _channels(u, gx=3 * w, gy=3 * np.sin(np.pi * u) * w, gz=-3 * w)


UNTAUGHT: dict[str, Shape] = {"figure_eight": _figure_eight, "double_tap": _double_tap, "zigzag": _zigzag,
                              "spin": _spin, **{f"jerks{i}": _jerks(300 + i) for i in range(4)},
                              **{f"random{i}": random_shape(700 + i) for i in range(6)}}
"""Motions in no template: shapes a user might make but never taught."""


def _idle(u: np.ndarray) -> np.ndarray:
    return np.zeros((len(u), 6))


IDLE = {"idle": _idle}
"""A stretch of rest as a script entry: its events are idle time (nothing may be recognised there)."""


def user_stream(script: list[str], seed: int, t0: float = 0.0, pause_s: tuple[float, float] = (1.0, 2.0)
                ) -> ScriptedStream:
    """The user's stream: their shapes and the untaught ones, with their sensor's biases and noise."""
    return ScriptedStream(script, seed=seed, t0=t0, pause_s=pause_s, variation=USER_VARIATION,
                          shapes={**USER_SHAPES, **UNTAUGHT, **IDLE}, acc_bias=USER_ACC_BIAS, gyro_bias=USER_GYRO_BIAS)


def record_user_samples(name: str, n: int, seed: int) -> list[Sample]:
    """``n`` samples of the user's ``name``, cut by the segmenter from their stream as ``gesture record`` would."""
    stream = user_stream([name], seed, pause_s=(0.8, 1.2))
    segmenter = Segmenter()
    got: list[Sample] = []
    t = 0.0
    while len(got) < n:
        t += 1.0
        assert t < 30 * n + 30, f"{name}: only {len(got)} of {n} samples segmented"
        for seg in segmenter.feed(*stream.read_until(t)):
            got.append(Sample(seg.t - seg.t[0], seg.acc, seg.gyro, source=f"session:user{seed}"))
    return got[:n]
