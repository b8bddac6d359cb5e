"""Matching and segmentation on their own: the fast DTW is the textbook DTW, segments
follow the performed gestures, and the noise floor adapts."""

from __future__ import annotations

import numpy as np

from actors.lib.gesture.matching import Matcher, dtw_batch, dtw_python, normalise
from actors.lib.gesture.segmenter import Segmenter
from actors.lib.imu.synthetic import GESTURES, ScriptedStream, Variation, make_sample


def test_vectorised_banded_dtw_equals_textbook_dtw():
    rng = np.random.default_rng(4)
    q = rng.normal(size=(32, 6)).astype(np.float32)
    refs = rng.normal(size=(7, 32, 6)).astype(np.float32)
    wide = dtw_batch(q, refs, band=64)
    np.testing.assert_allclose(wide, [dtw_python(q.tolist(), r.tolist()) for r in refs], rtol=1e-6)
    assert (dtw_batch(q, refs, band=2) >= wide - 1e-9).all()      # a band only removes paths
    assert dtw_batch(q, q[None], band=4)[0] == 0.0


def test_normalise_removes_speed_and_amplitude():
    rng = np.random.default_rng(1)
    s = make_sample("circle", rng, variation=Variation(acc_noise=(0.0, 0.0), gyro_noise=(0.0, 0.0), warp=0.0,
                                                        tilt_deg=0.0, axis_gain=0.0), rest_s=0.0)
    slow_t = s.t * 1.5
    a, b = normalise(s.t, s.acc, s.gyro), normalise(slow_t, 2 * s.acc, 2 * s.gyro)
    np.testing.assert_allclose(a, b, atol=1e-5)
    m = Matcher(np.stack([a]), ["circle"])
    assert m.match(b).name == "circle" and m.match(b).runner_up == ""


def test_segments_follow_the_performed_gestures_and_the_floor_adapts_to_noise():
    for noise in ((0.1, 0.1), (0.6, 0.6)):      # a quiet and a shaky hand
        stream = ScriptedStream(list(GESTURES), seed=8, variation=Variation(acc_noise=noise))
        seg = Segmenter()
        found = []
        for k in range(1, 450):
            found += seg.feed(*stream.read_until(k * 0.1))
        events = [e for e in stream.events if e.t_end < 44.3]     # complete: quiet long enough after them
        assert len(events) >= 15
        for e in events:
            mine = [s for s in found if s.t_start < e.t_end and s.t_end > e.t_start]
            assert len(mine) == 1, (e, [(s.t_start, s.t_end) for s in mine])
            assert abs(mine[0].t_start - e.t_start) < 0.25 and abs(mine[0].t_end - e.t_end) < 0.25
        assert all(any(s.t_start < e.t_end and s.t_end > e.t_start for e in stream.events) for s in found)
        assert seg.noise_floor is not None
        # E|acc|² + 9 E|gyro|² at rest: noise variance on 3 axes plus the squared biases
        gyro_sigma = np.mean(Variation().gyro_noise)
        expected_floor = (3 * np.mean(noise) ** 2 + np.sum(stream.acc_bias ** 2)
                          + 9 * (3 * gyro_sigma ** 2 + np.sum(stream.gyro_bias ** 2)))
        assert 0.6 * expected_floor < seg.noise_floor < 1.6 * expected_floor
