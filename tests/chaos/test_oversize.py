"""Issue 14 item 3, for the other consumed topics: an audio.chunk or sensor.imu batch too large to be
real is refused by its body class (BodyError: the consuming actor counts it as dropped and goes on)."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from bus.bodies.audio import MAX_CHUNK_S, AudioChunk
from bus.bodies.imu import MAX_BATCH_READINGS, ImuBatch
from bus.messages import BodyError
from bus.pubsub import Publisher
from tests.actors.audio.conftest import demo  # noqa: F401 - the fixture
from tests.support import WAIT_S


def test_an_audio_chunk_longer_than_the_bound_is_refused_and_one_at_it_accepted():
    rate = 48_000
    ok = AudioChunk(pcm=np.zeros((int(MAX_CHUNK_S * rate), 2), np.int16), rate=rate).to_body()
    assert AudioChunk.from_body(ok).duration_s == MAX_CHUNK_S
    too_long = AudioChunk(pcm=np.zeros(int(MAX_CHUNK_S * rate) + 1, np.int16), rate=rate).to_body()
    with pytest.raises(BodyError, match="longer than 10 s"):
        AudioChunk.from_body(too_long)


def test_an_imu_batch_over_the_bound_is_refused_before_its_arrays_are_checked():
    n = MAX_BATCH_READINGS
    ok = ImuBatch(t=np.arange(n, dtype=np.float64), acc=np.zeros((n, 3), np.float32),
                  gyro=np.zeros((n, 3), np.float32)).to_body()
    assert len(ImuBatch.from_body(ok)) == n
    big = dict(ok, t=np.arange(n + 1, dtype=np.float64))
    with pytest.raises(BodyError, match="more than 100000"):
        ImuBatch.from_body(big)


@pytest.mark.slow
def test_the_vad_drops_a_huge_chunk_and_keeps_segmenting(supervisor_factory, collector_factory, demo):
    sup = supervisor_factory("[actors.vad]\nheartbeat_s = 0.5\n")
    bus = collector_factory(sup, ["audio.speech", "sys.heartbeat"])
    sup.wait_running("vad")
    pub = Publisher(zmq.Context.instance(), sup.frontend, "remote")
    try:
        assert pub.wait_for_subscriber(AudioChunk.TOPIC, WAIT_S)
        pub.publish(AudioChunk.TOPIC, AudioChunk(pcm=np.resize(demo["pcm"], 25_000_000), rate=16_000,
                                                 stream="flood").to_body())
        pcm = demo["pcm"][: 4 * 16_000]                   # the first sentence
        for i in range(0, pcm.size, 1600):
            pub.publish(AudioChunk.TOPIC, AudioChunk(pcm=pcm[i:i + 1600], rate=16_000, t_start=i / 16_000,
                                                     stream="real").to_body())
        pub.publish(AudioChunk.TOPIC, AudioChunk(pcm=np.zeros(0, np.int16), rate=16_000, stream="real",
                                                 t_start=pcm.size / 16_000, end=True).to_body())
        seg = bus.wait_for(lambda m: m.topic == "audio.speech").body
        assert seg["stream"] == "remote/real"
        beat = bus.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "vad"
                            and m.body["counters"]["dropped"] >= 1).body
        assert beat["counters"]["dropped"] == 1 and beat["counters"]["errors"] == 0
    finally:
        pub.close()
    assert sup.actor("vad")["restarts"] == 0
