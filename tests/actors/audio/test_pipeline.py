"""The audio actors under a real supervisor: source -> vad -> speech over the bus, and remote audio.chunk."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zmq

from actors.lib.audio.wer import word_error_rate
from bus.bodies.audio import AudioChunk, SpeechSegment
from bus.pubsub import Publisher
from tests.actors.audio.conftest import write_wav
from tests.support import WAIT_S

pytestmark = pytest.mark.slow

SPEECH = """
[actors.speech]
start_timeout_s = 120.0
liveness_timeout_s = 10.0
settings = {{ threads = 2, beam_size = 5, queue_size = {queue_size} }}
"""
VAD = """
[actors.vad]
after = ["speech"]
"""


def heartbeat_of(collector, actor: str, predicate=lambda extra: True, what: str = "heartbeat"):
    return collector.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == actor
                              and predicate(m.body.get("extra", {})), what=f"{actor} {what}").body


def test_the_demo_sentences_through_the_bus_with_bad_files_beside_them(supervisor_factory, collector_factory,
                                                                        tmp_path, demo):
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / "a_empty.wav").write_bytes(b"")
    (folder / "b_not_audio.ogg").write_text("not audio")
    pcm = (np.sin(np.arange(16_000) / 9) * 0.3).astype(np.float32)
    pcm[100] = np.nan
    write_wav(folder / "c_nan.wav", np.zeros(10, np.int16))  # replaced below by a float file with NaN
    import av
    with av.open(str(folder / "c_nan.wav"), "w") as c:
        s = c.add_stream("pcm_f32le", rate=16_000, layout="mono")
        f = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="mono")
        f.sample_rate = 16_000
        for p in list(s.encode(f)) + list(s.encode(None)):
            c.mux(p)
    shutil.copy(demo["path"], folder / "d_demo.wav")
    sup = supervisor_factory(SPEECH.format(queue_size=32) + VAD + f"""
