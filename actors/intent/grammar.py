"""The intent grammar: patterns with typed slots, compiled once, matched against transcripts.

A pattern is a sentence in words, with:

* ``{name:type}`` a slot; type ``number`` (words or digits: "twelve", "12", "one hundred and five"),
  ``duration`` (a number and a unit: "ten minutes", "an hour", "90 seconds"; the value is in seconds),
  ``text`` (one or more words, taken as they are), or the name of a list in ``names`` (one of its values);
* ``(a|b c)`` one of some words or phrases;
* ``[a|the]`` the same, optional.

Matching is over whole transcripts: every word of the transcript must be
used by the pattern, after filler words ("please", "um") are removed, so an
unrelated sentence that contains a command's words is ``intent.unknown``,
never a wrong intent. A literal word also matches a near spelling (Whisper's
"timer"/"time", same first letter, similarity >= ``fuzzy``), which lowers the
match's confidence: the mean similarity of the literal words.

Everything here is pure: ``compile_intent`` raises ``GrammarError`` naming the
intent, the pattern and the position of a mistake (the settings model turns
it into a config error), ``Grammar.match`` returns the best ``Match`` or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Iterator, Mapping, Sequence

from actors.intent.numbers import read_number

SLOT_TYPES = ("number", "duration", "text")
"""Built-in slot types; any other type must name a list in ``names``."""
DURATION_UNITS = {"second": 1, "seconds": 1, "sec": 1, "secs": 1, "minute": 60, "minutes": 60, "min": 60,
                  "mins": 60, "hour": 3600, "hours": 3600}
CONTRACTIONS = {"what's": "what is", "let's": "let us", "i'm": "i am", "it's": "it is", "don't": "do not",
                "can't": "can not", "cannot": "can not", "that's": "that is", "there's": "there is",
                "i'd": "i would", "you're": "you are"}
TOKEN_RE = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+(?:'[a-z]+)?")
SLOT_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
MAX_TEXT_WORDS = 12


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers; punctuation dropped, hyphens split, contractions expanded."""
    words: list[str] = []
    for token in TOKEN_RE.findall(text.lower().replace("-", " ").replace("\u2019", "'")):
        words.extend(CONTRACTIONS.get(token, token).split())
    return words


class GrammarError(ValueError):
    """A pattern that does not parse: names the intent, the pattern and the position (1-based column)."""

    def __init__(self, intent: str, pattern: str, position: int, problem: str) -> None:
        super().__init__(f"intent {intent!r}, pattern {pattern!r}, at position {position}: {problem}")
        self.intent, self.pattern, self.position, self.problem = intent, pattern, position, problem


@dataclass(frozen=True)
class Word:
    word: str


@dataclass(frozen=True)
class Choice:
    options: tuple[tuple[str, ...], ...]
    optional: bool


@dataclass(frozen=True)
class Slot:
    name: str
    type: str


Element = Word | Choice | Slot


@dataclass(frozen=True)
class Pattern:
    intent: str
    source: str
    elements: tuple[Element, ...]

    @property
    def literal_count(self) -> int:
        return sum(isinstance(e, Word) for e in self.elements)


