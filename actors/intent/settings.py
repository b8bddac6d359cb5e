"""Settings of the intent kind: the grammar, risk levels, confirmation, actions, senders, time limits.

The grammar is compiled while the config is validated, so a bad pattern
stops the start with a message naming the intent, the pattern and the
position (``actors.intent.settings.intents: ... intent 'timer.set', pattern
'set a timer for {minutes:numbr}', at position 21: unknown slot type ...``).
"""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import Field, model_validator

from actors.intent.grammar import Grammar, GrammarError
from config.schema import Strict

INTENT_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
SENDER_RE = re.compile(r"([A-Za-z0-9_.\-*]+/)?[a-z][a-z0-9_]*(@[a-z0-9_\-]+)?")


class IntentSpec(Strict):
    """One intent: how it is said, how risky it is, what it does."""

    patterns: list[str] = Field(min_length=1)
    """Sentences with slots: words, {slot:type}, (a|b) one of, [a|b] optional (see actors/intent/grammar.py)."""
    risk: Literal["low", "medium", "high"] = "low"
    """low: acted on at once; medium/high: confirmed first (a spoken yes or a confirm gesture)."""
    action: str = ""
    """Published on action.<action> once confirmed; '' means the intent's name."""
    program: list[str] = []
    """A program to run once confirmed, with its arguments: {slot} in an argument is replaced by the slot's
    value. Never through a shell. [] runs nothing (the action.* message is the action)."""
    answer: Literal["", "vision"] = ""
    """A built-in answer instead of an action: vision says what the stable tracks show, on assistant.answer."""
    prompt: str = ""
    """Question on intent.confirm_request; '' makes one from the intent and its slots."""


class StageLimits(Strict):
    """Time limits per stage of the loop (the original system's: STT 60 s, intent 10 s, vision 5 s)."""

    speech_s: float = Field(60.0, gt=0)
    """A transcript that reached us later than this after its speech ended (latency_ms) is too old to act on."""
    intent_s: float = Field(10.0, gt=0)
    """From the transcript's publication to its intent decided, seconds."""
    confirm_medium_s: float = Field(15.0, gt=0)
    """Seconds a medium-risk intent waits for its answer."""
    confirm_high_s: float = Field(30.0, gt=0)
    """Seconds a high-risk intent waits for its answer."""
    vision_s: float = Field(5.0, gt=0)
    """Tracks older than this cannot answer a vision question, seconds."""
    action_s: float = Field(30.0, gt=0)
    """A configured program still running after this is killed, seconds."""


class IntentSettings(Strict):
    """Transcripts in, intents, confirmations, actions and answers out."""

    transcript_topic: str = "speech.transcript"
    """Where transcripts come from."""
    gesture_topic: str = "gesture.recognized"
    track_prefix: str = "track."
    """Stable tracks (the tracker kind) that vision answers are made from."""
    allowed_senders: list[str] = ["speech", "gesture"]
    """Senders whose transcripts and gestures may trigger intents: an actor name on this host (``speech``),
    ``HOST/NAME`` on another host, ``*/NAME`` on any. Anything else is ignored and counted."""
    intents: dict[str, IntentSpec] = {}
    """Intent name (lower-case, dot-separated: it becomes a topic) -> its spec."""
    names: dict[str, list[str]] = {}
    """Lists for {slot:LIST} slots, e.g. room = ["kitchen", "living room"]."""
    fillers: list[str] = ["please", "um", "uh", "er", "hey", "oh", "just", "kindly"]
    """Words left out before matching (a polite "please set a timer..." matches "set a timer..."), from
    transcripts and patterns alike."""
    min_confidence: float = Field(0.8, gt=0, le=1)
    """A match below this (near spellings of the literal words) is intent.unknown."""
    fuzzy: float = Field(0.8, gt=0, le=1)
    """Least similarity (0..1) of a heard word to a pattern's literal word; 1: exact words only."""
    yes_words: list[str] = ["yes", "yeah", "yep", "confirm", "confirmed", "do it", "go ahead", "sure", "okay", "ok"]
    """A transcript made only of these words confirms the intent that waits."""
    no_words: list[str] = ["no", "nope", "cancel", "stop", "do not", "never mind", "abort"]
    """A transcript made only of these words cancels it."""
    confirm_gestures: list[str] = ["circle"]
    """Gestures that confirm the intent that waits."""
    cancel_gestures: list[str] = ["shake"]
    """Gestures that cancel it."""
    min_gesture_confidence: float = Field(0.5, ge=0, le=1)
    """A gesture below this confidence, or an outlier, answers nothing."""
    pending: Literal["queue", "refuse"] = "queue"
    """What happens to an intent needing confirmation while another waits: queued, or refused (cancelled:
    busy)."""
    queue_size: int = Field(4, ge=1, le=100)
    """Intents queued behind the one waiting; beyond it they are refused (queue_full)."""
    limits: StageLimits = StageLimits()
    max_output_bytes: int = Field(4096, ge=0, le=1_000_000)
    """A program's stdout and stderr are each cut to this many bytes on intent.action_result."""

    @model_validator(mode="after")
    def _compile(self) -> "IntentSettings":
        for name in self.intents:
            if not INTENT_NAME_RE.fullmatch(name):
                raise ValueError(f"intent {name!r}: a name is lower-case words separated by dots (it becomes the "
                                 "topic action.NAME)")
        for sender in self.allowed_senders:
            if not SENDER_RE.fullmatch(sender):
                raise ValueError(f"allowed_senders: {sender!r} is not NAME, HOST/NAME or */NAME")
        for list_name, values in self.names.items():
            if not values:
                raise ValueError(f"names.{list_name}: an empty list can match nothing")
        try:
            grammar = self.grammar()
        except GrammarError as exc:
            raise ValueError(str(exc)) from None
        slots_of: dict[str, list[set[str]]] = {}
        for pattern in grammar.patterns:
            slots_of.setdefault(pattern.intent, []).append(
                {e.name for e in pattern.elements if hasattr(e, "name")})
        for name, spec in self.intents.items():
            if spec.action and not INTENT_NAME_RE.fullmatch(spec.action):
                raise ValueError(f"intent {name!r}: action {spec.action!r} is not lower-case dot-separated words")
            if spec.answer and spec.program:
                raise ValueError(f"intent {name!r}: an answer intent runs no program")
            for position, arg in enumerate(spec.program):
                try:
                    fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
                except ValueError as exc:
                    raise ValueError(f"intent {name!r}: program argument {position} {arg!r}: {exc}") from None
                for f in fields:
                    missing = [i + 1 for i, slots in enumerate(slots_of[name]) if f not in slots]
                    if missing:
                        raise ValueError(f"intent {name!r}: program argument {position} {arg!r} uses {{{f}}}, which "
                                         f"pattern(s) {missing} do not have")
        return self

    def grammar(self) -> Grammar:
        return Grammar.compile({name: spec.patterns for name, spec in self.intents.items()}, self.names,
                               self.fillers, self.fuzzy)

    def confirm_timeouts(self) -> dict[str, float]:
        return {"low": 0.0, "medium": self.limits.confirm_medium_s, "high": self.limits.confirm_high_s}
