"""The camera actor: synthetic and file sources, reconnect with backoff, quality flags, adaptive rate."""

from __future__ import annotations

import random
import shutil

import cv2
import numpy as np
import pytest
import zmq

from actors.camera.actor import adaptive_fps, frame_quality, quality_flags
from actors.lib.scenes import MovingScene, random_scene
from bus.bodies.vision import CameraFrame, Detections
from bus.envelope import LOCAL_MARKER
from bus.pubsub import Publisher, Subscriber
from config.backoff import BackoffPolicy
from tests.support import WAIT_S, raw_sub


def test_frame_quality_measures_blur_and_brightness():
    sharp = random_scene(5).image
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    q_sharp, q_blur = frame_quality(sharp), frame_quality(blurred)
    assert q_blur["blur"] < q_sharp["blur"] / 4
    dark = (sharp // 8).astype(np.uint8)
    assert frame_quality(dark)["brightness"] < 40 < q_sharp["brightness"]
    assert "dark" in quality_flags(frame_quality(dark), 30.0, 40.0, 220.0)
    assert quality_flags({"blur": 5.0, "brightness": 250.0}, 30.0, 40.0, 220.0) == ["blurry", "bright"]
    assert quality_flags({"blur": 500.0, "brightness": 120.0}, 30.0, 40.0, 220.0) == []


def test_adaptive_fps_follows_latency_within_bounds():
    assert adaptive_fps(None, 1, 10, 1.5) == 10
    assert adaptive_fps(10.0, 1, 10, 1.5) == 10           # 66 fps possible: capped
    assert adaptive_fps(200.0, 1, 10, 1.5) == pytest.approx(1000 / 300)
    assert adaptive_fps(5000.0, 1, 10, 1.5) == 1          # floor


def test_backoff_delays_grow_to_the_cap():
    policy = BackoffPolicy(initial_s=0.1, factor=2.0, max_s=1.0, jitter=0.0)
    rng = random.Random(0)
    assert [policy.delay_s(a, rng) for a in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_moving_scene_moves_and_keeps_objects_inside():
    scene = MovingScene(seed=3, n_objects=4, speed_px_s=40.0)
    first = scene.frame(0.0)
    later = scene.frame(2.0)
    assert not np.array_equal(first.image, later.image)
    for boxes in later.boxes.values():
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()


def test_moving_scene_draws_into_a_given_frame():
    scene, twin = MovingScene(seed=3, n_objects=4), MovingScene(seed=3, n_objects=4)
    out = np.zeros((120, 160, 3), np.uint8)
    drawn = twin.frame(1.5, out=out)
    assert drawn.image is out
    np.testing.assert_array_equal(out, scene.frame(1.5).image)
    assert {k: v.tolist() for k, v in drawn.boxes.items()} == {k: v.tolist() for k, v in scene.frame(1.5).boxes.items()}


@pytest.mark.slow
def test_a_large_synthetic_frame_drawn_on_loan_reaches_local_and_plain_readers_alike(supervisor_factory,
                                                                                    collector_factory):
    """640x480: above the shared-memory threshold, the camera draws each frame into a slot on loan."""
    sup = supervisor_factory("""
[actors.camera]
settings = { source = "synthetic", width = 640, height = 480, min_fps = 5.0, max_fps = 10.0 }
""")
    sup.wait_running("camera")
    plain = collector_factory(sup, ["camera.frame", "sys.heartbeat"])  # first: it has every frame the local
    # reader gets
    local = Subscriber(zmq.Context.instance(), sup.backend, ["camera.frame"], shm=True)
    assert local.wait_subscribed(sup.frontend, WAIT_S)
    spy = raw_sub(zmq.Context.instance(), sup.backend, LOCAL_MARKER + b"camera.frame")
    assert spy.poll(int(WAIT_S * 1000)), "no frame in the local form"
    assert b"sensorium-" in spy.recv_multipart()[2], "the local form carries no shared-memory reference"
    spy.close()
    seen: dict[int, np.ndarray] = {}
    while len(seen) < 5:
        msg = local.recv(int(WAIT_S * 1000))
        assert msg is not None, "the local reader got no frame"
        seen[msg.body["frame_id"]] = msg.body["image"]
    assert local.stats.malformed == 0
    for frame_id, image in seen.items():
        twin = plain.wait_for(lambda m, i=frame_id: m.body.get("frame_id") == i, what=f"plain frame {frame_id}")
        assert image.shape == (480, 640, 3)
        np.testing.assert_array_equal(twin.body["image"], image)
    # Those frames were drawn in the ring itself: the camera counts frames published from a loan.
    plain.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "camera"
                   and m.body["extra"]["frames_on_loan"] >= 5, what="the camera's frames on loan")
    local.close()


@pytest.mark.slow
def test_synthetic_camera_publishes_frames_and_slows_down_for_a_slow_detector(supervisor_factory, collector_factory):
    sup = supervisor_factory("""
[actors.camera]
settings = { source = "synthetic", min_fps = 1.0, max_fps = 8.0, latency_headroom = 1.5 }
""")
    sup.wait_running("camera")
    frames = collector_factory(sup, ["camera.frame"])
    first = frames.wait_for(lambda m: m.topic == "camera.frame", what="a frame").body
    frame = CameraFrame.from_body(first)
    assert frame.check_image().shape == (120, 160, 3)
    assert set(frame.quality) == {"blur", "brightness"} and frame.quality["blur"] > 30 and frame.flags == []
    assert frame.fps == 8.0
    start = len(frames.messages)
    ids = [m.body["frame_id"] for m in frames.messages]
    assert ids == sorted(ids)
    # A detector that takes 500 ms per frame: the camera must drop to 1000 / (500 * 1.5) = 1.33 fps.
    pub = Publisher(zmq.Context.instance(), sup.frontend, "test@detector")
    assert pub.wait_for_subscriber("detect.circle", WAIT_S)
    for i in range(20):
        pub.publish("detect.circle", Detections(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32),
                                                frame_id=i, head_version="1", latency_ms=500.0).to_body())
    slow = frames.wait_for(lambda m: m.body["fps"] < 2.0, after=start, what="a slower frame rate").body
    assert slow["fps"] == pytest.approx(1000 / 750, rel=0.05)
    pub.close()