[actors."audio_source@t"]
after = ["vad"]
restart = "temporary"
settings = {{ path = "{folder}", speed = 0 }}
""")
    bus = collector_factory(sup, ["speech.transcript", "audio.vad", "sys.heartbeat", "sys.actor"])
    sup.wait_running("speech", "vad", "audio_source@t", timeout_s=WAIT_S * 2)
    n = len(demo["sentences"])
    bus.wait_for(lambda m: m.topic == "speech.transcript" and m.body["segment_id"] == n - 1,
                 timeout_s=WAIT_S * 2, what="the last sentence's transcript")
    transcripts = [m.body for m in bus.messages if m.topic == "speech.transcript"]
    assert [t["segment_id"] for t in transcripts] == list(range(n))
    hypothesis = " ".join(t["text"] for t in transcripts)
    wer = word_error_rate(" ".join(demo["sentences"]), hypothesis)
    print(f"WER through the bus: {wer:.3f}: {hypothesis}")
    assert wer <= 0.20, hypothesis
    for t, (start, end) in zip(transcripts, demo["spans_s"]):
        assert abs(t["t_start"] - start) <= 0.15 and abs(t["t_end"] - end) <= 0.15
        assert t["stream"].endswith("d_demo.wav#0") and t["latency_ms"] > 0 and t["transcribe_ms"] > 0
    starts = [m.body["t"] for m in bus.messages if m.topic == "audio.vad" and m.body["state"] == "speech_start"]
    assert len(starts) == n
    # Three bad files: one error each, counted; the source and the rest of the pipeline kept going.
    source = heartbeat_of(bus, "audio_source@t", lambda e: e.get("finished"), "finished")
    assert source["extra"]["file_errors"] == 3 and source["extra"]["streams"] == 4
    assert source["state"] == "ready"
    speech = heartbeat_of(bus, "speech", lambda e: e.get("transcribed", 0) >= n)
    assert speech["extra"]["dropped_oldest"] == 0 and speech["extra"]["backlog"] == 0
    assert not [e for e in bus.events() if e["event"] in ("exited", "restarting", "failed")]
    log = (sup.folder / "logs" / "audio_source@t.log").read_text()
    assert log.count("audio_input_error") == 3 and "NaN/inf samples" in log and "empty file" in log


def test_remote_audio_chunks_at_another_rate_and_a_full_queue(supervisor_factory, collector_factory, demo):
    """A remote sender publishes 44.1 kHz stereo audio.chunk; segments flood a speech queue of 1."""
    sup = supervisor_factory(SPEECH.format(queue_size=1) + VAD)
    bus = collector_factory(sup, ["speech.transcript", "audio.speech", "sys.heartbeat"])
    sup.wait_running("speech", "vad", timeout_s=WAIT_S * 2)
    import av

    pcm = demo["pcm"][: int(7.6 * 16_000)]  # two sentences
    up = av.AudioResampler(format="s16", layout="stereo", rate=44_100)
    frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate = 16_000
    stereo = np.concatenate([f.to_ndarray().reshape(-1, 2) for f in up.resample(frame) + up.resample(None)])
    pub = Publisher(zmq.Context.instance(), sup.frontend, "remote@mic1")
    try:
        assert pub.wait_for_subscriber(AudioChunk.TOPIC, WAIT_S)
        step = 4410
        # The queue holds one segment: the first sentence is transcribed before the second comes,
        # or (on a loaded machine) drop-oldest may rightly drop it. Between them: 4.2 s.
        second = int(4.2 * 44_100) // step * step
        for i in range(0, stereo.shape[0], step):
            if i == second:
                bus.wait_for(lambda m: m.topic == "speech.transcript", what="the first sentence's transcript")
            body = AudioChunk(pcm=np.ascontiguousarray(stereo[i:i + step]), rate=44_100, t_start=i / 44_100,
                              stream="room")
            pub.publish(AudioChunk.TOPIC, body.to_body())
        pub.publish(AudioChunk.TOPIC, AudioChunk(pcm=np.zeros((0, 2), np.int16), rate=44_100, stream="room",
                                                 t_start=stereo.shape[0] / 44_100, end=True).to_body())
        bus.wait_for(lambda m: m.topic == "speech.transcript" and m.body["segment_id"] == 1,
                     what="the second sentence's transcript")
        texts = [m.body["text"] for m in bus.messages if m.topic == "speech.transcript"]
        assert word_error_rate(" ".join(demo["sentences"][:2]), " ".join(texts)) <= 0.25, texts
        speech = [m.body for m in bus.messages if m.topic == "audio.speech"]
        assert [s["stream"] for s in speech] == ["remote@mic1/room"] * 2

        # Flood: 6 segments at once into a queue of 1. The oldest waiting ones are dropped and
        # counted; the worker thread transcribes while the actor keeps heartbeating.
        seg = SpeechSegment.from_body(speech[0])
        first_flood_id = 100
        for k in range(6):
            flood = SpeechSegment(pcm=seg.pcm, t_start=seg.t_start, t_end=seg.t_end, segment_id=first_flood_id + k,
                                  stream="flood", pcm_t_start=seg.pcm_t_start)
            pub.publish(SpeechSegment.TOPIC, flood.to_body())
        beat = heartbeat_of(bus, "speech", lambda e: e.get("transcribed", 0) + e.get("dropped_oldest", 0) >= 2 + 6,
                            "all flood segments accounted for")
        extra = beat["extra"]
        assert extra["dropped_oldest"] >= 3 and extra["backlog"] == 0 and beat["counters"]["dropped"] >= 3
        # The newest segment always survives a drop-oldest queue.
        bus.wait_for(lambda m: m.topic == "speech.transcript" and m.body["segment_id"] == first_flood_id + 5,
                     what="the newest flood segment transcribed")
        beats = [m for m in bus.messages if m.topic == "sys.heartbeat" and m.header.src == "speech"]
        assert beats and max(b.body["extra"]["backlog"] for b in beats) <= 1
    finally:
        pub.close()
    assert sup.actor("speech")["restarts"] == 0
