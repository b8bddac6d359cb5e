"""The bus -> Foxglove mapping, alone: every kind of channel decoded by its schema only."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from actors.foxglove.mapping import Converter, ConverterOptions, json_value, log_line
from bus.bodies.audio import Transcript
from bus.bodies.imu import ImuBatch
from bus.bodies.vision import CameraFrame, Detections
from bus.messages import ActorEvent, Alert
from tests.actors.foxglove.protobuf_decode import decode
from tests.support import received

pytest.importorskip("foxglove")


def by_topic(outputs):
    return {o.channel.topic: o for o in outputs}


def proto(out):
    return decode(out.channel.schema_name, out.channel.schema_data, out.data)


def json_checked(out):
    value = json.loads(out.data)
    if out.channel.schema_encoding == "jsonschema":
        jsonschema.validate(value, json.loads(out.channel.schema_data))
    return value


def frame(frame_id=7, t_capture_ns=1_700_000_000_123_456_789):
    img = np.zeros((12, 16, 3), np.uint8)
    img[2:5, 3:9] = (255, 0, 0)
    return received("camera.frame", 0, CameraFrame(image=img, frame_id=frame_id, fps=10.0,
                                                    t_capture_ns=t_capture_ns).to_body()), img


def test_a_camera_frame_is_a_raw_bgr8_image_stamped_at_capture():
    msg, img = frame()
    out = by_topic(Converter().convert(msg))
    assert list(out) == ["camera.frame"]
    raw = proto(out["camera.frame"])
    assert out["camera.frame"].channel.schema_name == "foxglove.RawImage"
    assert (raw.width, raw.height, raw.encoding, raw.step) == (16, 12, "bgr8", 48)
    assert np.array_equal(np.frombuffer(raw.data, np.uint8).reshape(12, 16, 3), img)
    assert (raw.timestamp.seconds, raw.timestamp.nanos) == (1_700_000_000, 123_456_789)
    assert out["camera.frame"].log_time_ns == msg.header.ts


def test_compressed_images_are_jpeg_when_asked():
    pytest.importorskip("cv2")
    import cv2

    msg, img = frame()
    out = by_topic(Converter(ConverterOptions(compressed_images=True, jpeg_quality=95)).convert(msg))
    jpeg = proto(out["camera.frame/compressed"])
    assert jpeg.format == "jpeg"
    back = cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == img.shape and np.abs(back.astype(int) - img).mean() < 8


def test_detections_are_boxes_over_their_own_frame_and_json():
    conv = Converter()
    msg, _ = frame(frame_id=41, t_capture_ns=5_000_000_001)
    conv.convert(msg, wanted=lambda c: False)  # nobody watches the camera: its capture time is still kept
    det = Detections(boxes=np.array([[1, 2, 11, 8], [0, 0, 4, 4]], np.float32), scores=np.array([0.9, 0.5], np.float32),
                     frame_id=41, head_version="1", latency_ms=3.5, signal="circle")
    out = by_topic(conv.convert(received("detect.circle", 3, det.to_body())))
    ann = proto(out["detect.circle/annotations"])
    assert len(ann.points) == 2 and len(ann.texts) == 2
    box = ann.points[0]
    assert [(p.x, p.y) for p in box.points] == [(1, 2), (11, 2), (11, 8), (1, 8)]
    assert (box.timestamp.seconds, box.timestamp.nanos) == (5, 1)  # the frame's capture time
    assert ann.texts[0].text == "circle 0.90"
    body = json_checked(out["detect.circle"])
    assert body["boxes"] == [[1, 2, 11, 8], [0, 0, 4, 4]] and body["_bus"]["seq"] == 3
    assert out["detect.circle"].channel.schema_name == "sensorium.Detections"


def test_bad_boxes_are_a_value_error_naming_the_topic():
    body = Detections(boxes=np.zeros((2, 4), np.float32), scores=np.zeros(2, np.float32), frame_id=1,
                      head_version="1", latency_ms=1.0, signal="x").to_body()
    body["boxes"] = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="detect"):
        Converter().convert(received("detect.x", 0, body))


def test_imu_batches_are_json_and_one_plottable_sample_each():
    t = np.array([10.00, 10.01, 10.02])
    acc = np.arange(9, dtype=np.float32).reshape(3, 3)
    msg = received("sensor.imu", 0, ImuBatch(t=t, acc=acc, gyro=-acc).to_body())
    outs = Converter().convert(msg)
    samples = [o for o in outs if o.channel.topic == "sensor.imu/sample"]
    assert [json_checked(o)["acc"] for o in samples] == [{"x": 0, "y": 1, "z": 2}, {"x": 3, "y": 4, "z": 5},
                                                         {"x": 6, "y": 7, "z": 8}]
    assert [o.log_time_ns for o in samples] == [msg.header.ts - 20_000_000, msg.header.ts - 10_000_000, msg.header.ts]
    batch = json_checked(next(o for o in outs if o.channel.topic == "sensor.imu"))
    assert batch["gyro"][2] == [-6, -7, -8]


def test_transcripts_are_json_valid_against_their_schema():
    body = Transcript(text="hello there", segments=[{"start": 0.0, "end": 1.0, "text": "hello there"}],
                      language="en", segment_id=4, latency_ms=120.0).to_body()
    out = Converter().convert(received("speech.transcript", 0, body))
    assert len(out) == 1 and out[0].channel.schema_name == "sensorium.Transcript"
    assert json_checked(out[0])["text"] == "hello there"


def test_big_arrays_are_summarised_and_nan_is_null():
    pcm = np.arange(10_000, dtype=np.int16)
    value = json_value({"pcm": pcm, "x": np.array([1.0, np.nan], np.float32), "y": float("inf")}, 4096)
    assert value["pcm"] == {"dtype": "int16", "shape": [10_000], "min": 0.0, "max": 9999.0, "mean": 4999.5}
    assert value["x"] == [1.0, None] and value["y"] is None
    json.dumps(value, allow_nan=False)


def test_supervisor_events_and_alerts_are_logs():
    conv = Converter()
    ev = ActorEvent(actor="camera", event="failed", exit=3, reason="circuit open").to_body()
    out = by_topic(conv.convert(received("sys.actor", 0, ev, src="supervisor")))
    log = proto(out["sys.actor/log"])
    assert log.level == 4 and log.name == "supervisor/camera" and "exit 3" in log.message  # 4: ERROR
    json_checked(out["sys.actor"])
    alert = Alert(level="critical", metric="recorder.disk_full", value=1.0, threshold=2.0, actor="recorder",
                  message="disk full").to_body()
    out = by_topic(conv.convert(received("monitor.alert", 0, alert)))
    assert proto(out["monitor.alert/log"]).level == 4 and "disk full" in proto(out["monitor.alert/log"]).message
    assert log_line("monitor.alert", {**alert, "state": "cleared"})[0] == "Info"


def test_a_topic_without_a_typed_body_is_json_with_a_permissive_schema():
    out = Converter().convert(received("probe.tick", 0, {"n": 1}))
    assert out[0].channel.schema_name == "sensorium.Untyped" and json_checked(out[0])["n"] == 1
