"""The intent actor on a real bus: transcripts injected as ``speech.transcript`` (as the speech actor sends them),
gestures as ``gesture.recognized``; confirmation, actions with programs, senders, time limits, vision answers."""

from __future__ import annotations

import sys
import threading
import tomllib
from typing import Iterator

import numpy as np
import pytest
import zmq

from actors.intent.actor import IntentActor, describe
from actors.intent.settings import IntentSettings
from bus.bodies.audio import Transcript
from bus.bodies.gesture import GestureRecognized
from bus.bodies.vision import Tracks
from bus.endpoints import Endpoints
from bus.pubsub import Publisher
from tests.support import ROOT, WAIT_S, Collector, wait_until

PROGRAMS = {
    "timer.set": {"patterns": ["set a timer for {minutes:number} minutes"],
                  "program": ["/bin/echo", "timer", "{minutes}"]},
    "lights.off": {"program": [sys.executable, "-c", "import sys; print('bulb broken', file=sys.stderr); sys.exit(3)"]},
    "volume.set": {"program": ["/no/such/program", "{level}"]},
    "message.send": {"program": ["/bin/sleep", "30"]},
}


def settings(**overrides) -> IntentSettings:
    table = tomllib.loads((ROOT / "config" / "default.toml").read_text())["actors"]["intent"]["settings"]
    for name, extra in PROGRAMS.items():
        table["intents"][name].update(extra)
    table["limits"] = {**table["limits"], "confirm_medium_s": 1.5, "action_s": 1.0}
    table.update(overrides)
    return IntentSettings.model_validate(table)


class Bus:
    def __init__(self, broker, collector: Collector) -> None:
        self.ctx = zmq.Context.instance()
        self.bus = collector
        self.speech = Publisher(self.ctx, broker.frontend, "speech")
        self.gesture = Publisher(self.ctx, broker.frontend, "gesture")
        self.console = Publisher(self.ctx, broker.frontend, "console")
        self.camera = Publisher(self.ctx, broker.frontend, "tracker")
        self.n = 0

    def say(self, text: str, sender: str = "speech", latency_ms: float = 800.0) -> int:
        """Publish a transcript; returns how many messages the collector held before it."""
        before = len(self.bus.messages)
        pub = getattr(self, sender)
        pub.publish(Transcript.TOPIC, Transcript(text=text, segments=[], language="en", segment_id=self.n,
                                                 latency_ms=latency_ms).to_body())
        self.n += 1
        return before

    def gesture_(self, name: str, confidence: float = 0.9) -> int:
        before = len(self.bus.messages)
        self.gesture.publish(GestureRecognized.TOPIC, GestureRecognized(
            name=name, confidence=confidence, is_outlier=False, processing_time_ms=1.0, template_version=1).to_body())
        return before

    def next(self, topic: str, after: int, what: str = ""):
        return self.bus.wait_for(lambda m: m.topic == topic, after=after, what=what or topic).body

    def close(self) -> None:
        for p in (self.speech, self.gesture, self.console, self.camera):
            p.close()


@pytest.fixture
def running(broker, ipc_dir, collector_factory, request) -> Iterator[Bus]:
    overrides = getattr(request, "param", {})
    bus = collector_factory(broker, ["intent.", "action.", "assistant.", "sys.heartbeat"])
    endpoints = Endpoints(broker.frontend, broker.backend, f"ipc://{ipc_dir}/control.sock")
    actor = IntentActor("intent", settings(**overrides), endpoints, heartbeat_s=0.2)
    thread = threading.Thread(target=actor.run, daemon=True)
    thread.start()
    bus.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "intent", what="the intent actor ready")
    b = Bus(broker, bus)
    for pub in (b.speech, b.gesture, b.console, b.camera):
        assert pub.wait_for_subscriber("speech.transcript" if pub is not b.camera else "track.circle", WAIT_S)
    yield b
    b.close()
    actor.stop("test over")
    thread.join(10)


