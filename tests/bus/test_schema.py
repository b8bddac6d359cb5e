"""Topic schemas: every published body has a valid JSON Schema, and real messages validate against it."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest

from actors.registry import Registry
from bus.bodies.audio import AudioChunk, AudioEvent, SpeechSegment, Transcript, VadState
from bus.bodies.gesture import GestureRecognized, GestureUnknown
from bus.bodies.imu import ImuBatch, SensorState
from bus.bodies.vision import CameraFrame, Detections
from bus.envelope import Header, decode, encode
from bus.bodies.audio import PartialTranscript, SpeechSoFar
from bus.bodies.intent import (ActionInvoked, ActionResult, AssistantAnswer, ConfirmRequest, IntentCancelled,
                               IntentConfirmed, IntentQueued, IntentRecognized, IntentUnknown, StageTimeout)
from bus.bodies.vision import Tracks
from bus.messages import (ActiveAlerts, ActorEvent, Alert, Command, CommandReply, Health, Heartbeat, LinkState,
                          ModelSwitch)
from bus.schema import BODIES, body_for_topic, json_schema, jsonable, topic_of

N = 5
EXAMPLES = {
    Heartbeat: Heartbeat(state="ready", pid=12, uptime=1.5, counters={"in": 1, "out": 2}, latency_ms={"p50": 0.1},
                         rss=1 << 20, kind="probe", topics={"sys.heartbeat": {"out": 3, "bytes": 600}},
                         subscriptions=["ctl.probe", "test.*"]),
    ActorEvent: ActorEvent(actor="probe", event="exited", exit=-9, pid=33),
    Health: Health(system={"cpu_percent": 3.0}, actors={"probe": {"state": "ready"}}, bus={"gaps": 0}),
    Alert: Alert(level="warning", metric="bus.duplicate_sender", value=2, threshold=1, actor="sensor"),
    Command: Command(cmd="stats"),
    CommandReply: CommandReply(actor="probe", cmd="ping", ok=True, result="pong"),
    AudioChunk: AudioChunk(pcm=np.zeros((160, 2), np.int16), rate=16000, stream="s"),
    VadState: VadState(state="speech_start", t=1.25),
    SpeechSegment: SpeechSegment(pcm=np.zeros(1600, np.int16), t_start=0.1, t_end=0.2, segment_id=3),
    Transcript: Transcript(text="hi", segments=[{"text": "hi"}], language="en", segment_id=3, latency_ms=40.0),
    AudioEvent: AudioEvent(label="clapping", score=0.9, t_start=1.0, t_end=2.0),
    CameraFrame: CameraFrame(image=np.zeros((48, 64, 3), np.uint8), frame_id=7, fps=5.0,
                             quality={"blur": 10.0}, flags=["dark"]),
    Detections: Detections(boxes=np.zeros((2, 4), np.float32), scores=np.ones(2, np.float32), frame_id=7,
                           head_version="1", latency_ms=3.5, signal="circle"),
    ImuBatch: ImuBatch(t=np.arange(N, dtype=np.float64), acc=np.zeros((N, 3), np.float32),
                       gyro=np.zeros((N, 3), np.float32), flags=["dropout"]),
    SensorState: SensorState(state="streaming", previous="connected"),
    GestureRecognized: GestureRecognized(name="circle", confidence=0.9, is_outlier=False, processing_time_ms=1.2,
                                         template_version=2),
    GestureUnknown: GestureUnknown(nearest="flick", reason="far", distance=0.9, threshold=0.6, margin=0.1),
    ActiveAlerts: ActiveAlerts(alerts=[Alert(level="critical", metric="actor.failed", value=1, threshold=0,
                                             actor="probe").to_body()]),
    LinkState: LinkState(host="box", peer="cam", state="up", role="client", endpoint="tcp://192.168.1.20:7300",
                         rtt_ms=0.41, clock_offset_ms=-2.5, msgs_out=0, bytes_out=0, msgs_in=1200, bytes_in=96000),
    ModelSwitch: ModelSwitch(actor="detector", model="circle", old_version="1", new_version="u1",
                             reason="registry changed"),
    SpeechSoFar: SpeechSoFar(pcm=np.zeros(1600, np.int16), t_start=0.1, segment_id=3),
    PartialTranscript: PartialTranscript(text="set a timer", stable=5, segment_id=3, latency_ms=300.0),
    Tracks: Tracks(signal="circle", frame_id=7, tracks=[{"id": 0, "box": [1.0, 2.0, 3.0, 4.0], "present": True,
                                                         "age": 5, "hits": 4, "score": 0.9}], present=1),
    IntentRecognized: IntentRecognized(id="intent-0", intent="timer.set", slots={"minutes": 12},
                                       words="set a timer for twelve minutes", confidence=1.0, risk="low"),
    IntentUnknown: IntentUnknown(text="the weather is nice", reason="no_match"),
    ConfirmRequest: ConfirmRequest(id="intent-1", intent="door.unlock", slots={"door": "front"}, risk="medium",
                                   timeout_s=15.0, prompt="Unlock the front door?"),
    IntentQueued: IntentQueued(id="intent-2", intent="door.unlock", slots={"door": "back"}, position=1),
    IntentConfirmed: IntentConfirmed(id="intent-1", intent="door.unlock", slots={"door": "front"}, via="voice",
                                     by="speech"),
    IntentCancelled: IntentCancelled(id="intent-2", intent="door.unlock", slots={"door": "back"}, reason="timeout",
                                     waited_s=15.0),
    ActionInvoked: ActionInvoked(id="intent-0", name="timer.set", intent="timer.set", slots={"minutes": 12}),
    ActionResult: ActionResult(id="intent-0", name="timer.set", ok=False, exit_code=3, stderr="no", argv=["x"]),
    StageTimeout: StageTimeout(stage="confirm", limit_s=15.0, elapsed_s=15.02, id="intent-2"),
    AssistantAnswer: AssistantAnswer(text="I see a circle.", id="intent-3", facts={"counts": {"circle": 1}}),
}


def published_bodies() -> set[type]:
    return {body for spec in Registry.for_config().specs() for body in spec.publishes}


def test_every_body_a_kind_publishes_has_a_valid_schema_and_an_example_here():
    published = published_bodies()
    assert published <= set(BODIES), f"bodies missing from bus.schema.BODIES: {published - set(BODIES)}"
    assert set(EXAMPLES) == set(BODIES)
    for cls in BODIES:
        jsonschema.Draft202012Validator.check_schema(json_schema(cls))


@pytest.mark.parametrize("cls", BODIES, ids=lambda c: c.__name__)
def test_a_real_message_of_each_body_validates_against_its_schema(cls):
    topic = topic_of(cls)
    topic = topic + "x" if topic.endswith(".") else topic
    frames = encode(topic, Header(src="t", seq=0, ts=0), EXAMPLES[cls].to_body())
    body = decode([bytes(f) if not isinstance(f, np.ndarray) else f.tobytes() for f in frames]).body
    jsonschema.validate(jsonable(body), json_schema(cls), cls=jsonschema.Draft202012Validator)
    assert body_for_topic(topic) is cls


def test_schemas_carry_units_dtypes_and_shapes_and_catch_wrong_bodies():
    schema = json_schema(ImuBatch)
    acc = schema["properties"]["acc"]
    assert acc["x-ndarray"] == {"dtype": "float32", "shape": ["N", 3]} and "m/s²" in acc["description"]
    assert schema["required"] == ["t", "acc", "gyro"]
    good = jsonable(EXAMPLES[ImuBatch].to_body())
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(good)
    for bad in ({**good, "acc": {"dtype": "<f4", "shape": [N, 4]}},     # 4 columns
                {**good, "acc": {"dtype": "<f8", "shape": [N, 3]}},     # float64
                {k: v for k, v in good.items() if k != "gyro"},         # missing field
                {**good, "quality": "high"}):                           # wrong type
        assert not validator.is_valid(bad)
    chunk = json_schema(AudioChunk)["properties"]["pcm"]
    assert [o["x-ndarray"]["shape"] for o in chunk["anyOf"]] == [["N"], ["N", "C"]]


def test_topics_find_their_body_exact_first_then_by_area():
    assert body_for_topic("ctl.reply") is CommandReply
    assert body_for_topic("ctl.detector@vision") is Command
    assert body_for_topic("detect.circle") is Detections
    assert body_for_topic("test.hello") is None
