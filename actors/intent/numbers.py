"""Numbers in transcripts: words ("one hundred and five") or digits ("105", "1,000", "2.5") to values.

Whisper writes small numbers as words or as digits depending on the sentence
("set a timer for 12 minutes", "wait five seconds"); a grammar slot of type
``number`` accepts both. ``read_number`` reads the longest number at the start
of a token list and says how many tokens it used, so the grammar matcher can
backtrack over shorter readings.
"""

from __future__ import annotations

import re

UNITS = {"zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
         "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
         "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}
SCALES = {"thousand": 1_000, "million": 1_000_000}
DIGITS_RE = re.compile(r"\d+(\.\d+)?")
NUMBER_WORDS = set(UNITS) | set(TENS) | set(SCALES) | {"hundred", "a", "an", "and", "half"}


def _digits(token: str) -> float | int | None:
    token = token.replace(",", "")
    if not DIGITS_RE.fullmatch(token):
        return None
    return float(token) if "." in token else int(token)


def read_number(tokens: list[str] | tuple[str, ...], start: int = 0) -> list[tuple[float | int, int]]:
    """Every number reading at ``tokens[start:]``, longest first: [(value, tokens used), ...]; [] if none.

    Words: units, teens, tens ("twenty one", "twenty-one" is split by the tokenizer), "hundred", "thousand",
    "million", "a"/"an" for one before a scale ("a hundred"), "and" inside ("one hundred and five").
    Digits: one token, commas allowed ("1,000"), one decimal point. "and a half" adds 0.5.
    """
    if start >= len(tokens):
        return []
    value = _digits(tokens[start])
    if value is not None:
        readings = [(value, 1)]
        if isinstance(value, int) and value and value % 100 == 0 and start + 1 < len(tokens) and \
                tokens[start + 1] == "and":
            # "100 and 5": Whisper writes the hundreds in digits and the rest as it heard it.
            rest = read_number(tokens, start + 2)
            if rest and rest[0][0] < 100:
                readings.insert(0, (value + rest[0][0], 2 + rest[0][1]))
        if list(tokens[start + 1:start + 4]) == ["and", "a", "half"]:
            readings.insert(0, (value + 0.5, 4))
        return readings
    readings: list[tuple[float | int, int]] = []
    total = 0      # completed thousands/millions
    current = 0    # the group below the last scale
    seen = False   # at least one number word read
    last = ""      # kind of the previous token: unit, teen, ten, hundred, scale, a, and
    i = start
    while i < len(tokens):
        t = tokens[i]
        if t in ("a", "an") and not seen and i + 1 < len(tokens) and tokens[i + 1] in ("hundred", *SCALES):
            current, last = 1, "a"
        elif t in UNITS and last in ("", "ten", "hundred", "scale", "and"):
            if last == "ten" and UNITS[t] >= 10:
                break  # "twenty twelve" is two numbers
            if last == "ten" and UNITS[t] == 0:
                break
            current += UNITS[t]
            last = "unit"
        elif t in TENS and last in ("", "hundred", "scale", "and"):
            current += TENS[t]
            last = "ten"
        elif t == "hundred" and last in ("unit", "ten", "a") and 0 < current < 100:
            current *= 100
            last = "hundred"
        elif t in SCALES and last in ("unit", "ten", "hundred", "a"):
            total += current * SCALES[t]
            current = 0
            last = "scale"
        elif t == "and" and last in ("hundred", "scale") and i + 1 < len(tokens) and (
                tokens[i + 1] in UNITS or tokens[i + 1] in TENS):
            last = "and"
        elif t == "and" and seen and list(tokens[i + 1:i + 3]) == ["a", "half"]:
            readings.append((total + current + 0.5, i + 3 - start))
            break
        else:
            break
        i += 1
        if last in ("unit", "ten", "hundred", "scale"):
            seen = True
            readings.append((total + current, i - start))
    readings.sort(key=lambda r: -r[1])
    return readings


def parse_number(text: str) -> float | int | None:
    """The number that ``text`` is as a whole ("one hundred and five" -> 105), or None."""
    tokens = text.lower().replace("-", " ").split()
    for value, used in read_number(tokens):
        if used == len(tokens):
            return value
    return None
