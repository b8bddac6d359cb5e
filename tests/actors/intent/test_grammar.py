"""The intent grammar, pure: number words, patterns with typed slots, whole-sentence matching, config errors."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from actors.intent.confirm import Cancelled, Confirmations, Confirmed, Pending, Queued, Request
from actors.intent.grammar import Grammar, GrammarError, answer_of, parse_pattern, tokenize
from actors.intent.numbers import parse_number
from actors.intent.settings import IntentSettings
from config.loader import ConfigError
from tests.support import ROOT, write_config


@pytest.mark.parametrize("text, value", [
    ("twelve", 12), ("one hundred and five", 105), ("a hundred", 100), ("twenty one", 21), ("twenty-one", 21),
    ("ninety nine", 99), ("nineteen hundred", 1900), ("two thousand three hundred and forty five", 2345),
    ("three million", 3_000_000), ("zero", 0), ("12", 12), ("1,000", 1000), ("2.5", 2.5),
    ("five and a half", 5.5), ("twenty twelve", None), ("hundred", None), ("and", None), ("twelve apples", None),
    ("100 and 5", 105), ("200 and twelve", 212), ("105 and 3", None)])
def test_number_words_and_digits_are_normalised(text, value):
    assert parse_number(text) == value


def default_settings() -> IntentSettings:
    table = tomllib.loads((ROOT / "config" / "default.toml").read_text())["actors"]["intent"]["settings"]
    return IntentSettings.model_validate(table)


@pytest.fixture(scope="module")
def grammar() -> Grammar:
    return default_settings().grammar()


@pytest.mark.parametrize("text, intent, slots", [
    ("Set a timer for twelve minutes.", "timer.set", {"minutes": 12}),
    ("Set a timer for 12 minutes.", "timer.set", {"minutes": 12}),
    ("Please start a timer for one hundred and five seconds", "timer.set", {"seconds": 105}),
    ("Set a timer for an hour and a half.", "timer.set", {"duration": 5400}),
    ("Start a 10-minute timer.", "timer.set", {"duration": 600}),
    ("Turn on the kitchen lights.", "lights.on", {}),
    ("Switch off the lights in the living room!", "lights.off", {"room": "living room"}),
    ("Set the volume to forty two percent.", "volume.set", {"level": 42}),
    ("What do you see?", "vision.describe", {}),
    ("What's in front of you?", "vision.describe", {}),
    ("Unlock the front door.", "door.unlock", {"door": "front"}),
    ("Shut down the system.", "system.shutdown", {}),
    ("Set a time for five minutes.", "timer.set", {"minutes": 5}),   # Whisper's near spelling
])
def test_commands_match_their_intent_and_slots(grammar, text, intent, slots):
    match = grammar.match(text)
    assert match is not None, text
    assert match.intent == intent
    if intent == "lights.on" and slots == {}:
        assert match.slots in ({}, {"room": "kitchen"})
    else:
        assert match.slots == slots
    assert 0.8 <= match.confidence <= 1.0


@pytest.mark.parametrize("text", [
    "The weather is lovely today.", "I set the table for dinner.", "Turn on the kitchen lights and make coffee.",
    "What do you think about that?", "Unlock the kitchen door.", "Set a timer.", "", "..."])
def test_other_sentences_match_no_intent(grammar, text):
    assert grammar.match(text) is None


def test_a_near_spelling_lowers_the_confidence():
    g = Grammar.compile({"timer.set": ["set a timer for {m:number} minutes"]}, {})
    exact, near = g.match("set a timer for 5 minutes"), g.match("set a time for 5 minutes")
    assert exact.confidence == 1.0 and 0.8 <= near.confidence < 1.0
    assert g.match("set a dime for 5 minutes") is None  # another first letter is another word


def test_yes_and_no_answers():
    yes, no, fillers = ["yes", "confirm", "do it"], ["no", "cancel"], ["please"]
    assert answer_of("Yes, please.", yes, no, fillers) == "yes"
    assert answer_of("Yes, do it!", yes, no, fillers) == "yes"
    assert answer_of("No. Cancel that.", yes, no, fillers) == "no"
    assert answer_of("Yes and no.", yes, no, fillers) is None
    assert answer_of("Set a timer.", yes, no, fillers) is None
    assert answer_of("Please.", yes, no, fillers) is None


@pytest.mark.parametrize("pattern, position, problem", [
    ("set a timer for {minutes:numbr} minutes", 26, "unknown slot type 'numbr'"),
    ("set a timer for {minutes minutes", 17, "without a closing"),
    ("set a timer for {minutes}", 18, "has no type"),
    ("set (a|the timer", 5, "without a closing"),
    ("set a) timer", 6, "without an opening"),
    ("turn on [the|] lights", 9, "empty alternative"),
    ("[please]", 1, "at least one word"),
    ("{a:number} and {a:number}", 17, "appears twice"),
    ("call {who:text}{what:text}", 16, "cannot be told apart"),
])
def test_a_grammar_error_names_the_intent_the_pattern_and_the_position(pattern, position, problem):
    with pytest.raises(GrammarError) as err:
        parse_pattern("timer.set", pattern, {"room": ["kitchen"]})
    assert err.value.position == position, str(err.value)
    assert problem in str(err.value) and "'timer.set'" in str(err.value) and repr(pattern) in str(err.value)


def test_the_config_loader_stops_on_a_grammar_error_naming_intent_pattern_and_position(tmp_path):
    from actors.registry import load_config

    path = write_config(tmp_path, """
