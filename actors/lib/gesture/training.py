"""Training: outlier removal, consistency, k-fold cross-validation, calibration.

For each gesture with enough samples:

0. **The user's samples first**: a gesture with at least
   ``MIN_USER_SAMPLES`` samples of the user's own uses only those; its
   shipped samples move to ``superseded`` (kept, never matched, back in use
   once the user's are deleted). With fewer, both are used together.
1. **Outliers**: a sample whose mean DTW distance to the other samples of
   its gesture lies more than 3 robust sigmas (1.4826 x MAD) above their
   median is set aside (kept in the store as an outlier, never matched).
   Only samples of the majority's own kind can be: a user's sample is never
   an outlier against shipped ones (it would be, by construction, whenever
   the user moves differently from the synthetic templates).
2. **Consistency**: 1 - (mean distance among its samples) / (mean distance
   to the samples of other gestures), clipped to 0..1.
3. **k-fold cross-validation** over all gestures together (stratified,
   k = min(folds, smallest gesture)): each held-out sample is matched
   against the other folds exactly as the recognizer would; accuracy
   overall and per gesture.
4. **Distance statistics** per gesture: mean and standard deviation of the
   distance from a held-out sample to its nearest same-gesture sample (the
   spread shrunk towards the pooled one of all gestures, since a handful of
   samples underestimates it). The
   recognizer flags a match more than 3 sigma above the mean as an outlier
   and derives its acceptance threshold from them (``acceptance.py``); a
   gesture whose threshold would pass the absolute cap ``max_distance`` is
   reported as *loose* (its samples lie too far apart to be recognised
   reliably).
5. **Calibration**: a logistic regression (ridge-regularised, a few Newton
   steps) from two match features - the margin log(d2/d1) and the z-score of
   d1 - to "the held-out sample was recognised correctly". The recognizer's
   confidence is this probability.

A gesture whose sample set changed since its last training gets version + 1.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from actors.lib.gesture.acceptance import DEFAULT_MAX_DISTANCE
from actors.lib.gesture.matching import CHANNELS, LENGTH, Matcher, dtw_batch, normalise
from actors.lib.gesture.store import Gesture, GestureDB

MIN_SAMPLES = 3
"""Fewer samples than this: the gesture is not trained (and not matched)."""
MIN_USER_SAMPLES = 3
"""With this many samples of the user's own, a gesture's shipped samples are superseded."""
LOOSE_SIGMA = 2.0
"""A gesture whose mean + this many sigma of its distances exceeds max_distance is reported loose."""
SIGMA_FLOOR = 0.02
"""Smallest distance standard deviation used (few samples underestimate it)."""
RELATIVE_SIGMA_FLOOR = 0.15
"""...and never below this fraction of the mean distance."""
PRIOR_SAMPLES = 5
"""Weight, in samples, of the pooled relative spread in each gesture's spread."""


