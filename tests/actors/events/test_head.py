"""The shipped head on the held-out mix (F1 >= 0.85), its sealed file, and the tracker's rules."""

from __future__ import annotations

import numpy as np
import pytest

from actors.events import synth
from actors.events.detector import EventDetector, TrackerParams
from actors.events.model import DEFAULT_HEAD, HeadClassifier
from config.paths import resolve_path
from config.storage import CorruptFileError


def detect(head, pcm: np.ndarray, chunk: int, **kw) -> list:
    params = TrackerParams.build(head.labels, kw.get("thresholds", {}), 0.5, [], list(synth.BACKGROUND_CLASSES))
    detector = EventDetector(head, params, stream="mix")
    events = [e for i in range(0, pcm.size, chunk) for e in detector.feed(pcm[i:i + chunk])]
    return events + detector.flush()


def test_the_shipped_head_finds_the_events_of_a_held_out_mix(head, heldout):
    pcm, truth = heldout
    assert head.labels == list(synth.CLASSES)
    events = detect(head, pcm, 1600)  # 100 ms chunks, as the audio source sends them
    found = [(e.label, e.t_start, e.t_end) for e in events]
    scores = synth.score_events(truth, found)
    report = {k: (s.tp, s.fp, s.fn, round(s.f1, 3)) for k, s in scores.items()}
    print("held-out mix (tp, fp, fn, F1):", report)
    assert scores["all"].f1 >= 0.85, report
    for label in synth.EVENT_CLASSES:
        assert scores[label].recall >= 0.6, (label, report)
    assert all(e.stream == "mix" and 0 < e.score <= 1 and e.t_end > e.t_start for e in events)
    # The same audio in 10 s chunks gives the same events: framing does not depend on the chunking.
    again = detect(head, pcm, 160_000)
    assert [(e.label, e.t_start, e.t_end) for e in again] == [(e.label, e.t_start, e.t_end) for e in events]


def test_pure_noise_and_silence_give_no_events(head):
    rng = np.random.default_rng(11)
    quiet = np.concatenate([synth.render(rng, "noise", 5 * 16_000), np.zeros(5 * 16_000, np.int16),
                            synth.render(rng, "noise", 5 * 16_000)])
    assert detect(head, quiet, 16_000) == []


def test_per_class_thresholds_decide_what_is_published(head, heldout):
    pcm, truth = heldout
    strict = detect(head, pcm, 16_000, thresholds={"alarm": 1.0})
    assert not [e for e in strict if e.label == "alarm"]
    assert [e for e in strict if e.label == "clapping"]
    with pytest.raises(ValueError, match=r"unknown event labels \['giggle'\]"):
        TrackerParams.build(head.labels, {"giggle": 0.5}, 0.5, [], [])


def test_a_corrupt_head_file_is_refused_by_its_sha256(tmp_path):
    raw = bytearray(resolve_path(DEFAULT_HEAD).read_bytes())
    raw[-100] ^= 0xFF
    bad = tmp_path / "head.sealed"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"head\.sealed.*sha256"):
        HeadClassifier(bad)