[actors.intent.settings.intents."timer.set"]
patterns = ["set a timer for {minutes:number} minutes", "set a timer for {m:numbr}"]
""")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "actors.intent" in text and "'timer.set'" in text and "set a timer for {m:numbr}" in text
    assert "position 20" in text


def test_settings_refuse_bad_names_programs_and_senders():
    base = {"intents": {"timer.set": {"patterns": ["set a timer for {minutes:number} minutes"]}}}
    IntentSettings.model_validate(base)
    bad = [({"intents": {"Timer Set": {"patterns": ["x"]}}}, "lower-case words"),
           ({**base, "allowed_senders": ["speech; rm"]}, "allowed_senders"),
           ({"intents": {"timer.set": {"patterns": ["set a timer for {minutes:number} minutes", "set a timer"],
                                       "program": ["/bin/echo", "{minutes}"]}}}, "pattern(s) [2] do not have"),
           ({"intents": {"a": {"patterns": ["x"], "answer": "vision", "program": ["/bin/true"]}}}, "runs no program"),
           ({"intents": {"a": {"patterns": []}}}, "at least 1"),
           ({"names": {"room": []}, **base}, "empty list")]
    for table, expected in bad:
        with pytest.raises(ValidationError) as err:
            IntentSettings.model_validate(table)
        assert expected in str(err.value), (table, str(err.value))


def test_tokenize_drops_punctuation_and_expands_contractions():
    assert tokenize("What's that? A 10-minute, 1,000-word essay.") == [
        "what", "is", "that", "a", "10", "minute", "1,000", "word", "essay"]


# -- confirmation, with a fake clock -------------------------------------------

TIMEOUTS = {"low": 0.0, "medium": 10.0, "high": 30.0}


def pending(n: int, risk: str = "medium") -> Pending:
    return Pending(f"i-{n}", "door.unlock", {"door": "front"}, risk)  # type: ignore[arg-type]


def test_low_risk_is_confirmed_at_once_even_while_another_waits():
    c = Confirmations(TIMEOUTS)
    assert isinstance(c.submit(pending(0), 0.0)[0], Request)
    [out] = c.submit(pending(1, "low"), 1.0)
    assert isinstance(out, Confirmed) and out.via == "auto" and c.waiting.id == "i-0"


def test_yes_confirms_no_cancels_and_an_answer_with_nothing_waiting_is_nobodys():
    c = Confirmations(TIMEOUTS)
    assert c.answer(True, "voice", "speech", 0.0) == []
    c.submit(pending(0), 0.0)
    [out] = c.answer(True, "voice", "speech", 2.0)
    assert isinstance(out, Confirmed) and out.via == "voice" and out.by == "speech" and c.waiting is None
    c.submit(pending(1), 3.0)
    [out] = c.answer(False, "voice", "speech", 4.5)
    assert isinstance(out, Cancelled) and out.reason == "no" and out.waited_s == 1.5
    c.submit(pending(2), 5.0)
    [out] = c.answer(False, "gesture", "gesture", 6.0)
    assert isinstance(out, Cancelled) and out.reason == "gesture"


def test_the_time_out_depends_on_the_risk_level():
    c = Confirmations(TIMEOUTS)
    [req] = c.submit(pending(0, "high"), 100.0)
    assert req.timeout_s == 30.0
    assert c.tick(129.9) == []
    [out] = c.tick(130.0)
    assert isinstance(out, Cancelled) and out.reason == "timeout" and out.waited_s == 30.0
    c.submit(pending(1, "medium"), 200.0)
    assert c.tick(209.0) == [] and isinstance(c.tick(210.0)[0], Cancelled)


def test_a_second_command_while_one_waits_is_queued_then_asked_in_turn():
    c = Confirmations(TIMEOUTS, policy="queue", queue_size=1)
    c.submit(pending(0), 0.0)
    [q] = c.submit(pending(1), 1.0)
    assert isinstance(q, Queued) and q.position == 1
    [full] = c.submit(pending(2), 1.5)
    assert isinstance(full, Cancelled) and full.reason == "queue_full"
    done, nxt = c.tick(10.0)  # the first times out; the queued one is asked, its clock starting now
    assert isinstance(done, Cancelled) and isinstance(nxt, Request) and nxt.pending.id == "i-1"
    assert c.waiting.deadline == 20.0
    [out] = c.answer(True, "voice", "speech", 11.0)
    assert isinstance(out, Confirmed) and out.pending.id == "i-1" and c.waiting is None


def test_a_second_command_while_one_waits_is_refused_by_policy():
    c = Confirmations(TIMEOUTS, policy="refuse")
    c.submit(pending(0), 0.0)
    [out] = c.submit(pending(1), 1.0)
    assert isinstance(out, Cancelled) and out.reason == "busy" and c.waiting.id == "i-0"
