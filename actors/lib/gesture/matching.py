"""Features and template matching: resample, normalise, prefilter, DTW.

Matching is two-stage, chosen for the latency target (p99 <= 5 ms with 50
templates, in Python):

1. every segment becomes a fixed-length sequence (``LENGTH`` points x 6
   channels, resampled over its own duration, so overall speed no longer
   matters, and scaled by its RMS, so amplitude does not either); its
   Euclidean distance to every stored sample is one matrix product;
2. the ``top_gestures`` nearest gestures (their ``per_gesture`` nearest
   samples each) are re-ranked by DTW with a Sakoe-Chiba band, which absorbs
   the non-linear part of a speed change. The DTW runs for all candidates at
   once, one anti-diagonal at a time (numpy over candidates and cells).

The answer is the 1-nearest-neighbour by DTW distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LENGTH = 24
"""Points per normalised sequence (24 vs 32: 15% less CPU, no loss of accuracy in bench/gesture.py)."""
CHANNELS = 6
GYRO_WEIGHT = 3.0
"""m/s² per rad/s: brings the gyroscope to the accelerometer's scale before normalising."""
RMS_FLOOR = 0.5
"""Smallest RMS a segment is divided by (m/s² scale), so that near-rest noise is not blown up."""


def normalise(t: np.ndarray, acc: np.ndarray, gyro: np.ndarray, length: int = LENGTH) -> np.ndarray:
    """A segment as a (length, 6) float32 sequence, resampled over its duration and RMS-scaled."""
    values = np.hstack([np.asarray(acc, dtype=np.float64), GYRO_WEIGHT * np.asarray(gyro, dtype=np.float64)])
    n = len(values)
    if n < 2:
        raise ValueError(f"a segment needs at least 2 readings, got {n}")
    width = max(1, n // length)
    if width > 1:  # box filter before decimating, against aliasing of sensor noise
        kernel = np.ones(width) / width
        values = np.stack([np.convolve(values[:, c], kernel, mode="same") for c in range(CHANNELS)], axis=1)
    t = np.asarray(t, dtype=np.float64)
    grid = np.linspace(t[0], t[-1], length)
    out = np.stack([np.interp(grid, t, values[:, c]) for c in range(CHANNELS)], axis=1)
    rms = max(float(np.sqrt(np.mean(out ** 2))), RMS_FLOOR)
    return (out / rms).astype(np.float32)


@lru_cache(maxsize=16)
def _diagonals(length: int, band: int) -> list[tuple[slice, slice, slice, slice, slice]]:
    """For each anti-diagonal of the flat (length+1)^2 DP table, within the band:
    slices of its cells, of their up, left and up-left neighbours, and of their
    local costs in the flat length^2 cost table. Cells of one anti-diagonal lie
    ``length`` apart in a flat row-major table, so all five are strided views
    (no fancy indexing in the inner loop)."""
    size, step, cost_step = length + 1, length, length - 1
    out = []
    for d in range(2, 2 * length + 1):
        lo = max(1, d - length, (d - band + 1) // 2)
        hi = min(length, d - 1, (d + band) // 2)
        if lo > hi:
            continue
        first, last = d + lo * step, d + hi * step + 1
        c0 = (lo - 1) * length + (d - lo - 1)
        out.append((slice(first, last, step), slice(first - size, last - size, step),
                    slice(first - 1, last - 1, step), slice(first - size - 1, last - size - 1, step),
                    slice(c0, c0 + (hi - lo) * cost_step + 1, cost_step)))
    return out


def dtw_batch(query: np.ndarray, refs: np.ndarray, band: int = 4) -> np.ndarray:
    """DTW distances of ``query`` (L, C) to each of ``refs`` (K, L, C), Euclidean
    local cost, Sakoe-Chiba band; normalised by the path bound 2L."""
    k, length, _ = refs.shape
    q = np.asarray(query, dtype=np.float64)
    r = np.asarray(refs, dtype=np.float64)
    # |q_i - r_j|² = |q_i|² + |r_j|² - 2 q_i·r_j: one tensor contraction instead of a (L, L, K, C) difference.
    cross = np.einsum("ic,kjc->ijk", q, r)
    sq = np.einsum("ic,ic->i", q, q)[:, None, None] + np.einsum("kjc,kjc->jk", r, r)[None, :, :] - 2.0 * cross
    cost = np.sqrt(np.maximum(sq, 0.0, out=sq), out=sq).reshape(length * length, k)
    table = np.full(((length + 1) ** 2, k), np.inf)
    table[0] = 0.0
    for cell, up, left, diag, c in _diagonals(length, band):
        best = np.minimum(table[up], table[left])
        np.minimum(best, table[diag], out=best)
        np.add(best, cost[c], out=table[cell])
    return table[-1] / (2 * length)


def dtw_python(a: list[list[float]], b: list[list[float]]) -> float:
    """Textbook DTW in pure Python, full matrix: the naive baseline of bench/gesture.py."""
    n, m = len(a), len(b)
    inf = float("inf")
    prev = [inf] * (m + 1)
    prev[0] = 0.0
    for i in range(1, n + 1):
        cur = [inf] * (m + 1)
        ai = a[i - 1]
        for j in range(1, m + 1):
            bj = b[j - 1]
            cost = sum((x - y) ** 2 for x, y in zip(ai, bj)) ** 0.5
            cur[j] = cost + min(prev[j], cur[j - 1], prev[j - 1])
        prev = cur
    return prev[m] / (n + m)


@dataclass(frozen=True)
class Match:
    name: str
    distance: float
    """DTW distance to the nearest sample of ``name``."""
    runner_up: str
    runner_up_distance: float
    """inf when there is only one gesture."""

    @property
    def margin(self) -> float:
        """log(runner-up distance / best distance), capped: how clearly the best one wins."""
        if not np.isfinite(self.runner_up_distance):
            return 2.0
        return float(min(np.log(max(self.runner_up_distance, 1e-9) / max(self.distance, 1e-9)), 2.0))


class Matcher:
    """Nearest-neighbour matching of normalised sequences against labelled samples."""

    def __init__(self, sequences: np.ndarray, labels: list[str], *, top_gestures: int = 4, per_gesture: int = 3,
                 band: int = 4) -> None:
        if len(sequences) != len(labels):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
        self.sequences = np.asarray(sequences, dtype=np.float32).reshape(len(labels), LENGTH, CHANNELS)
        self.labels = list(labels)
        self.names = sorted(set(labels))
        self._label_index = np.array([self.names.index(n) for n in labels], dtype=np.int64)
        self._flat = self.sequences.reshape(len(labels), -1).astype(np.float64)
        self._sq = np.einsum("ij,ij->i", self._flat, self._flat)
        self.top_gestures = top_gestures
        self.per_gesture = per_gesture
        self.band = band

    def __len__(self) -> int:
        return len(self.labels)

    def candidates(self, query: np.ndarray) -> np.ndarray:
        """Indices of the samples to compare by DTW: the nearest few of the nearest gestures (Euclidean)."""
        q = query.reshape(-1).astype(np.float64)
        d2 = self._sq - 2.0 * (self._flat @ q)
        order = np.argsort(d2, kind="stable")
        chosen: list[int] = []
        per: dict[int, int] = {}
        for idx in order:
            g = int(self._label_index[idx])
            if g not in per and len(per) >= self.top_gestures:
                continue
            if per.get(g, 0) < self.per_gesture:
                per[g] = per.get(g, 0) + 1
                chosen.append(int(idx))
            if len(per) >= self.top_gestures and all(v >= self.per_gesture for v in per.values()):
                break
        return np.asarray(chosen, dtype=np.int64)

    def match(self, query: np.ndarray, exclude: int | None = None) -> Match:
        """The best gesture for a normalised ``query`` (and the runner-up)."""
        if not self.labels:
            raise ValueError("no templates to match against")
        idx = self.candidates(query)
        if exclude is not None:
            idx = idx[idx != exclude]
        dist = dtw_batch(query, self.sequences[idx], self.band)
        best: dict[str, float] = {}
        for i, d in zip(idx, dist):
            name = self.labels[i]
            if d < best.get(name, np.inf):
                best[name] = float(d)
        ranked = sorted(best.items(), key=lambda kv: kv[1])
        name, distance = ranked[0]
        runner, runner_d = ranked[1] if len(ranked) > 1 else ("", float("inf"))
        return Match(name, distance, runner, runner_d)
