"""Body.to_body/from_body: field mapping, required fields, one schema per class (the cache must not leak)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

from bus.bodies.audio import AudioChunk, VadState
from bus.messages import Body, BodyError, Heartbeat


@dataclass
class _Base(Body):
    TOPIC: ClassVar[str] = "test.base"
    a: int
    b: str = "x"


@dataclass
class _Derived(_Base):
    TOPIC: ClassVar[str] = "test.derived"
    c: list[int] = field(default_factory=list)
    d: float = 0.0


def test_round_trip_keeps_every_field_and_defaults_fill_the_rest():
    body = _Derived(a=1, b="y", c=[2], d=3.5).to_body()
    assert body == {"a": 1, "b": "y", "c": [2], "d": 3.5}
    assert _Derived.from_body(body) == _Derived(a=1, b="y", c=[2], d=3.5)
    assert _Derived.from_body({"a": 4}) == _Derived(a=4)
    assert _Derived.from_body({"a": 4, "unknown": 5}) == _Derived(a=4)  # extra keys are ignored


def test_each_class_has_its_own_fields_whichever_is_used_first():
    assert _Derived(a=1).to_body().keys() == {"a", "b", "c", "d"}
    assert _Base(a=1).to_body().keys() == {"a", "b"}
    assert _Base.from_body({"a": 1, "c": [9]}) == _Base(a=1)


def test_a_missing_required_field_names_the_topic_and_the_field():
    with pytest.raises(BodyError, match=r"test.derived: missing field 'a'"):
        _Derived.from_body({"b": "y"})
    with pytest.raises(BodyError, match=r"audio.chunk: missing field 'rate'"):
        AudioChunk.from_body({"pcm": np.zeros(4, np.int16)})
    with pytest.raises(BodyError, match=r"sys.heartbeat: missing field"):
        Heartbeat.from_body({})
    assert VadState.from_body({"state": "speech_start", "t": 1.0}) == VadState(state="speech_start", t=1.0)