@dataclass
class TrainReport:
    accuracy: float | None
    """Overall cross-validation accuracy, 0..1 (None with fewer than two trained gestures)."""
    folds: int
    gestures: dict[str, dict] = field(default_factory=dict)
    """Per gesture: samples, outliers_removed, accuracy, consistency, version, changed."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Gestures not trained, with the reason."""
    superseded: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Gestures whose shipped samples the user's replace: (user samples, shipped samples set aside)."""
    mixed: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Gestures with too few user samples to replace the shipped ones: (user, shipped), used together."""
    loose: dict[str, float] = field(default_factory=dict)
    """Gestures whose samples lie so far apart that many performances will be rejected: their mean distance."""
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """What the user should know about the origins and spread of their gestures, in words."""
        out = []
        for name, (user, shipped) in sorted(self.superseded.items()):
            out.append(f"{name}: your {user} samples replace the {shipped} shipped ones (kept in the store; "
                       f"`sensorium gesture delete {name} --user` brings them back)")
        for name, (user, shipped) in sorted(self.mixed.items()):
            out.append(f"{name}: your {user} sample(s) are used alongside the {shipped} shipped ones until you "
                       f"have {MIN_USER_SAMPLES}; then yours replace them")
        for name, mean in sorted(self.loose.items()):
            out.append(f"{name}: its samples lie far apart (mean distance {mean:.2f}): many performances will "
                       "not be recognised; record it again, the same way each time")
        return out


def sequences_of(g: Gesture) -> np.ndarray:
    return np.stack([normalise(s.t, s.acc, s.gyro) for s in g.samples]) if g.samples else np.zeros((0, LENGTH, CHANNELS))


def _pairwise(seqs: np.ndarray) -> np.ndarray:
    n = len(seqs)
    out = np.zeros((n, n))
    for i in range(n):
        out[i] = dtw_batch(seqs[i], seqs)
    return out


def _fingerprint(g: Gesture) -> str:
    return hashlib.sha256(",".join(sorted(s.id for s in g.samples + g.outliers)).encode()).hexdigest()[:16]


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1.0, steps: int = 25) -> np.ndarray:
    """Weights w (bias last) of p = 1 / (1 + exp(-(x·w[:-1] + w[-1])))."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    penalty = np.eye(xb.shape[1]) * ridge
    penalty[-1, -1] = 1e-3
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + penalty @ w
        hess = xb.T @ (xb * (p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hess, grad)
    return w


def match_features(margin: float, distance: float, mean: float, std: float) -> np.ndarray:
    """The two calibration features of one match."""
    return np.array([margin, (distance - mean) / max(std, SIGMA_FLOOR)])


def choose_samples(g: Gesture) -> tuple[list, list, bool]:
    """(samples to train on, shipped samples superseded, whether the user's samples are exempt from outliers).

    The user's samples replace the shipped ones once there are MIN_USER_SAMPLES
    of them; with fewer, both are used, and the user's are never outliers."""
    pool = g.all_samples
    user = [s for s in pool if not s.shipped]
    shipped = [s for s in pool if s.shipped]
    if shipped and len(user) >= MIN_USER_SAMPLES:
        return user, shipped, False
    return pool, [], bool(user and shipped)


def train(db: GestureDB, *, folds: int = 5, seed: int = 0, max_distance: float = DEFAULT_MAX_DISTANCE,
          progress: Callable[[str, int, int], None] = lambda stage, i, n: None) -> TrainReport:
    """Train every gesture of ``db`` in place; returns what happened.

    ``max_distance``: the recognizer's cap on acceptance thresholds, for the loose-gesture report."""
    t0 = time.monotonic()
    report = TrainReport(accuracy=None, folds=0)
    # 1 + 2: outliers and consistency, gesture by gesture.
    seqs: dict[str, np.ndarray] = {}
    names = sorted(db.gestures)
    for i, name in enumerate(names):
        progress("outliers", i, len(names))
        g = db.gestures[name]
        # Every training judges all samples afresh, the superseded ones too.
        g.samples, g.superseded, user_exempt = choose_samples(g)
        g.outliers = []
        if g.superseded:
            report.superseded[name] = (len(g.samples), len(g.superseded))
        elif user_exempt:
            report.mixed[name] = (g.user_samples, g.shipped_samples)
        if len(g.samples) < MIN_SAMPLES:
            report.skipped[name] = f"{len(g.samples)} samples, {MIN_SAMPLES} needed"
            continue
        s = sequences_of(g)
        if len(g.samples) >= 4:
            d = _pairwise(s)
            mean_other = d.sum(axis=1) / (len(s) - 1)
            med = np.median(mean_other)
            mad = 1.4826 * np.median(np.abs(mean_other - med))
            bad = mean_other > med + 3 * max(mad, 0.05 * med)
            if user_exempt:
                bad &= np.array([smp.shipped for smp in g.samples])
            if bad.any() and (~bad).sum() >= MIN_SAMPLES:
                g.outliers = [smp for smp, b in zip(g.samples, bad) if b]
                g.samples = [smp for smp, b in zip(g.samples, bad) if not b]
                s = s[~bad]
        seqs[name] = s
    trained = sorted(seqs)
    for name in trained:
        s = seqs[name]
        intra = _pairwise(s)
        mean_intra = intra.sum() / max(len(s) * (len(s) - 1), 1)
        others = [seqs[o] for o in trained if o != name]
        if others:
            pool = np.concatenate(others)
            mean_inter = float(np.mean([dtw_batch(q, pool).mean() for q in s]))
            db.gestures[name].consistency = float(np.clip(1 - mean_intra / max(mean_inter, 1e-9), 0, 1))
        else:
            db.gestures[name].consistency = float(1 / (1 + mean_intra))
    # 3 + 4: stratified k-fold cross-validation.
    rng = np.random.default_rng(seed)
    k = max(2, min([folds] + [len(seqs[n]) for n in trained])) if trained else 0
    report.folds = k
    fold_of = {n: rng.permutation(np.arange(len(seqs[n])) % k) for n in trained}
    correct: dict[str, list[bool]] = {n: [] for n in trained}
    own_distance: dict[str, list[float]] = {n: [] for n in trained}
    records: list[tuple[str, float, float, bool]] = []   # (matched name, margin, distance, correct)
    for f in range(k):
        progress("cross-validation", f, k)
        train_seqs, labels = [], []
        for n in trained:
            keep = fold_of[n] != f
            train_seqs.append(seqs[n][keep])
            labels += [n] * int(keep.sum())
        matcher = Matcher(np.concatenate(train_seqs), labels)
        for n in trained:
            own = seqs[n][fold_of[n] != f]
            for q in seqs[n][fold_of[n] == f]:
                m = matcher.match(q)
                correct[n].append(m.name == n)
                own_distance[n].append(float(dtw_batch(q, own).min()))
                records.append((m.name, m.margin, m.distance, m.name == n))
    # A handful of samples underestimates the spread: shrink each gesture's
    # relative spread (std / mean) towards the median over all gestures,
    # weighted as PRIOR_SAMPLES samples (empirical Bayes), then floor it.
    rel = [np.std(own_distance[n], ddof=1) / max(np.mean(own_distance[n]), 1e-9)
           for n in trained if len(own_distance[n]) > 1]
    rel_pool = float(np.median(rel)) if rel else RELATIVE_SIGMA_FLOOR
    for name in trained:
        g = db.gestures[name]
        g.accuracy = float(np.mean(correct[name])) if correct[name] else None
        dist = np.asarray(own_distance[name])
        n = len(dist)
        mean = float(dist.mean())
        var = ((n - 1) * (dist.var(ddof=1) if n > 1 else 0.0) + PRIOR_SAMPLES * (rel_pool * mean) ** 2) \
            / (n - 1 + PRIOR_SAMPLES)
        g.distance_mean = mean
        g.distance_std = float(max(np.sqrt(var), RELATIVE_SIGMA_FLOOR * mean, SIGMA_FLOOR))
        if g.distance_mean + LOOSE_SIGMA * g.distance_std > max_distance:
            report.loose[name] = g.distance_mean
        g.trained_at = time.time()
        fp = _fingerprint(g)
        changed = fp != g.fingerprint
        if changed:
            g.version += 1
            g.fingerprint = fp
        report.gestures[name] = {"samples": len(g.samples), "outliers_removed": len(g.outliers),
                                 "user_samples": g.user_samples, "superseded": len(g.superseded),
                                 "accuracy": g.accuracy, "consistency": g.consistency, "version": g.version,
                                 "changed": changed}
    for name in report.skipped:
        g = db.gestures[name]
        g.distance_mean = g.distance_std = g.accuracy = None
        g.trained_at = 0.0
    # 5: calibration of the confidence.
    if records:
        x = np.stack([match_features(mg, d, db.gestures[n].distance_mean, db.gestures[n].distance_std)
                      for n, mg, d, _ in records])
        y = np.array([ok for *_, ok in records], dtype=float)
        if y.min() == y.max():
            # All right (or all wrong): no decision boundary to learn; anchor one
            # synthetic error far out so that confidence still falls with the z-score.
            x = np.vstack([x, [[0.0, 6.0]]])
            y = np.append(y, 1.0 - y[0])
        w = fit_logistic(x, y)
        db.calibration = {"margin": float(w[0]), "z": float(w[1]), "bias": float(w[2])}
        all_ok = [ok for n in trained for ok in correct[n]]
        report.accuracy = db.accuracy = float(np.mean(all_ok)) if len(trained) > 1 else None
    report.seconds = time.monotonic() - t0
    return report