def parse_pattern(intent: str, pattern: str, names: Mapping[str, Sequence[str]]) -> Pattern:
    """One pattern -> its elements; ``GrammarError`` on a mistake (position is a 1-based column)."""
    elements: list[Element] = []
    slots: set[str] = set()
    i, n = 0, len(pattern)

    def fail(at: int, problem: str) -> GrammarError:
        return GrammarError(intent, pattern, at + 1, problem)

    while i < n:
        c = pattern[i]
        if c.isspace():
            i += 1
        elif c == "{":
            end = pattern.find("}", i)
            if end < 0:
                raise fail(i, "'{' without a closing '}'")
            name, colon, kind = pattern[i + 1:end].partition(":")
            name, kind = name.strip(), kind.strip()
            if not SLOT_NAME_RE.fullmatch(name):
                raise fail(i + 1, f"slot name {name!r} is not a lower-case identifier")
            if not colon or not kind:
                raise fail(i + 1, f"slot {name!r} has no type (write {{{name}:number}}; types: "
                                  f"{', '.join(SLOT_TYPES)} or a list in names)")
            if kind not in SLOT_TYPES and kind not in names:
                raise fail(i + 1 + len(name) + 1, f"unknown slot type {kind!r} (expected {', '.join(SLOT_TYPES)} "
                                                  f"or one of the names lists: {', '.join(sorted(names)) or 'none'})")
            if name in slots:
                raise fail(i + 1, f"slot {name!r} appears twice")
            slots.add(name)
            elements.append(Slot(name, kind))
            i = end + 1
        elif c in "([":
            close = ")" if c == "(" else "]"
            end = pattern.find(close, i)
            if end < 0:
                raise fail(i, f"{c!r} without a closing {close!r}")
            inner = pattern[i + 1:end]
            for bad in "{}[]()":
                if bad in inner:
                    raise fail(i + 1 + inner.index(bad), f"{bad!r} inside {c}...{close} (groups do not nest)")
            options = tuple(tuple(tokenize(option)) for option in inner.split("|"))
            if any(not option for option in options):
                raise fail(i, f"an empty alternative in {pattern[i:end + 1]!r}")
            elements.append(Choice(options, optional=c == "["))
            i = end + 1
        elif c in ")]}":
            raise fail(i, f"{c!r} without an opening one")
        else:
            j = i
            while j < n and not pattern[j].isspace() and pattern[j] not in "{}[]()":
                j += 1
            words = tokenize(pattern[i:j])
            if not words:
                raise fail(i, f"{pattern[i:j]!r} is no word")
            elements.extend(Word(w) for w in words)
            i = j
    if not any(isinstance(e, (Word, Choice)) and not (isinstance(e, Choice) and e.optional) for e in elements):
        raise fail(0, "a pattern needs at least one word that is not optional")
    for a, b in zip(elements, elements[1:]):
        if isinstance(a, Slot) and isinstance(b, Slot) and "text" in (a.type, b.type):
            raise fail(pattern.find("{" + b.name), f"slot {b.name!r} right after a text slot cannot be told apart")
    return Pattern(intent, pattern, tuple(elements))


@dataclass
class Match:
    intent: str
    slots: dict[str, object]
    words: str
    """The transcript words the pattern used (fillers left out), joined by spaces."""
    confidence: float
    """Mean similarity of the pattern's literal words to the words heard, 0..1 (1: all exact)."""
    pattern: str


@dataclass
class _State:
    slots: dict[str, object] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)


def similarity(expected: str, heard: str, fuzzy: float) -> float:
    """1 for the same word; the SequenceMatcher ratio for a near spelling (>= fuzzy, same first letter,
    both at least 4 letters); else 0."""
    if expected == heard:
        return 1.0
    if fuzzy >= 1 or len(expected) < 4 or len(heard) < 3 or expected[0] != heard[0] or heard.isdigit():
        return 0.0
    ratio = SequenceMatcher(None, expected, heard).ratio()
    return ratio if ratio >= fuzzy else 0.0


