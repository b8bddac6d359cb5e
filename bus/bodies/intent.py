"""Bodies of the assistant loop: ``intent.*``, ``action.<name>`` and ``assistant.answer``.

One spoken command goes: ``speech.transcript`` -> ``intent.recognized`` (or
``intent.unknown``) -> for a medium or high risk ``intent.confirm_request``
(maybe ``intent.queued`` first) -> ``intent.confirmed`` or ``intent.cancelled``
-> ``action.<name>`` and, when a program is configured, ``intent.action_result``.
Every message of one command carries the same ``id`` (also the header's
``corr``), so a tap or a trace can follow it. A stage that runs past its
time limit publishes ``intent.timeout``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from bus.messages import Body

ACTION_PREFIX = "action."


def action_topic(name: str) -> str:
    return f"{ACTION_PREFIX}{name}"


@dataclass
class IntentRecognized(Body):
    """A transcript that matched a pattern of the grammar."""

    TOPIC: ClassVar[str] = "intent.recognized"

    id: str
    """This command's id (``INTENT_ACTOR-N``), on every later message about it."""
    intent: str
    """The intent's name, e.g. ``timer.set``."""
    slots: dict[str, Any]
    """Slot name -> value: numbers as int/float, durations in seconds, names and text as strings."""
    words: str
    """The words of the transcript the pattern used (lower case, fillers left out)."""
    confidence: float
    """0..1: mean similarity of the pattern's literal words to the words heard (1: all exact)."""
    risk: str
    """low (acted on at once), medium or high (confirmed first)."""
    text: str = ""
    """The transcript as heard."""
    pattern: str = ""
    """The pattern that matched, as configured."""
    source: str = ""
    """Sender of the transcript."""
    segment_id: int = -1
    """The transcript's speech segment (``speech.transcript`` segment_id); -1 when unknown."""
    t_start: float = 0.0
    """Stream time where the command was said, seconds (the transcript's t_start)."""


@dataclass
class IntentUnknown(Body):
    """A transcript from an allowed sender that is no intent of the grammar."""

    TOPIC: ClassVar[str] = "intent.unknown"

    text: str
    """The transcript as heard."""
    reason: str
    """no_match, low_confidence (best below min_confidence), or no_pending (a yes/no with nothing to confirm)."""
    nearest: str = ""
    """For low_confidence: the intent that matched best."""
    confidence: float = 0.0
    """For low_confidence: its confidence, 0..1."""
    source: str = ""
    segment_id: int = -1
    """The transcript's speech segment; -1 when unknown."""
    t_start: float = 0.0
    """Stream time where it was said, seconds."""


@dataclass
class ConfirmRequest(Body):
    """A medium or high risk intent waits for a yes (spoken, or a configured gesture) or a no."""

    TOPIC: ClassVar[str] = "intent.confirm_request"

    id: str
    intent: str
    slots: dict[str, Any]
    risk: str
    timeout_s: float
    """Seconds the answer is waited for before the intent is cancelled (its risk level's limit)."""
    prompt: str = ""
    """A question to show or say, e.g. ``shut down the system?``."""


@dataclass
class IntentQueued(Body):
    """An intent that needs confirmation while another one waits (policy ``queue``): asked about later."""

    TOPIC: ClassVar[str] = "intent.queued"

    id: str
    intent: str
    slots: dict[str, Any]
    position: int
    """1: asked about next."""


@dataclass
class IntentConfirmed(Body):
    """An intent about to be acted on."""

    TOPIC: ClassVar[str] = "intent.confirmed"

    id: str
    intent: str
    slots: dict[str, Any]
    via: str
    """auto (low risk), voice or gesture."""
    by: str = ""
    """Sender of the answer ('' for auto)."""


@dataclass
class IntentCancelled(Body):
    """An intent that will not be acted on."""

    TOPIC: ClassVar[str] = "intent.cancelled"

    id: str
    intent: str
    slots: dict[str, Any]
    reason: str
    """no (spoken), gesture (a cancel gesture), timeout, busy (refused while another waited), queue_full."""
    by: str = ""
    """Sender of the answer, when one was given."""
    waited_s: float = 0.0
    """Seconds between the confirmation request and the cancellation."""


@dataclass
class ActionInvoked(Body):
    """A confirmed intent, on ``action.<name>``: what subscribers act on."""

    TOPIC: ClassVar[str] = ACTION_PREFIX  # the name completes it: see topic()

    id: str
    name: str
    """The action (also the last segments of the topic)."""
    intent: str
    slots: dict[str, Any]
    program: bool = False
    """True when a configured program runs for it (its result follows on intent.action_result)."""

    def topic(self) -> str:
        return action_topic(self.name)


@dataclass
class ActionResult(Body):
    """How a configured program of an action ended; ``ok`` false is a failed action (never a crash)."""

    TOPIC: ClassVar[str] = "intent.action_result"

    id: str
    name: str
    ok: bool
    """Exit code 0 within the time limit."""
    exit_code: int | None
    """The program's exit code; None when it did not start or was killed at its time limit."""
    stdout: str = ""
    """Its standard output, truncated to max_output_bytes (UTF-8, undecodable bytes replaced)."""
    stderr: str = ""
    error: str = ""
    """Why it failed to run: not found, not executable, timed out."""
    duration_ms: float = 0.0
    """From start to end of the program, ms."""
    argv: list[str] = field(default_factory=list)
    """The program and its arguments, slots filled in (no shell ever sees them)."""


@dataclass
class StageTimeout(Body):
    """A stage of the loop ran past its time limit."""

    TOPIC: ClassVar[str] = "intent.timeout"

    stage: str
    """speech (transcript older than its limit), intent (matching), confirm (no answer), vision (no recent
    tracks), action (program killed)."""
    limit_s: float
    """The configured limit, seconds."""
    elapsed_s: float
    """How long the stage had taken, seconds."""
    id: str = ""
    """The command concerned, when there is one."""
    intent: str = ""


@dataclass
class AssistantAnswer(Body):
    """A text answer to a question (e.g. what the camera sees), for consoles and speech output."""

    TOPIC: ClassVar[str] = "assistant.answer"

    text: str
    """The answer, one sentence."""
    id: str = ""
    """The command it answers."""
    intent: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    """What the answer was made from: for vision, signal -> number of present tracks, and ``age_s`` of the
    newest track message."""
