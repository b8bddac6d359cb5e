"""Floods of each consumed topic at its consumer: losses counted, no liveness kill, work goes on.

For each consumer a separate process (``tests/chaos/flood.py topic``) sends
valid messages of the topic it consumes as fast as this machine lets it, for
FLOOD_S, from one sender; then the test goes on with that sender's sequence
until a message gets through (``account_flood``). The consumer
must stay RUNNING on the same pid (no liveness kill: its loop works in bounded
batches), every message sent must be accounted for as handled or as a seq gap
(``in + gaps == sent``: losses are counted, never silent), and a good
message sent after the flood must be handled. The consumers: audio.chunk ->
vad, sensor.imu -> gesture, speech.transcript -> intent, ctl.<actor> -> a
probe. camera.frame -> detector is left to none: the detector takes frames
only through shared memory (``@shm/camera.frame``), which an outside flood
cannot fill, and its model load alone costs more than this suite's budget.
Costs ~25-35 s.
"""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from actors.lib.imu.synthetic import ScriptedStream
from bus.bodies.audio import AudioChunk, Transcript
from bus.bodies.gesture import GestureRecognized
from bus.bodies.imu import ImuBatch
from bus.pubsub import Publisher
from tests.actors.audio.conftest import demo  # noqa: F401 - the fixture
from tests.actors.gesture.conftest import StreamPlayer, store_copy  # noqa: F401 - the fixture
from tests.chaos.attacks import account_flood, topic_flood
from tests.support import WAIT_S

pytestmark = pytest.mark.slow

FLOOD_S = 3.0
LIVENESS = "[actor_defaults]\nheartbeat_s = 0.5\nliveness_timeout_s = 5.0\n"


def flood_and_account(sup, out, actor: str, topic: str, body: dict, src: str) -> dict:
    """Flood ``actor`` with ``topic``; returns the flood's figures and the heartbeat that accounts for all."""
    before = sup.wait_running(actor)
    pid = next(a["pid"] for a in before["actors"] if a["name"] == actor)
    flood = topic_flood(sup.frontend, topic, body, FLOOD_S, src=src)
    total, beat = account_flood(sup.frontend, out, actor, flood)
    c = beat["counters"]
    print(f"\n{topic} -> {actor}: sent {total} ({flood['rate_hz']}/s); handled {c['in']}, "
          f"counted lost {c['gaps']}, dropped {c['dropped']}, errors {c['errors']}")
    assert c["in"] + c["gaps"] == total, c
    assert c["dropped"] == 0 and c["errors"] == 0, c
    assert beat["pid"] == pid
    exits = [e for e in out.events(actor) if e["event"] in ("exited", "restarting", "failed")]
    assert not exits, f"{actor} was restarted during the flood: {exits}"
    now = sup.actor(actor)
    assert now["state"] == "running" and now["pid"] == pid and now["restarts"] == 0, now
    return beat


def test_an_audio_chunk_flood_at_the_vad(supervisor_factory, collector_factory, demo):
    sup = supervisor_factory("[actors.vad]\n", LIVENESS)
    out = collector_factory(sup, ["sys.heartbeat", "sys.actor", "audio.speech"])
    chunk = AudioChunk(pcm=np.zeros(1600, np.int16), rate=16_000, stream="flood").to_body()
    flood_and_account(sup, out, "vad", AudioChunk.TOPIC, chunk, "flooder")
    pub = Publisher(zmq.Context.instance(), sup.frontend, "after")
    try:
        assert pub.wait_for_subscriber(AudioChunk.TOPIC, WAIT_S)
        pcm = demo["pcm"][: 4 * 16_000]                   # the first sentence
        for i in range(0, pcm.size, 1600):
            pub.publish(AudioChunk.TOPIC, AudioChunk(pcm=pcm[i:i + 1600], rate=16_000, t_start=i / 16_000,
                                                     stream="real").to_body())
        pub.publish(AudioChunk.TOPIC, AudioChunk(pcm=np.zeros(0, np.int16), rate=16_000, stream="real",
                                                 t_start=pcm.size / 16_000, end=True).to_body())
        out.wait_for(lambda m: m.topic == "audio.speech" and m.body["stream"] == "after/real",
                     what="a speech segment of the sentence sent after the flood")
    finally:
        pub.close()


def test_an_imu_flood_at_the_gesture_recognizer(supervisor_factory, collector_factory, store_copy):
    sup = supervisor_factory(f'[actors.gesture]\nsettings = {{ store = {{ path = "{store_copy}", seed_path = "" }} }}\n',
                             LIVENESS)
    out = collector_factory(sup, ["sys.heartbeat", "sys.actor", "gesture."])
    t = np.arange(5, dtype=np.float64) / 100
    batch = ImuBatch(t=t, acc=np.zeros((5, 3), np.float32), gyro=np.zeros((5, 3), np.float32),
                     source="flood").to_body()
    flood_and_account(sup, out, "gesture", ImuBatch.TOPIC, batch, "flooder")
    stream = ScriptedStream(["wave", "punch", "circle"], seed=7, pause_s=(1.0, 1.2), t0=1000.0)
    player = StreamPlayer(sup.frontend, zmq.Context.instance(), stream, speed=10.0, batch_s=0.1, until_s=9.0)
    try:
        player.start()
        out.wait_for(lambda m: m.topic == GestureRecognized.TOPIC, what="a gesture recognised after the flood")
    finally:
        player.stop()


def test_a_transcript_flood_at_the_intent_actor(supervisor_factory, collector_factory):
    sup = supervisor_factory("[actors.intent]\n", LIVENESS)
    out = collector_factory(sup, ["sys.heartbeat", "sys.actor", "intent."])
    words = Transcript(text="flood flood flood", segments=[], language="en", segment_id=1, latency_ms=10.0).to_body()
    flood_and_account(sup, out, "intent", Transcript.TOPIC, words, "speech")
    pub = Publisher(zmq.Context.instance(), sup.frontend, "speech")
    try:
        assert pub.wait_for_subscriber(Transcript.TOPIC, WAIT_S)
        pub.publish(Transcript.TOPIC, Transcript(text="the marker after the flood", segments=[], language="en",
                                                 segment_id=2, latency_ms=10.0).to_body())
        out.wait_for(lambda m: m.topic == "intent.unknown" and m.body["text"] == "the marker after the flood",
                     what="the transcript sent after the flood handled")
    finally:
        pub.close()


def test_a_ctl_flood_at_a_probe(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@f"]\n', LIVENESS)
    out = collector_factory(sup, ["sys.heartbeat", "sys.actor", "ctl.reply"])
    flood_and_account(sup, out, "probe@f", "ctl.probe@f", {"cmd": "ping"}, "flooder")
    pub = Publisher(zmq.Context.instance(), sup.frontend, "after")
    try:
        assert pub.wait_for_subscriber("ctl.probe@f", WAIT_S)
        pub.publish("ctl.probe@f", {"cmd": "ping"}, corr="after-the-flood")
        reply = out.wait_for(lambda m: m.topic == "ctl.reply" and m.header.corr == "after-the-flood",
                             what="the ping after the flood answered")
        assert reply.body["ok"] and reply.body["result"] == "pong"
    finally:
        pub.close()
