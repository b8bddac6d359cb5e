"""The recognizer's core, apart from the bus: a trained store in, decisions out.

``Recognizer.recognize(segment)`` normalises the segment, matches it
(``matching.Matcher``: Euclidean prefilter, banded DTW), and decides:

* **confidence**: the logistic calibration fitted by training on
  cross-validated matches (``training.match_features``);
* **outlier**: distance > mean + 3 sigma of the gesture's distance history;
* **accepted** (``acceptance.judge``, a pure rule): distance <= the
  gesture's adaptive threshold - mean + ``accept_sigma`` sigma from
  training, following the distances of accepted, non-outlier matches at run
  time (exponential forgetting), so a user whose motions drift keeps being
  recognised - but never above ``max_distance``, and the runner-up at least
  ``min_margin`` (log ratio) farther. Anything else is an *unknown* motion,
  with the reason.

The bench times this class directly; the actor wraps it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.lib.gesture.acceptance import AcceptanceRule, judge, threshold
from actors.lib.gesture.matching import Match, Matcher, normalise
from actors.lib.gesture.store import GestureDB
from actors.lib.gesture.training import SIGMA_FLOOR, match_features, sequences_of


@dataclass
class Decision:
    name: str
    confidence: float
    is_outlier: bool
    accepted: bool
    distance: float
    threshold: float
    template_version: int
    runner_up: str
    margin: float = 0.0
    """log(runner-up distance / distance), capped at 2."""
    reason: str = ""
    """Why it was rejected (``acceptance.FAR``, ``acceptance.AMBIGUOUS``); '' when accepted."""


class DistanceHistory:
    """Running mean and variance of one gesture's match distances, with forgetting."""

    def __init__(self, mean: float, std: float, weight: float = 20.0) -> None:
        self.mean = mean
        self.var = std ** 2
        self.weight = weight
        """Effective number of past matches remembered."""

    @property
    def std(self) -> float:
        return max(float(np.sqrt(self.var)), SIGMA_FLOOR)

    def add(self, distance: float) -> None:
        alpha = 1.0 / self.weight
        delta = distance - self.mean
        self.mean += alpha * delta
        self.var = (1 - alpha) * (self.var + alpha * delta * delta)


class Recognizer:
    def __init__(self, db: GestureDB, *, rule: AcceptanceRule = AcceptanceRule(), outlier_sigma: float = 3.0,
                 history_weight: float = 20.0) -> None:
        self.db = db
        self.rule = rule
        self.outlier_sigma = outlier_sigma
        seqs, labels = [], []
        self.history: dict[str, DistanceHistory] = {}
        for name, g in sorted(db.gestures.items()):
            if not g.trained or not g.samples:
                continue
            s = sequences_of(g)
            seqs.append(s)
            labels += [name] * len(s)
            self.history[name] = DistanceHistory(g.distance_mean or 0.0, g.distance_std or SIGMA_FLOOR,
                                                 history_weight)
        self.matcher = Matcher(np.concatenate(seqs), labels) if seqs else None
        cal = db.calibration or {"margin": 1.0, "z": -1.0, "bias": 1.0}
        self._w = np.array([cal["margin"], cal["z"]])
        self._b = float(cal["bias"])

    @property
    def names(self) -> list[str]:
        return sorted(self.history)

    def threshold(self, name: str) -> float:
        h = self.history[name]
        return threshold(h.mean, h.std, self.rule)

    def confidence(self, match: Match) -> float:
        h = self.history[match.name]
        x = match_features(match.margin, match.distance, h.mean, h.std)
        return float(1.0 / (1.0 + np.exp(-np.clip(x @ self._w + self._b, -30, 30))))

    def recognize(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray) -> Decision | None:
        """The decision for one segment; None when there are no trained templates."""
        if self.matcher is None:
            return None
        match = self.matcher.match(normalise(t, acc, gyro))
        h = self.history[match.name]
        verdict = judge(match.distance, match.margin, h.mean, h.std, self.rule)
        outlier = match.distance > h.mean + self.outlier_sigma * h.std
        if verdict.accepted and not outlier:
            h.add(match.distance)
        return Decision(match.name, self.confidence(match), outlier, verdict.accepted, match.distance,
                        verdict.threshold, self.db.gestures[match.name].version, match.runner_up, match.margin,
                        verdict.reason)