def test_a_low_risk_command_is_recognized_confirmed_and_runs_its_program(running):
    at = running.say("Set a timer for twelve minutes.")
    rec = running.next("intent.recognized", at)
    assert rec["intent"] == "timer.set" and rec["slots"] == {"minutes": 12} and rec["risk"] == "low"
    assert rec["confidence"] == 1.0 and rec["words"] == "set a timer for twelve minutes"
    assert running.next("intent.confirmed", at)["via"] == "auto"
    action = running.bus.wait_for(lambda m: m.topic == "action.timer.set", after=at)
    assert action.body["slots"] == {"minutes": 12} and action.header.corr == rec["id"]
    result = running.next("intent.action_result", at)
    assert result["ok"] and result["exit_code"] == 0 and result["stdout"] == "timer 12\n"
    assert result["argv"] == ["/bin/echo", "timer", "12"]


def test_failing_actions_are_events_not_crashes(running):
    at = running.say("Turn off the lights.")
    result = running.next("intent.action_result", at)
    assert not result["ok"] and result["exit_code"] == 3 and "bulb broken" in result["stderr"]
    at = running.say("Set the volume to 7.")
    result = running.next("intent.action_result", at)
    assert not result["ok"] and result["exit_code"] is None and "FileNotFoundError" in result["error"]
    at = running.say("Send a message to Bob.")
    running.next("intent.confirm_request", at)
    running.say("Yes.")
    result = running.next("intent.action_result", at)  # /bin/sleep 30, killed at action_s = 1
    assert not result["ok"] and "timed out" in result["error"]
    timeout = running.next("intent.timeout", at)
    assert timeout["stage"] == "action" and timeout["limit_s"] == 1.0
    beat = running.bus.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "intent"
                                and m.body["extra"]["actions_failed"] == 3, what="3 failed actions counted")
    assert beat.body["counters"]["errors"] == 0


def test_voice_yes_confirms_and_voice_no_cancels(running):
    at = running.say("Unlock the front door.")
    req = running.next("intent.confirm_request", at)
    assert req["risk"] == "medium" and req["prompt"] == "Unlock the front door?" and req["timeout_s"] == 1.5
    at2 = running.say("Yes, do it.")
    confirmed = running.next("intent.confirmed", at2)
    assert confirmed["id"] == req["id"] and confirmed["via"] == "voice" and confirmed["by"] == "speech"
    running.bus.wait_for(lambda m: m.topic == "action.door.unlock" and m.body["slots"] == {"door": "front"},
                         after=at2)
    at = running.say("Unlock the back door.")
    req = running.next("intent.confirm_request", at)
    at2 = running.say("No, cancel that.")
    cancelled = running.next("intent.cancelled", at2)
    assert cancelled["id"] == req["id"] and cancelled["reason"] == "no"
    assert not [m for m in running.bus.messages[at:] if m.topic.startswith("action.")]
    at = running.say("Yes.")  # nothing waits: nobody's answer
    assert running.next("intent.unknown", at)["reason"] == "no_pending"


def test_a_gesture_confirms_another_cancels_and_a_weak_one_answers_nothing(running):
    at = running.say("Shut down the system.")
    req = running.next("intent.confirm_request", at)
    assert req["risk"] == "high" and req["timeout_s"] == 30.0
    running.gesture_("circle", confidence=0.2)  # too unsure to answer
    at2 = running.gesture_("circle")
    confirmed = running.next("intent.confirmed", at2)
    assert confirmed["via"] == "gesture" and confirmed["by"] == "gesture" and confirmed["id"] == req["id"]
    assert len([m for m in running.bus.messages if m.topic == "intent.confirmed" and m.body["id"] == req["id"]]) == 1
    running.bus.wait_for(lambda m: m.topic == "action.system.shutdown", after=at2)
    at = running.say("Shut down the system.")
    running.next("intent.confirm_request", at)
    at2 = running.gesture_("shake")
    assert running.next("intent.cancelled", at2)["reason"] == "gesture"


