"""The audio_events actor under a real supervisor: audio.chunk from a source actor in, audio.event out."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zmq

from actors.audio_events import synth
from bus.bodies.audio import AudioChunk, AudioEvent
from bus.pubsub import Publisher
from tests.actors.audio.conftest import write_wav
from tests.support import ROOT, WAIT_S, clean_env

pytestmark = pytest.mark.slow

EVENTS = """
[actors.audio_events]
start_timeout_s = 120.0
liveness_timeout_s = 20.0
settings = { intra_op_threads = 1, inter_op_threads = 1 }
"""


def scene(seed: int) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """2 s of noise, 3 s of alarm, 2 s of noise, 3 s of clapping, 2 s of noise (int16, with the true spans)."""
    rng = np.random.default_rng(seed)
    parts, truth, t = [], [], 0.0
    for label, seconds in (("noise", 2), ("alarm", 3), ("noise", 2), ("clapping", 3), ("noise", 2)):
        n = seconds * 16_000
        parts.append(synth.render(rng, label, n))
        if label != "noise":
            truth.append((label, t, t + seconds))
        t += seconds
    return np.concatenate(parts), truth


def test_events_of_a_played_file_arrive_on_the_bus_and_bad_files_are_skipped(supervisor_factory, collector_factory,
                                                                             tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    pcm, truth = scene(seed=21)
    (folder / "a_empty.wav").write_bytes(b"")
    write_wav(folder / "b_scene.wav", pcm)
    sup = supervisor_factory(EVENTS + f"""
[actors."audio_source@t"]
after = ["audio_events"]
restart = "temporary"
settings = {{ path = "{folder}", speed = 0 }}
""")
    bus = collector_factory(sup, ["audio.event", "sys.heartbeat"])
    sup.wait_running("audio_events", "audio_source@t", timeout_s=WAIT_S * 2)
    bus.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "audio_events"
                 and m.body["extra"].get("patches", 0) >= 24 and m.body["extra"].get("streams") == 0,
                 timeout_s=WAIT_S * 2, what="the whole scene classified and its stream closed")
    events = [AudioEvent.from_body(m.body) for m in bus.messages if m.topic == "audio.event"]
    found = [(e.label, e.t_start, e.t_end) for e in events]
    scores = synth.score_events(truth, found)
    assert scores["all"].tp == 2 and scores["all"].fp == 0, found
    assert all(e.stream == "audio_source@t/b_scene.wav#0" and e.model.startswith("head:") for e in events)
    source = bus.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "audio_source@t"
                          and m.body["extra"].get("finished"), what="the source finished").body
    assert source["extra"]["file_errors"] == 1
    beat = [m.body for m in bus.messages if m.topic == "sys.heartbeat" and m.header.src == "audio_events"][-1]
    assert beat["extra"]["events"] == {"alarm": 1, "clapping": 1} and beat["counters"]["errors"] == 0


def test_remote_chunks_at_another_rate_and_a_malformed_chunk(supervisor_factory, collector_factory):
    sup = supervisor_factory(EVENTS)
    bus = collector_factory(sup, ["audio.event", "sys.heartbeat"])
    sup.wait_running("audio_events", timeout_s=WAIT_S * 2)
    rng = np.random.default_rng(5)
    alarm = synth.render(rng, "alarm", 4 * 16_000).astype(np.float32)
    # The same alarm at 8 kHz stereo, as another machine might send it.
    at8k = alarm.reshape(-1, 2).mean(axis=1).astype(np.int16)
    stereo = np.repeat(at8k[:, None], 2, axis=1)
    pub = Publisher(zmq.Context.instance(), sup.frontend, "remote-mic")
    try:
        assert pub.wait_for_subscriber(AudioChunk.TOPIC, WAIT_S)
        pub.publish(AudioChunk.TOPIC, {"pcm": np.zeros(10, np.float32), "rate": 8000})  # not int16: dropped
        for i in range(0, stereo.shape[0], 800):
            chunk = AudioChunk(pcm=np.ascontiguousarray(stereo[i:i + 800]), rate=8000, t_start=i / 8000,
                               stream="s1", end=i + 800 >= stereo.shape[0])
            pub.publish(AudioChunk.TOPIC, chunk.to_body())
        event = bus.wait_for(lambda m: m.topic == "audio.event", timeout_s=WAIT_S, what="the alarm").body
        assert event["label"] == "alarm" and event["stream"] == "remote-mic/s1"
        assert event["t_start"] < 0.6 and event["t_end"] > 3.4
        beat = bus.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "audio_events"
                            and m.body["counters"]["dropped"] >= 1, what="the bad chunk counted").body
        assert beat["counters"]["errors"] == 0 and beat["state"] == "ready"  # bad input is not our error
    finally:
        pub.close()


def test_a_corrupt_head_file_stops_the_actor_with_its_name(tmp_path):
    bad = tmp_path / "head.sealed"
    bad.write_bytes(b"not a sealed file")
    config = tmp_path / "events.toml"
    config.write_text(f'replace_default_actors = true\n[bus]\nruntime_dir = "{tmp_path}"\n[actors.audio_events]\n'
                      f'settings = {{ head_path = "{bad}" }}\n')
    done = subprocess.run([sys.executable, "-m", "actors", "audio_events", "--name", "audio_events", "-c",
                           str(config)], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          timeout=WAIT_S * 2)
    assert done.returncode == 1, done.stderr
    assert f"{bad}: not a sealed file" in done.stderr


def test_validate_checks_the_head_file_without_tensorflow(ipc_dir, tmp_path):
    from tests.support import write_config

    bad = tmp_path / "head.sealed"
    bad.write_bytes(b"SENSORIUM-SEALED 1 {}\nnot weights")
    config = write_config(ipc_dir, f'[actors.audio_events]\n[actors."audio_events@bad"]\n'
                                   f'settings = {{ head_path = "{bad}" }}\n')
    done = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "validate", "-c", str(config)], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=WAIT_S * 2)
    assert done.returncode == 1, done.stdout
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if " head " in line}
    assert lines["audio_events"].startswith("OK") and "checksum good" in lines["audio_events"]
    assert lines["audio_events@bad"].startswith("FAIL") and f"{bad}: bad header" in lines["audio_events@bad"]


def test_without_tensorflow_the_actor_exits_saying_which_extra_to_install(tmp_path):
    """The 'events' extra not installed: a package named tensorflow that cannot be imported stands in
    for its absence (first on the path), and the actor must say what to install, not a traceback."""
    fake = tmp_path / "site" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'tensorflow'\")\n")
    config = tmp_path / "events.toml"
    config.write_text(f'replace_default_actors = true\n[bus]\nruntime_dir = "{tmp_path}"\n[actors.audio_events]\n')
    env = clean_env()
    env["PYTHONPATH"] = f"{tmp_path / 'site'}:{env['PYTHONPATH']}"
    done = subprocess.run([sys.executable, "-m", "actors", "audio_events", "--name", "audio_events", "-c",
                           str(config)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "sensorium[events]" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
