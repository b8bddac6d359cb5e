"""Partial transcripts: a stable prefix by agreement, and guards against Whisper's failures on short windows.

Each partial is Whisper's transcript of the segment so far (``audio.partial``).
Its last words are often wrong (the window ends inside a word), so a word is
*stable* once two consecutive partials agree on it and on every word before
it (LocalAgreement-2, as in whisper_streaming). Once stable, a word stays:
later partials keep the stable words and append the newest hypothesis for the
rest, so ``stable`` never shrinks and the prefix never changes. (The final
``speech.transcript`` is decoded from the whole segment as before and usually
agrees; it is not forced to.)

Guards (short windows are where Whisper fails): a hypothesis with a repeated
n-gram loop ("the the the", "set a timer set a timer set a timer") is
dropped; text over silence is left out already by the transcriber's
no-speech and compression checks, and a window must hold ``min_audio_s``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WORD_RE = re.compile(r"[a-z0-9']+")


def _key(word: str) -> str:
    """A word compared without case and punctuation ("Timer," == "timer")."""
    return "".join(WORD_RE.findall(word.lower()))


def repeated_ngram(words: list[str], max_n: int = 4, times: int = 3) -> bool:
    """Whether some n-gram (n <= max_n) repeats ``times`` times in a row: Whisper's repetition loop."""
    keys = [_key(w) for w in words]
    for n in range(1, max_n + 1):
        for start in range(0, len(keys) - n * times + 1):
            gram = keys[start:start + n]
            if all(keys[start + k * n:start + (k + 1) * n] == gram for k in range(1, times)):
                return True
    return False


def agreed(a: list[str], b: list[str]) -> int:
    """How many leading words two hypotheses share."""
    n = 0
    for x, y in zip(a, b):
        if _key(x) != _key(y):
            break
        n += 1
    return n


@dataclass
class PartialState:
    """The partials of one segment so far."""

    stable_words: list[str] = field(default_factory=list)
    previous: list[str] = field(default_factory=list)
    dropped: int = 0
    """Hypotheses refused by a guard."""

    def update(self, text: str) -> tuple[str, int] | None:
        """The next partial from a new hypothesis: (text, stable prefix length in characters), or None when a
        guard refuses it (or it adds nothing)."""
        words = text.split()
        if not words or repeated_ngram(words):
            self.dropped += 1
            return None
        fixed = len(self.stable_words)
        if agreed(words, self.stable_words) < fixed:
            # The new hypothesis changed a stable word: keep the stable words, take its words after them.
            words = self.stable_words + words[fixed:]
        agree = agreed(words, self.previous)
        if agree > fixed:
            self.stable_words = words[:agree]
        self.previous = words
        stable_text = " ".join(self.stable_words)
        return " ".join(words), len(stable_text)