def test_an_unanswered_request_times_out_and_a_second_command_waits_its_turn(running):
    at = running.say("Unlock the front door.")
    first = running.next("intent.confirm_request", at)
    at2 = running.say("Send a message to Alice.")
    queued = running.next("intent.queued", at2)
    assert queued["position"] == 1 and queued["intent"] == "message.send"
    cancelled = running.next("intent.cancelled", at2, "the first request timing out")
    assert cancelled["id"] == first["id"] and cancelled["reason"] == "timeout" and cancelled["waited_s"] >= 1.5
    timeout = running.next("intent.timeout", at2)
    assert timeout["stage"] == "confirm" and timeout["id"] == first["id"] and timeout["limit_s"] == 1.5
    second = running.bus.wait_for(lambda m: m.topic == "intent.confirm_request" and m.body["id"] == queued["id"],
                                  after=at2, what="the queued intent asked about").body
    assert second["slots"] == {"contact": "alice"}


@pytest.mark.parametrize("running", [{"pending": "refuse"}], indirect=True)
def test_a_second_command_is_refused_by_policy(running):
    at = running.say("Unlock the front door.")
    first = running.next("intent.confirm_request", at)
    at2 = running.say("Unlock the garage door.")
    refused = running.next("intent.cancelled", at2)
    assert refused["reason"] == "busy" and refused["slots"] == {"door": "garage"}
    at3 = running.say("Yes.")
    assert running.next("intent.confirmed", at3)["id"] == first["id"]


def test_only_allowed_senders_may_act_and_the_others_are_counted(running):
    at = running.say("Set a timer for 5 minutes.", sender="console")
    running.gesture_("circle")
    at2 = running.say("What is the weather like?")
    unknown = running.next("intent.unknown", at2)
    assert unknown["reason"] == "no_match" and unknown["source"] == "speech"
    assert not [m for m in running.bus.messages[at:] if m.topic in ("intent.recognized", "action.timer.set")]
    beat = running.bus.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "intent"
                                and m.body["extra"]["refused_senders"] >= 1, after=at).body
    assert beat["extra"]["refused_senders"] == 1 and beat["extra"]["recognized"] == 0


def test_a_stale_transcript_is_a_speech_stage_time_out(running):
    at = running.say("Set a timer for 5 minutes.", latency_ms=61_000)
    timeout = running.next("intent.timeout", at)
    assert timeout["stage"] == "speech" and timeout["limit_s"] == 60.0 and timeout["elapsed_s"] == 61.0
    assert not [m for m in running.bus.messages[at:] if m.topic == "intent.recognized"]


def test_what_do_you_see_is_answered_from_fresh_tracks_else_a_vision_time_out(running):
    at = running.say("What do you see?")
    answer = running.next("assistant.answer", at)
    assert "cannot see" in answer["text"] and running.next("intent.timeout", at)["stage"] == "vision"
    box = [10.0, 10.0, 30.0, 30.0]
    for signal, n in (("circle", 2), ("square", 1), ("triangle", 0)):
        tracks = [{"id": i, "box": box, "present": True, "age": 9, "hits": 5, "score": 0.9} for i in range(n)]
        running.camera.publish(f"track.{signal}", Tracks(signal=signal, frame_id=1, tracks=tracks,
                                                         present=n).to_body())

    def answered_with_every_signal() -> bool:
        # The three track messages may arrive after the question: ask until an answer has all of them.
        at = running.say("What can you see?")
        return running.next("assistant.answer", at)["facts"]["counts"].keys() == {"circle", "square", "triangle"}

    wait_until(answered_with_every_signal, what="an answer from every signal's tracks")
    answer = [m.body for m in running.bus.messages if m.topic == "assistant.answer"][-1]
    assert answer["text"] == "I see 2 circles and a square." and answer["facts"]["counts"]["circle"] == 2


def test_describe():
    assert describe({}) == "I see nothing I know."
    assert describe({"circle": 1, "square": 0}) == "I see a circle."
    assert describe({"circle": 3, "square": 1, "triangle": 2}) == "I see 3 circles, a square and 2 triangles."
