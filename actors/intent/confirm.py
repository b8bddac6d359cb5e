"""Confirmation of risky intents: an explicit state machine, pure, driven by a clock the caller passes.

At most one intent waits for an answer. ``submit`` a recognized intent: a
low-risk one is confirmed at once; a medium or high one is asked about
(``Request``) when nothing waits, else queued (``Queued``, asked about when
its turn comes) or refused (``Cancelled`` with reason ``busy``), by policy;
a full queue refuses (``queue_full``). ``answer`` (a spoken yes/no or a
configured gesture) confirms or cancels the one waiting; ``tick`` cancels it
when its time-out (per risk level, counted from its request) has passed.
Every call returns the outcomes, in order, for the actor to publish: nothing
is decided anywhere else, and the unit tests drive it with a fake clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Mapping

Risk = Literal["low", "medium", "high"]
Policy = Literal["queue", "refuse"]


@dataclass
class Pending:
    """One recognized intent on its way to becoming an action."""

    id: str
    intent: str
    slots: dict[str, object]
    risk: Risk
    words: str = ""
    deadline: float = 0.0
    """Clock time at which an unanswered request is cancelled (set when it is asked)."""
    asked_at: float = 0.0


@dataclass
class Request:
    pending: Pending
    timeout_s: float


@dataclass
class Queued:
    pending: Pending
    position: int
    """1: next to be asked."""


@dataclass
class Confirmed:
    pending: Pending
    via: str
    """auto (low risk), voice or gesture."""
    by: str = ""
    """The sender of the answer (``speech``, ``gesture``), '' for auto."""


@dataclass
class Cancelled:
    pending: Pending
    reason: str
    """no (spoken), gesture, timeout, busy (refused while another waited), queue_full."""
    by: str = ""
    waited_s: float = 0.0


Outcome = Request | Queued | Confirmed | Cancelled


@dataclass
class Confirmations:
    timeouts_s: Mapping[str, float]
    """Risk level -> seconds an answer is waited for."""
    policy: Policy = "queue"
    queue_size: int = 4
    waiting: Pending | None = None
    queue: deque[Pending] = field(default_factory=deque)

    def submit(self, pending: Pending, now: float) -> list[Outcome]:
        if pending.risk == "low":
            return [Confirmed(pending, "auto")]
        if self.waiting is None:
            return [self._ask(pending, now)]
        if self.policy == "refuse":
            return [Cancelled(pending, "busy")]
        if len(self.queue) >= self.queue_size:
            return [Cancelled(pending, "queue_full")]
        self.queue.append(pending)
        return [Queued(pending, len(self.queue))]

    def answer(self, yes: bool, via: str, by: str, now: float) -> list[Outcome]:
        """A yes or no for the intent waiting; [] when none waits (the answer is nobody's)."""
        pending = self.waiting
        if pending is None:
            return []
        self.waiting = None
        done: Outcome = Confirmed(pending, via, by) if yes else Cancelled(
            pending, "no" if via == "voice" else via, by, round(now - pending.asked_at, 3))
        return [done, *self._next(now)]

    def tick(self, now: float) -> list[Outcome]:
        """Cancel the waiting intent once its deadline has passed."""
        pending = self.waiting
        if pending is None or now < pending.deadline:
            return []
        self.waiting = None
        return [Cancelled(pending, "timeout", waited_s=round(now - pending.asked_at, 3)), *self._next(now)]

    def _ask(self, pending: Pending, now: float) -> Request:
        timeout = self.timeouts_s[pending.risk]
        pending.asked_at, pending.deadline = now, now + timeout
        self.waiting = pending
        return Request(pending, timeout)

    def _next(self, now: float) -> list[Outcome]:
        return [self._ask(self.queue.popleft(), now)] if self.queue else []
