"""Exponential backoff with jitter: the one implementation.

The supervisor uses it to space actor restarts; client-type sources inside
actors (a sensor reconnecting to its peer) use it to space reconnects. It
lives in ``config`` because both sides import it and ``config`` imports
nothing of the project above it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from config.schema import BackoffSettings


@dataclass(frozen=True)
class BackoffPolicy:
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.1
    reset_after_s: float = 30.0

    @classmethod
    def from_settings(cls, s: BackoffSettings) -> "BackoffPolicy":
        return cls(s.initial_s, s.factor, s.max_s, s.jitter, s.reset_after_s)

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Delay before try number ``attempt`` (1 = first) of a streak."""
        base = min(self.max_s, self.initial_s * self.factor ** max(attempt - 1, 0))
        return max(0.0, min(self.max_s, base * (1.0 + rng.uniform(-self.jitter, self.jitter))))
