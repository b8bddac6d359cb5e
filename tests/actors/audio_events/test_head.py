"""The shipped head on the held-out mix (F1 >= 0.85), its sealed file, and the tracker's rules."""

from __future__ import annotations

import numpy as np
import pytest

from actors.audio_events import synth
from actors.audio_events.detector import EventDetector, EventTracker, TrackerParams
from actors.audio_events.model import DEFAULT_HEAD, HeadClassifier
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


def test_per_class_thresholds_merging_and_times_of_the_tracker():
    labels = ["alarm", "laughter", "noise"]
    params = TrackerParams.build(labels, {"laughter": 0.8}, 0.5, [], ["noise"], model="m")
    tracker = EventTracker(params, stream="s")
    scores = np.array([[0.9, 0.0, 0.1],    # alarm on
                       [0.6, 0.7, 0.1],    # alarm on; laughter 0.7 < its threshold 0.8
                       [0.1, 0.85, 1.0],   # alarm ends (one event of patches 0-1); laughter on; noise never published
                       [0.1, 0.9, 1.0],
                       [0.1, 0.1, 1.0]], np.float32)
    t = 0.48 * np.arange(len(scores))
    events = tracker.update(t, scores) + tracker.flush(3.0)
    assert [(e.label, e.t_start, e.t_end, e.score, e.patches) for e in events] == [
        ("alarm", 0.0, 1.2, 0.9, 2),          # the first patch from the stream's start; to the middle of patch 1
        ("laughter", 1.2, 2.16, 0.9, 2),      # middle of patch 2 (0.96 + 0.24) to middle of patch 3 (1.44 + 0.72)
    ]
    assert all(e.stream == "s" and e.model == "m" for e in events)
    # Open at the end of the stream: closed by flush, its end clamped to the stream's end.
    tracker = EventTracker(params, stream="s")
    assert tracker.update(t[:2], scores[:2, :]) == []
    assert [(e.label, e.t_end) for e in tracker.flush(0.9)] == [("alarm", 0.9)]
    # min_patches: a single-patch blip is not an event.
    strict = TrackerParams.build(labels, {"laughter": 0.8}, 0.5, [], ["noise"], min_patches=2)
    tracker = EventTracker(strict)
    assert [e.label for e in tracker.update(t[:3], scores[:3]) + tracker.flush(2.0)] == ["alarm"]
    with pytest.raises(ValueError, match=r"unknown event labels \['giggle'\]"):
        TrackerParams.build(labels, {"giggle": 0.5}, 0.5, [], [])


def test_report_names_the_published_classes(head, heldout):
    pcm, _truth = heldout
    params = TrackerParams.build(head.labels, {}, 0.5, ["clapping"], [])
    detector = EventDetector(head, params)
    events = [e for i in range(0, pcm.size, 160_000) for e in detector.feed(pcm[i:i + 160_000])] + detector.flush()
    assert len(events) == 5 and {e.label for e in events} == {"clapping"}


def test_a_corrupt_head_file_is_refused_by_its_sha256(tmp_path):
    raw = bytearray(resolve_path(DEFAULT_HEAD).read_bytes())
    raw[-100] ^= 0xFF
    bad = tmp_path / "head.sealed"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"head\.sealed.*sha256"):
        HeadClassifier(bad)


def test_settings_refuse_yamnet_without_its_files_and_thresholds_out_of_range():
    from pydantic import ValidationError

    from actors.audio_events.settings import AudioEventsSettings

    with pytest.raises(ValidationError, match="needs yamnet_weights"):
        AudioEventsSettings(model="yamnet", yamnet_weights="/x/yamnet.h5")
    with pytest.raises(ValidationError, match=r"threshold of 'laughter' is 1.5"):
        AudioEventsSettings(thresholds={"laughter": 1.5})
    assert AudioEventsSettings(model="yamnet", yamnet_weights="a.h5", yamnet_class_map="m.csv").model == "yamnet"
