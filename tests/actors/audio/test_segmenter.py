"""SpeechSegmenter: boundaries of the known speech spans, chunking, long and short speech, other rates."""

from __future__ import annotations

import numpy as np
import pytest

from actors.lib.audio.decode import StreamResampler
from actors.lib.audio.segmenter import FRAME_SAMPLES, SegmenterParams, SpeechSegmenter
from bus.bodies.audio import SpeechSegment, VadState

TOLERANCE_S = 0.150


def run(segmenter: SpeechSegmenter, pcm: np.ndarray, chunk: int) -> list:
    events = []
    for i in range(0, pcm.size, chunk):
        events += segmenter.feed(pcm[i:i + chunk])
    return events + segmenter.flush()


def segments(events: list) -> list[SpeechSegment]:
    return [e for e in events if isinstance(e, SpeechSegment)]


@pytest.mark.parametrize("chunk", [333, 1600, 16_000])
def test_segment_boundaries_match_the_known_speech_spans(demo, chunk):
    events = run(SpeechSegmenter(), demo["pcm"], chunk)
    found = segments(events)
    assert len(found) == len(demo["spans_s"])
    for seg, (start, end) in zip(found, demo["spans_s"]):
        assert abs(seg.t_start - start) <= TOLERANCE_S, (seg.t_start, start)
        assert abs(seg.t_end - end) <= TOLERANCE_S, (seg.t_end, end)
        # The audio is the stream's own samples, pre-roll and hangover included.
        first = round(seg.pcm_t_start * 16_000)
        assert np.array_equal(seg.pcm, demo["pcm"][first:first + seg.pcm.size])
        assert seg.pcm_t_start < seg.t_start and seg.pcm_t_start + seg.pcm.size / 16_000 > seg.t_end
    states = [(e.state, e.segment_id) for e in events if isinstance(e, VadState)]
    assert states == [(s, i) for i in range(len(found)) for s in ("speech_start", "speech_end")]


def test_the_same_segments_whatever_the_chunking(demo):
    def summary(chunk: int) -> list:
        return [(s.t_start, s.t_end, s.pcm.size) for s in segments(run(SpeechSegmenter(), demo["pcm"], chunk))]

    assert summary(480) == summary(7_777) == summary(demo["pcm"].size)


def test_long_speech_is_cut_at_max_segment_s_and_nothing_is_lost(demo):
    params = SegmenterParams(max_segment_s=1.0)
    found = segments(run(SpeechSegmenter(params), demo["pcm"], 1600))
    first_span = [s for s in found if s.t_end <= demo["spans_s"][0][1] + TOLERANCE_S]
    assert len(first_span) == 4 and all(s.split for s in first_span[:-1]) and not first_span[-1].split
    assert all(s.t_end - s.t_start <= 1.0 + 1e-6 for s in found)
    for a, b in zip(first_span, first_span[1:]):
        assert a.t_end == b.t_start  # consecutive pieces, no gap, no overlap
    assert first_span[0].t_start == pytest.approx(demo["spans_s"][0][0], abs=TOLERANCE_S)
    assert first_span[-1].t_end == pytest.approx(demo["spans_s"][0][1], abs=TOLERANCE_S)


def test_short_blips_are_not_speech_segments():
    rng = np.random.default_rng(1)
    silence = np.zeros(16_000, np.int16)
    blip = (rng.normal(0, 6000, 16_000) * np.sin(np.arange(16_000) / 7)).astype(np.int16)[:int(0.3 * 16_000)]
    segmenter = SpeechSegmenter(SegmenterParams(min_segment_ms=2000))
    events = run(segmenter, np.concatenate([silence, blip, silence]), 1600)
    assert not segments(events)
    assert segmenter.stats.segments == 0


def test_silence_gives_nothing_and_partial_frames_wait():
    segmenter = SpeechSegmenter()
    assert segmenter.feed(np.zeros(FRAME_SAMPLES - 1, np.int16)) == []
    assert segmenter.stats.frames == 0
    assert segmenter.feed(np.zeros(1, np.int16)) == [] and segmenter.stats.frames == 1
    assert run(segmenter, np.zeros(16_000 * 5, np.int16), 1600) == []


