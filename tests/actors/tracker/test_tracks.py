"""Stable tracks: the pure k-of-N tracker on the synthetic camera's scene with noise added, and the tracker
actor on a real bus."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq

from actors.lib.scenes import MovingScene
from actors.tracker.actor import TrackerActor
from actors.tracker.settings import TrackerSettings
from actors.tracker.tracks import SignalTracker, TrackerParams, iou
from bus.bodies.vision import Detections
from bus.endpoints import Endpoints
from bus.pubsub import Publisher
from tests.support import WAIT_S

FPS = 10
MINUTE_FRAMES = 60 * FPS
MISS_P, JITTER_PX, FALSE_P = 0.1, 2.0, 0.05
"""Noise: each object missed in 10% of frames, boxes jittered by 2 px (sd), a false box in 5% of frames."""


def noisy_stream(seed: int, kind: str = "circle", frames: int = MINUTE_FRAMES):
    """(truth boxes, noisy boxes) per frame of the camera's moving scene, the detector's faults simulated."""
    scene = MovingScene(seed, kinds=(kind,), n_objects=3)
    rng = np.random.default_rng(seed + 1000)
    for i in range(frames):
        truth = scene.frame(i / FPS).boxes_of(kind).astype(np.float64)
        seen = truth[rng.random(len(truth)) >= MISS_P]
        seen = seen + rng.normal(0, JITTER_PX, seen.shape)
        if rng.random() < FALSE_P:
            x, y = rng.uniform(0, 130), rng.uniform(0, 90)
            seen = np.vstack([seen, [[x, y, x + 20, y + 20]]])
        yield truth, seen.astype(np.float32)


def raw_flips(truth_frames: list[np.ndarray], seen_frames: list[np.ndarray]) -> int:
    """Present/absent changes if each frame's detections were taken as they are: per true object, each change
    between seen and not seen; each false box appears and vanishes (2)."""
    flips, last = 0, None
    for truth, seen in zip(truth_frames, seen_frames):
        overlap = iou(truth, seen.astype(np.float64))
        now = overlap.max(axis=1) >= 0.2 if overlap.size else np.zeros(len(truth), bool)
        if last is not None:
            flips += int((now != last).sum())
        last = now
        false = (overlap.max(axis=0) < 0.2).sum() if overlap.size else len(seen)
        flips += 2 * int(false)
    return flips


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_present_absent_flips_are_at_most_a_fifth_of_the_raw_ones_and_appearances_come_within_n(seed):
    params = TrackerParams(window=5, k_present=3, k_gone=3)
    tracker = SignalTracker(params)
    truths, seens, first_present = [], [], {}
    for i, (truth, seen) in enumerate(noisy_stream(seed)):
        truths.append(truth)
        seens.append(seen)
        tracks = tracker.update(seen, np.full(len(seen), 0.9, np.float32))
        for j, box in enumerate(truth):
            if j not in first_present and any(t.present and iou(box[None], t.box[None])[0, 0] > 0.5 for t in tracks):
                first_present[j] = i
    raw = raw_flips(truths, seens)
    # Every object is there from frame 0: each one is reported present within N frames.
    assert sorted(first_present) == [0, 1, 2] and max(first_present.values()) < params.window, first_present
    # The tracker's first 3 appearances are real flips too; compare per minute.
    print(f"seed {seed}: raw flips/min {raw}, tracked flips/min {tracker.flips}")
    assert raw > 50, "the noise must make the raw detections flicker"
    assert tracker.flips <= raw / 5, (tracker.flips, raw)


def test_a_clean_appearance_is_present_after_k_frames_and_gone_after_k_misses_with_a_steady_id():
    tracker = SignalTracker(TrackerParams(window=5, k_present=3, k_gone=3, smoothing=0.5))
    box = np.array([[10, 10, 30, 30]], np.float32)
    none = np.zeros((0, 4), np.float32)
    states = []
    for frame in [none, box, box, box, box, none, box, none, none, none, none, none, none]:
        tracks = tracker.update(frame, np.ones(len(frame), np.float32))
        states.append([t.present for t in tracks])
    assert states[:5] == [[], [False], [False], [True], [True]]  # 3rd sighting: present
    assert states[5:8] == [[True], [True], [True]]  # a miss, seen, a miss: 2 misses of the last 5, present
    assert states[8] == [False]  # the 3rd miss of the last 5 frames: gone
    assert states[-1] == []  # unseen for N frames: closed
    assert tracker.flips == 2


def test_boxes_are_smoothed_and_ids_follow_objects():
    tracker = SignalTracker(TrackerParams(smoothing=0.5))
    a, b = np.array([0, 0, 20, 20], np.float32), np.array([50, 50, 70, 70], np.float32)
    tracker.update(np.stack([a, b]), np.ones(2, np.float32))
    ids = {tuple(t.box.astype(int)): t.id for t in tracker.tracks}
    [ta, tb] = tracker.update(np.stack([b + 4, a + 4]), np.ones(2, np.float32))  # swapped order, moved 4 px
    assert ta.id == ids[(0, 0, 20, 20)] and tb.id == ids[(50, 50, 70, 70)]
    assert np.allclose(ta.box, a + 2)  # half way: smoothed


def test_k_larger_than_the_window_is_refused():
    with pytest.raises(ValueError, match="k_present"):
        TrackerParams(window=3, k_present=4)
    with pytest.raises(ValueError, match="more than window"):
        TrackerSettings(window=3, k_gone=5)


def test_the_tracker_actor_turns_detections_into_tracks_on_their_own_topic(broker, ipc_dir, collector_factory):
    bus = collector_factory(broker, ["track.", "sys.heartbeat"])
    endpoints = Endpoints(broker.frontend, broker.backend, f"ipc://{ipc_dir}/control.sock")
    actor = TrackerActor("tracker", TrackerSettings(window=5, k_present=2, k_gone=2), endpoints, heartbeat_s=0.2)
    thread = threading.Thread(target=actor.run, daemon=True)
    thread.start()
    pub = Publisher(zmq.Context.instance(), broker.frontend, "detector")
    try:
        assert pub.wait_for_subscriber("detect.circle", WAIT_S)
        box = np.array([[10, 10, 30, 30]], np.float32)
        for frame_id in range(3):
            det = Detections(boxes=box, scores=np.ones(1, np.float32), frame_id=frame_id, head_version="1",
                             latency_ms=1.0, signal="circle")
            pub.publish(det.topic(), det.to_body())
        msg = bus.wait_for(lambda m: m.topic == "track.circle" and m.body["frame_id"] == 2, what="track.circle")
        assert msg.body["present"] == 1 and msg.body["window"] == 5
        [track] = msg.body["tracks"]
        assert track["present"] and track["id"] == 0 and track["box"] == [10.0, 10.0, 30.0, 30.0] and track["age"] == 3
        pub.publish("detect.circle", {"boxes": "not an array"})  # malformed: counted, dropped
        bus.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "tracker"
                     and m.body["counters"]["dropped"] == 1 and m.body["extra"]["flips"] == 1, what="the heartbeat")
    finally:
        pub.close()
        actor.stop("test over")
        thread.join(10)