class Grammar:
    """Compiled patterns of every intent, and the names lists."""

    def __init__(self, patterns: list[Pattern], names: Mapping[str, Sequence[str]], fillers: Sequence[str] = (),
                 fuzzy: float = 0.8) -> None:
        self.patterns = patterns
        self.names = {k: [tuple(tokenize(v)) for v in values] for k, values in names.items()}
        self.fillers = {w for f in fillers for w in tokenize(f)}
        self.fuzzy = fuzzy

    @classmethod
    def compile(cls, intents: Mapping[str, Sequence[str]], names: Mapping[str, Sequence[str]],
                fillers: Sequence[str] = (), fuzzy: float = 0.8) -> "Grammar":
        """``intents``: intent -> its patterns. Raises GrammarError on the first bad pattern."""
        patterns = [parse_pattern(intent, p, names) for intent, ps in intents.items() for p in ps]
        drop = {w for f in fillers for w in tokenize(f)}
        # A filler is left out of transcripts, so also out of the patterns that would expect it.
        patterns = [Pattern(p.intent, p.source, tuple(e for e in p.elements if not (
            isinstance(e, Word) and e.word in drop))) for p in patterns]
        return cls(patterns, names, fillers, fuzzy)

    def words_of(self, text: str) -> list[str]:
        return [t for t in tokenize(text) if t not in self.fillers]

    def match(self, text: str) -> Match | None:
        """The best full match of ``text`` (highest confidence, then the most literal words), or None."""
        tokens = self.words_of(text)
        if not tokens:
            return None
        best: tuple[float, int, Match] | None = None
        for pattern in self.patterns:
            for state in self._match(pattern.elements, 0, tokens, 0, _State()):
                confidence = sum(state.scores) / len(state.scores) if state.scores else 1.0
                key = (round(confidence, 6), pattern.literal_count)
                if best is None or key > best[:2]:
                    best = (key[0], key[1], Match(pattern.intent, dict(state.slots), " ".join(tokens),
                                                  round(confidence, 4), pattern.source))
                break  # the first reading of a pattern is its best (longest slot readings first)
        return best[2] if best else None

    def _match(self, elements: tuple[Element, ...], ei: int, tokens: list[str], ti: int,
               state: _State) -> Iterator[_State]:
        if ei == len(elements):
            if ti == len(tokens):
                yield state
            return
        element = elements[ei]
        if isinstance(element, Word):
            if ti < len(tokens):
                score = similarity(element.word, tokens[ti], self.fuzzy)
                if score:
                    yield from self._match(elements, ei + 1, tokens, ti + 1,
                                           _State(state.slots, state.scores + [score]))
            return
        if isinstance(element, Choice):
            for option in element.options:
                if tuple(tokens[ti:ti + len(option)]) == option:
                    yield from self._match(elements, ei + 1, tokens, ti + len(option), state)
            if element.optional:
                yield from self._match(elements, ei + 1, tokens, ti, state)
            return
        for value, used in self._slot_readings(element, tokens, ti, elements[ei + 1:]):
            yield from self._match(elements, ei + 1, tokens, ti + used,
                                   _State({**state.slots, element.name: value}, state.scores))

    def _slot_readings(self, slot: Slot, tokens: list[str], ti: int,
                       rest: tuple[Element, ...]) -> Iterator[tuple[object, int]]:
        if slot.type == "number":
            yield from read_number(tokens, ti)
        elif slot.type == "duration":
            yield from _durations(tokens, ti)
        elif slot.type == "text":
            most = min(len(tokens) - ti, MAX_TEXT_WORDS)
            for used in range(most, 0, -1):
                yield " ".join(tokens[ti:ti + used]), used
        else:
            for value in sorted(self.names[slot.type], key=len, reverse=True):
                if tuple(tokens[ti:ti + len(value)]) == value:
                    yield " ".join(value), len(value)


def _durations(tokens: list[str], ti: int) -> Iterator[tuple[int | float, int]]:
    """Seconds of "<number> <unit>" (also "an hour", "half an hour", "an hour and a half")."""
    if tokens[ti:ti + 3] == ["half", "an", "hour"]:
        yield 1800, 3
        return
    readings = list(read_number(tokens, ti))
    if ti < len(tokens) and tokens[ti] in ("a", "an"):
        readings.append((1, 1))
    for value, used in readings:
        unit = tokens[ti + used] if ti + used < len(tokens) else ""
        if unit in DURATION_UNITS:
            seconds = value * DURATION_UNITS[unit]
            if tokens[ti + used + 1:ti + used + 4] == ["and", "a", "half"]:
                yield _tidy(seconds + DURATION_UNITS[unit] / 2), used + 4
            yield _tidy(seconds), used + 1


def _tidy(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 3)


ANSWER_FILLERS = ("it", "that", "this", "i", "said")


def answer_of(text: str, yes: Sequence[str], no: Sequence[str], fillers: Sequence[str]) -> str | None:
    """"yes", "no" or None: whether ``text`` is only a confirmation (every word from the yes phrases, or
    every word from the no phrases, fillers and "it", "that"... aside)."""
    filler = {w for f in (*fillers, *ANSWER_FILLERS) for w in tokenize(f)}
    words = [t for t in tokenize(text) if t not in filler]
    if not words:
        return None
    yes_words = {w for p in yes for w in tokenize(p)}
    no_words = {w for p in no for w in tokenize(p)}
    if all(w in no_words for w in words):
        return "no"
    if all(w in yes_words for w in words):
        return "yes"
    return None