def test_other_rates_and_channels_are_converted_first(demo):
    import av

    # 44.1 kHz stereo made from the demo with FFmpeg, then streamed back through StreamResampler.
    pcm = demo["pcm"][: int(11 * 16_000)]
    up = av.AudioResampler(format="s16", layout="stereo", rate=44_100)
    frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate = 16_000
    stereo = np.concatenate([f.to_ndarray().reshape(-1, 2) for f in up.resample(frame) + up.resample(None)])
    resampler = StreamResampler(44_100, 2)
    segmenter = SpeechSegmenter()
    events = []
    for i in range(0, stereo.shape[0], 4410):
        events += segmenter.feed(resampler.convert(stereo[i:i + 4410]))
    events += segmenter.feed(resampler.flush()) + segmenter.flush()
    found = segments(events)
    assert len(found) == 3
    for seg, (start, end) in zip(found, demo["spans_s"]):
        assert abs(seg.t_start - start) <= TOLERANCE_S and abs(seg.t_end - end) <= TOLERANCE_S


def test_a_stream_fed_on_after_flush_holds_its_audio_at_the_right_place(demo):
    """flush() drops a partial frame; what is fed next is the stream without those samples."""
    pcm = demo["pcm"]
    cut = FRAME_SAMPLES * 2 + 40  # two frames and 40 samples that flush() drops
    segmenter = SpeechSegmenter()
    events = segmenter.feed(pcm[:cut]) + segmenter.flush() + run(segmenter, pcm[cut:], 1600)
    expected = run(SpeechSegmenter(), np.concatenate([pcm[:FRAME_SAMPLES * 2], pcm[cut:]]), 1600)
    assert len(segments(expected)) == len(demo["spans_s"])
    assert [(s.t_start, s.t_end, s.pcm_t_start) for s in segments(events)] == \
        [(s.t_start, s.t_end, s.pcm_t_start) for s in segments(expected)]
    for got, want in zip(segments(events), segments(expected)):
        assert np.array_equal(got.pcm, want.pcm)


def reference_changes(pcm: np.ndarray, p: SegmenterParams) -> list[tuple[str, int]]:
    """The smoothing rule written plainly, every window checked on every frame: (state, frame) of each change."""
    import math

    import webrtcvad

    vad = webrtcvad.Vad(p.aggressiveness)
    start_needed = math.ceil(p.ratio * p.start_frames - 1e-9)
    end_needed = math.ceil(p.ratio * p.end_frames - 1e-9)
    flags: list[bool] = []
    changes: list[tuple[str, int]] = []
    last_voiced = None
    for j in range(pcm.size // FRAME_SAMPLES):
        flags.append(vad.is_speech(pcm[j * FRAME_SAMPLES:(j + 1) * FRAME_SAMPLES].tobytes(), 16_000))
        if last_voiced is None:
            window = flags[-p.start_frames:]
            if sum(window) >= start_needed:
                first = len(flags) - len(window) + window.index(True)
                last_voiced = len(flags) - 1 - window[::-1].index(True)
                changes.append(("speech_start", first))
        else:
            if flags[-1]:
                last_voiced = j
            unvoiced = flags[-p.end_frames:].count(False) + max(0, p.end_frames - len(flags))  # none before the start
            if unvoiced >= end_needed:
                changes.append(("speech_end", last_voiced + 1))
                last_voiced = None
    return changes


@pytest.mark.parametrize("params", [
    SegmenterParams(),  # windows checked only where a count can cross
    SegmenterParams(start_window_ms=600, hangover_ms=90),  # the same, the start window the longer one
    SegmenterParams(ratio=0.5),  # a window that closes a segment could open one: every frame checked
    SegmenterParams(ratio=0.3, start_window_ms=600, hangover_ms=90, aggressiveness=1),
], ids=["default", "long-start", "ratio-0.5", "ratio-0.3"])
def test_state_changes_match_the_plain_rule(demo, params):
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 2500, 16_000 * 3) * (np.arange(16_000 * 3) % 4000 < 1500)).astype(np.int16)
    pcm = np.concatenate([demo["pcm"][: 16_000 * 12], noise, demo["pcm"][16_000 * 12:]])
    events = run(SpeechSegmenter(params), pcm, 1600)
    got = [(e.state, round(e.t / 0.03)) for e in events if isinstance(e, VadState)]
    want = reference_changes(pcm, params)  # the demo ends in silence: flush() has nothing left to close
    assert len(want) >= 6 and got == want
