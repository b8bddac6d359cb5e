"""A real recording (camera, detector, IMU, a transcript, supervisor events) exported for Foxglove, then read
back with the standard MCAP reader and standard decoders only: every message of every channel decodes."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
import zmq

from actors.foxglove.export import export
from actors.foxglove.mapping import ConverterOptions
from bus.bodies.audio import Transcript
from bus.pubsub import Publisher
from bus.recording import scan
from tests.support import Collector, SupervisorProcess, write_config

pytest.importorskip("foxglove")
pytest.importorskip("cv2")
mcap_protobuf = pytest.importorskip("mcap_protobuf.decoder")
from mcap.decoder import DecoderFactory  # noqa: E402
from mcap.reader import make_reader  # noqa: E402
from mcap.records import Schema  # noqa: E402

pytestmark = pytest.mark.slow


class JsonDecoderFactory(DecoderFactory):
    """The standard JSON decoding: UTF-8 JSON, as Foxglove reads a ``json`` channel."""

    def decoder_for(self, message_encoding: str, schema: Optional[Schema]) -> Optional[Callable[[bytes], Any]]:
        return (lambda data: json.loads(data)) if message_encoding == "json" else None


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """One recording, made by the recorder actor from live actors (the detector's model is loaded once)."""
    ipc = Path(tempfile.mkdtemp(prefix="sn", dir="/tmp"))
    rec_dir = tmp_path_factory.mktemp("rec")
    config = write_config(ipc, f"""
[actors.camera]
settings = {{ source = "synthetic", max_fps = 10.0 }}
[actors.detector]
[actors.sensor]
[actors.recorder]
settings = {{ dir = "{rec_dir}", prefixes = ["camera.", "detect.", "sensor.", "speech."], flush_s = 0.5, min_free_bytes = 0 }}
""")
    sup = SupervisorProcess(config, ipc)
    try:
        sup.wait_running("camera", "detector", "sensor", "recorder", timeout_s=120)
        seen = Collector(sup.frontend, sup.backend, ["detect.", "sensor.imu", "speech."])
        pub = Publisher(zmq.Context.instance(), sup.frontend, "speech")
        assert pub.wait_for_subscriber("speech.transcript", 10.0)
        pub.publish("speech.transcript", Transcript(text="what do you see", segments=[], language="en",
                                                    segment_id=1, latency_ms=50.0).to_body())
        seen.wait_for(lambda m: m.topic == "speech.transcript", what="the transcript")
        first = seen.wait_for(lambda m: m.topic.startswith("detect."), timeout_s=120, what="detections")
        seen.wait_for(lambda m: m.topic == "sensor.imu", what="IMU batches")
        seen.wait_for(lambda m: m.topic.startswith("detect.") and m.body["frame_id"] >= first.body["frame_id"] + 5,
                      timeout_s=120, what="more detections")
        seen.close()
        pub.close()
        assert sup.terminate() == 0
    finally:
        sup.cleanup()
        shutil.rmtree(ipc, ignore_errors=True)
    files = sorted(rec_dir.glob("*.mcap"))
    assert len(files) == 1, files
    return files[0]


def test_every_message_of_every_exported_channel_decodes_with_standard_decoders(recording, tmp_path):
    before = hashlib.sha256(recording.read_bytes()).hexdigest()
    target = tmp_path / "foxglove.mcap"
    report = export(recording, target, ConverterOptions(compressed_images=True))
    assert not report.skipped and not report.damage and report.messages_out > report.messages_in

    decoded: dict[str, list[Any]] = {}
    with open(target, "rb") as f:
        reader = make_reader(f, decoder_factories=[mcap_protobuf.DecoderFactory(), JsonDecoderFactory()])
        summary = reader.get_summary()
        for channel in summary.channels.values():
            schema = summary.schemas.get(channel.schema_id)
            assert schema is not None and schema.data, f"{channel.topic} has no schema"
            assert (channel.message_encoding, schema.encoding) in {("json", "jsonschema"), ("protobuf", "protobuf")}
        for schema, channel, message, value in reader.iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append(value)
        assert sum(map(len, decoded.values())) == summary.statistics.message_count == report.messages_out
        assert set(decoded) == {c.topic for c in summary.channels.values()}
        kinds = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}

    assert kinds["camera.frame"] == "foxglove.RawImage"
    assert kinds["camera.frame/compressed"] == "foxglove.CompressedImage"
    assert kinds["sys.actor/log"] == "foxglove.Log"
    assert kinds["speech.transcript"] == "sensorium.Transcript"
    assert kinds["sensor.imu"] == "sensorium.ImuBatch" and "sensor.imu/sample" in kinds
    signals = [t for t in kinds if t.startswith("detect.") and not t.endswith("/annotations")]
    assert signals and all(kinds[f"{s}/annotations"] == "foxglove.ImageAnnotations" for s in signals)

    # The images are the recorded frames, byte for byte.
    recorded = [r.decode().body["image"] for r in scan(recording) if r.topic == "camera.frame"]
    images = decoded["camera.frame"]
    assert len(images) == len(recorded)
    img = images[-1]
    assert img.encoding == "bgr8" and np.array_equal(
        np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 3), recorded[-1])
    assert decoded["speech.transcript"][0]["text"] == "what do you see"
    assert all({"acc", "gyro", "t"} <= set(s) for s in decoded["sensor.imu/sample"])
    # Export reads the recording and leaves it as it was: replay stays bit-identical.
    assert hashlib.sha256(recording.read_bytes()).hexdigest() == before


def test_export_refuses_to_overwrite(recording, tmp_path):
    target = tmp_path / "exists.mcap"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        export(recording, target)
    assert target.read_bytes() == b"keep me"
