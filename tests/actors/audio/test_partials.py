"""Partial transcripts: the stable prefix and the guards (pure), the segmenter's audio so far, and the pipeline
audio_source (real time) -> vad -> speech publishing speech.partial before each final."""

from __future__ import annotations

import numpy as np
import pytest

from actors.lib.audio.segmenter import SegmenterParams, SpeechSegmenter
from actors.speech.partials import PartialState, agreed, repeated_ngram
from bus.bodies.audio import SpeechSegment
from tests.support import WAIT_S


def test_a_word_is_stable_once_two_partials_agree_and_stays_stable():
    state = PartialState()
    assert state.update("Set a time") == ("Set a time", 0)
    assert state.update("Set a timer for") == ("Set a timer for", len("Set a"))
    assert state.update("Set a timer for twelve") == ("Set a timer for twelve", len("Set a timer for"))
    # Whisper changes its mind about a stable word: the stable prefix is kept, the rest taken from the new text.
    text, stable = state.update("Sit a timer for twelve minutes.")
    assert text == "Set a timer for twelve minutes." and stable >= len("Set a timer for")
    assert text[:stable] == "Set a timer for twelve"


def test_repetition_loops_and_empty_hypotheses_are_dropped():
    assert repeated_ngram("the the the".split()) and repeated_ngram("set a timer set a timer set a timer".split())
    assert not repeated_ngram("I said no, no to that".split())
    state = PartialState()
    assert state.update("Thank you. Thank you. Thank you.") is None
    assert state.update("") is None and state.dropped == 2
    assert agreed(["Set", "a"], ["set,", "a", "b"]) == 2


def test_the_segmenter_gives_the_segment_so_far_every_n_seconds_of_speech(demo):
    seg = SpeechSegmenter(SegmenterParams(), stream="s")
    start, end = demo["spans_s"][0]
    partials, finals = [], []
    for i in range(0, int((end + 1.0) * 16_000), 1600):  # 100 ms chunks
        finals += [e for e in seg.feed(demo["pcm"][i:i + 1600]) if isinstance(e, SpeechSegment)]
        so_far = seg.so_far(1.0)
        if so_far is not None:
            partials.append(so_far)
    assert finals and len(partials) == int(end - start)  # one per whole second of speech
    for p in partials:
        assert p.segment_id == finals[0].segment_id and p.pcm_t_start == finals[0].pcm_t_start
        assert np.array_equal(p.pcm, finals[0].pcm[:p.pcm.size])  # a prefix of the final segment's audio
    assert seg.so_far(1.0) is None  # outside speech



@pytest.mark.slow
def test_partials_come_while_speaking_with_stable_prefixes_before_each_final(supervisor_factory, collector_factory,
                                                                           demo):
    sup = supervisor_factory(f"""
[actors.speech]
start_timeout_s = 120.0
liveness_timeout_s = 15.0
settings = {{ threads = 2, beam_size = 5, queue_size = 8 }}

[actors.vad]
after = ["speech"]

[actors."audio_source@t"]
after = ["vad"]
restart = "temporary"
settings = {{ path = "{demo['path']}", speed = 1.0 }}
""")
    bus = collector_factory(sup, ["speech.", "audio.vad"])
    sup.wait_running("speech", "vad", timeout_s=WAIT_S * 2)
    n = len(demo["sentences"])
    bus.wait_for(lambda m: m.topic == "speech.transcript" and m.body["segment_id"] == n - 1,
                 timeout_s=WAIT_S * 2, what="the last transcript")
    finals = {m.body["segment_id"]: (i, m.body) for i, m in enumerate(bus.messages) if m.topic == "speech.transcript"}
    long_ones = [k for k, (start, end) in enumerate(demo["spans_s"]) if end - start >= 2.0]
    assert long_ones
    with_partials = 0
    for seg_id, (at, final) in finals.items():
        partials = [(i, m.body) for i, m in enumerate(bus.messages) if m.topic == "speech.partial"
                    and m.body["segment_id"] == seg_id]
        assert all(i < at for i, _ in partials), "a partial after its final"
        stable_texts = [p["text"][:p["stable"]] for _, p in partials]
        for a, b in zip(stable_texts, stable_texts[1:]):
            assert b.startswith(a), (a, b)  # the stable prefix never changes, only grows
        with_partials += bool(partials)
    assert with_partials >= len(long_ones) - 1, [m.body for m in bus.messages if m.topic == "speech.partial"]
