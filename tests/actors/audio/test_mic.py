"""A live microphone, for real: PortAudio records from a PulseAudio null sink's monitor while the test
plays the demo sentences into that sink, through audio_source (source = "mic") -> vad -> speech.

No sound card is needed, but PulseAudio (``pulseaudio``, ``pacat``), the ALSA pulse plugin
(``libasound2-plugins``) and PortAudio (``libportaudio2``) are; where one is missing the test is
skipped and says which.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from actors.lib.audio.wer import word_error_rate
from tests.support import ROOT, WAIT_S, clean_env, wait_until

pytestmark = pytest.mark.slow

SENTENCES = slice(3, 8)
"""Demo sentences played into the microphone (Whisper tiny.en gets the first three of them wrong even from
the file: "jump", "my lights", "night")."""

SERVER_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=room rate=16000 channels=1 format=s16le
set-default-sink room
set-default-source room.monitor
"""
# ALSA's default device goes to PulseAudio, whose default source is the monitor of the sink we play into.
ASOUNDRC = "pcm.!default { type pulse }\nctl.!default { type pulse }\n"


def _input_devices(env: dict[str, str]) -> int:
    """Input devices PortAudio sees under ``env`` (in a child: PortAudio reads ALSA's config once per process)."""
    done = subprocess.run([sys.executable, "-c", "import sounddevice as sd; "
                           "print(sum(d['max_input_channels'] > 0 for d in sd.query_devices()))"],
                          cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=WAIT_S)
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


@pytest.fixture
def sound_server() -> Iterator[dict[str, str]]:
    """A private PulseAudio server with one null sink ``room``; yields the environment that reaches it."""
    for tool in ("pulseaudio", "pacat", "pactl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils)")
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as exc:
        pytest.skip(f"sounddevice/PortAudio unavailable (pip install 'sensorium[mic]'; apt-get install "
                    f"libportaudio2): {exc}")
    folder = Path(tempfile.mkdtemp(prefix="pa", dir="/tmp"))  # short: a unix socket path
    (folder / "home").mkdir()
    (folder / "home" / ".asoundrc").write_text(ASOUNDRC)
    socket = folder / "native"
    (folder / "server.pa").write_text(SERVER_CONFIG.format(socket=socket))
    env = {"HOME": str(folder / "home"), "XDG_RUNTIME_DIR": str(folder), "PULSE_SERVER": f"unix:{socket}"}
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(["pulseaudio", "-n", "-F", str(folder / "server.pa"), "--daemonize=no",
                               "--exit-idle-time=-1", "--system=false"],
                              env=clean_env(**env), stdout=log, stderr=subprocess.STDOUT)
    try:
        def answers() -> bool:
            try:
                return subprocess.run(["pactl", "info"], env=clean_env(**env), capture_output=True,
                                      timeout=5).returncode == 0
            except subprocess.TimeoutExpired:
                return False

        wait_until(lambda: server.poll() is not None or answers(), WAIT_S, "the PulseAudio server")
        if server.poll() is not None:
            pytest.skip(f"PulseAudio did not start: {(folder / 'server.log').read_text()[-500:]}")
        if _input_devices(env) == 0:
            pytest.skip("PortAudio sees no input through PulseAudio (apt-get install libasound2-plugins)")
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_sentences_spoken_into_the_microphone_come_out_as_transcripts(sound_server, supervisor_factory,
                                                                      collector_factory, demo):
    # sound_server first: set up first, torn down last, after the actors capturing from it are gone.
    spans = demo["spans_s"][SENTENCES]
    sentences = demo["sentences"][SENTENCES]
    pcm = demo["pcm"][int((spans[0][0] - 0.5) * 16_000): int((spans[-1][1] + 1.0) * 16_000)]
    sup = supervisor_factory(f"""
[actors.speech]
start_timeout_s = 120.0
settings = {{ threads = 2, beam_size = 5 }}

[actors.vad]
after = ["speech"]

[actors."audio_source@mic"]
after = ["vad"]
settings = {{ source = "mic", mic_rate_hz = 16000 }}
""", env=sound_server)
    bus = collector_factory(sup, ["speech.transcript", "audio.vad", "sys.heartbeat"])
    sup.wait_running("speech", "vad", "audio_source@mic", timeout_s=WAIT_S * 2)

    # Speak: play the sentences into the room the microphone listens to, in real time.
    played = subprocess.run(["pacat", "--playback", "--raw", "--rate=16000", "--channels=1", "--format=s16le",
                             "--device=room"], input=pcm.tobytes(), env=clean_env(**sound_server),
                            capture_output=True, timeout=WAIT_S * 2)
    assert played.returncode == 0, played.stderr

    bus.wait_for(lambda m: m.topic == "speech.transcript" and m.body["segment_id"] == len(sentences) - 1,
                 timeout_s=WAIT_S * 2, what="the last sentence's transcript")
    transcripts = [m.body for m in bus.messages if m.topic == "speech.transcript"]
    assert [t["stream"] for t in transcripts] == ["audio_source@mic/mic"] * len(sentences)
    hypothesis = " ".join(t["text"] for t in transcripts)
    wer = word_error_rate(" ".join(sentences), hypothesis)
    print(f"WER from the microphone: {wer:.3f}: {hypothesis}")
    assert wer <= 0.20, hypothesis
    # The stream's clock is the samples captured: sentences keep their spacing if nothing was lost.
    offset = transcripts[0]["t_start"] - spans[0][0]
    for t, (start, end) in zip(transcripts, spans):
        assert abs(t["t_start"] - offset - start) <= 0.15 and abs(t["t_end"] - offset - end) <= 0.15, (t, start, end)
    source = wait_until(lambda: next((m.body for m in reversed(bus.messages) if m.topic == "sys.heartbeat"
                                      and m.header.src == "audio_source@mic"), None), what="the source's heartbeat")
    assert source["extra"]["mic_overflows"] == 0 and source["state"] == "ready"