@pytest.mark.slow
def test_file_source_reconnects_with_backoff_until_the_file_appears(supervisor_factory, collector_factory, tmp_path):
    video = tmp_path / "clip.avi"
    sup = supervisor_factory(f"""
[actors.camera]
settings = {{ source = "{video}", max_fps = 10.0, reconnect = {{ initial_s = 0.05, factor = 2.0, max_s = 0.4, jitter = 0.0 }} }}
""")
    sup.wait_running("camera")
    out = collector_factory(sup, ["camera.frame", "sys.heartbeat"])
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "camera"
                 and m.body["extra"]["reconnects"] >= 3 and not m.body["extra"]["connected"],
                 what="camera retrying a missing file")
    staging = tmp_path / "staging.avi"
    writer = cv2.VideoWriter(str(staging), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    assert writer.isOpened()
    for i in range(12):
        img = np.full((64, 96, 3), 40 + i * 10, np.uint8)
        cv2.circle(img, (20 + i * 4, 32), 10, (255, 255, 255), -1)
        writer.write(img)
    writer.release()
    shutil.move(staging, video)
    frame = out.wait_for(lambda m: m.topic == "camera.frame", what="a frame from the file").body
    assert frame["image"].shape == (64, 96, 3) and frame["source"] == str(video)
    # The file loops: more frames than it holds arrive.
    out.wait_for(lambda m: m.topic == "camera.frame" and m.body["frame_id"] >= 15, what="frames after a loop")


def test_bad_vision_settings_stop_the_start_naming_the_key(tmp_path):
    from actors.registry import load_config
    from config import ConfigError

    path = tmp_path / "bad.toml"
    path.write_text('replace_default_actors = true\n[actors.camera]\nsettings = { min_fps = 5.0, max_fps = 2.0, kinds = ["hexagon"] }\n'
                    '[actors.detector]\nsettings = { device = "tpu" }\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "actors.camera.settings.max_fps" in text and "below min_fps" in text
    assert "actors.camera.settings.kinds" in text and "actors.detector.settings.device" in text
