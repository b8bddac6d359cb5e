"""When a match is a gesture, and when it is a motion nobody taught: one pure rule.

A nearest-neighbour matcher always has a nearest gesture; acceptance says
whether the motion *is* it. Three tests, each against a different way of
being fooled:

1. **the gesture's own spread**: distance <= mean + ``accept_sigma`` x std
   of that gesture's distances (training's cross-validation, then the
   accepted matches at run time). This alone lets the *loosest* template
   swallow everything: a gesture whose samples lie far apart has a large
   mean and std, so its threshold lies beyond the distance of any motion at
   all (a user's "flick" taught by three different jerks took in 6 of 6
   untaught motions);
2. **an absolute cap**, ``max_distance``, on that threshold. Distances are
   comparable across gestures because every segment is resampled and scaled
   to unit RMS before matching (``matching.normalise``): performances of one
   gesture lay at 0.07-0.52 from their nearest sample, untaught motions at
   0.52-1.44 (measured on the shipped templates, a user's own templates and
   14 untaught shapes; tests/actors/gesture/test_user_samples.py);
3. **a margin** over the runner-up: log(runner-up distance / distance)
   >= ``min_margin``; a motion halfway between two gestures is neither.

A rejected motion is *unknown*, with the reason (``FAR``: tests 1-2,
``AMBIGUOUS``: test 3).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ACCEPT_SIGMA = 8.0
DEFAULT_MAX_DISTANCE = 0.6
DEFAULT_MIN_MARGIN = 0.1
FAR = "far"
"""Rejected: farther than the gesture's threshold (its spread, capped)."""
AMBIGUOUS = "ambiguous"
"""Rejected: the runner-up is about as near."""


@dataclass(frozen=True)
class AcceptanceRule:
    accept_sigma: float = DEFAULT_ACCEPT_SIGMA
    """Sigmas of the gesture's distance spread above its mean that still count as the gesture."""
    max_distance: float = DEFAULT_MAX_DISTANCE
    """The threshold never exceeds this (normalised DTW distance)."""
    min_margin: float = DEFAULT_MIN_MARGIN
    """Least log(runner-up distance / distance)."""


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    threshold: float
    """The distance threshold that applied (same unit as the distance)."""
    reason: str = ""
    """'' when accepted, else FAR or AMBIGUOUS."""


def threshold(mean: float, std: float, rule: AcceptanceRule) -> float:
    """The acceptance threshold of a gesture whose distances have this mean and std."""
    return min(mean + rule.accept_sigma * std, rule.max_distance)


def judge(distance: float, margin: float, mean: float, std: float, rule: AcceptanceRule) -> Verdict:
    """Whether a match at ``distance`` (``margin`` over the runner-up) is the gesture with this spread."""
    limit = threshold(mean, std, rule)
    if not distance <= limit:   # NaN is far too
        return Verdict(False, limit, FAR)
    if margin < rule.min_margin:
        return Verdict(False, limit, AMBIGUOUS)
    return Verdict(True, limit)
