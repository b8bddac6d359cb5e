"""The audio source: files, raw PCM on stdin or a microphone onto ``audio.chunk`` (16 kHz mono int16).

A reader thread decodes (``actors.lib.audio.decode``: PyAV, streaming) into a
bounded queue of ``queue_chunks`` chunks, so memory does not depend on the
file's length; the actor's loop takes chunks from it at the playback pace
(``speed`` x real time, or as fast as possible) and publishes them; stdin
and the microphone are published as they arrive. Each pass
through each file is one stream (``stream`` = ``FILE#PASS``), its time
starting at 0, its last chunk marked ``end``.

A bad file (not audio, empty, truncated, NaN/inf samples) is one error in the
log and in ``extra.file_errors``; playback goes on with the next file. A loop
whose every file fails stops looping instead of spinning. A missing
microphone (no PortAudio, no device, no ``sounddevice`` module) ends the actor
with a message saying what to install.

Audio from another machine needs no source here: any process that publishes
``audio.chunk`` on the bus (``bus.pubsub.Publisher``) feeds the vad the same way.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from actors.lib.audio import DEMO_RECORDING
from actors.lib.audio.decode import RATE_HZ, AudioInputError, StreamResampler, audio_files, decode_file, decode_raw
from actors.base import Actor, ActorExit
from actors.audio_source.settings import AudioSourceSettings
from bus.bodies.audio import AudioChunk

PUMP_S = 0.01
"""Period of the playback timer, seconds."""
FAST_BUDGET_S = 0.05
"""As-fast-as-possible playback publishes for at most this long per tick, so heartbeats stay on time."""


@dataclass
class _Item:
    kind: str
    """chunk, end, error, done."""
    stream: str = ""
    pcm: np.ndarray | None = None
    t_start: float = 0.0
    error: str = ""


class AudioSourceActor(Actor[AudioSourceSettings]):
    kind = "audio_source"

    def setup(self) -> None:
        s = self.settings
        self.chunk_samples = RATE_HZ * s.chunk_ms // 1000
        self.items: queue.Queue[_Item] = queue.Queue(maxsize=s.queue_chunks)
        self.reader_stop = threading.Event()
        self.played_s = 0.0
        self.streams_done = 0
        self.file_errors = 0
        self.mic_overflows = 0
        self.finished = False
        self.clock_start: float | None = None
        self.held: _Item | None = None
        self.mic = None
        if s.source == "mic":
            self.open_microphone()
        else:
            target = self.reader_files if s.source == "file" else self.reader_stdin
            if s.source == "file":
                path = Path(s.path) if s.path else DEMO_RECORDING
                if not path.exists():
                    raise ActorExit(1, f"audio_source: settings.path {str(path)!r} does not exist")
                self.files = audio_files(path)
                if not self.files:
                    raise ActorExit(1, f"audio_source: no audio files ({', '.join(('.wav', '.flac', '.mp3', '.ogg'))}"
                                       f"...) under {str(path)!r}")
            threading.Thread(target=target, name="audio-reader", daemon=True).start()
        self.every(PUMP_S, self.pump)

    # -- readers (threads): decode into the bounded queue ---------------------

    def put(self, item: _Item) -> bool:
        """Blocking put that gives up when the actor stops; False then."""
        while not self.reader_stop.is_set():
            try:
                self.items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def play(self, stream: str, chunks: Iterator[np.ndarray]) -> int:
        """Queue one stream's chunks and its end marker; returns samples queued."""
        samples = 0
        for pcm in chunks:
            if not self.put(_Item("chunk", stream, pcm, samples / RATE_HZ)):
                return samples
            samples += pcm.size
        self.put(_Item("end", stream, np.zeros(0, np.int16), samples / RATE_HZ))
        return samples

    def reader_files(self) -> None:
        for pass_no in range(sys.maxsize if self.settings.loop else 1):
            played_any = False
            for path in self.files:
                stream = f"{path.name}#{pass_no}"
                try:
                    played_any |= self.play(stream, decode_file(path, self.chunk_samples)) > 0
                except AudioInputError as exc:
                    self.put(_Item("end", stream))
                    self.put(_Item("error", stream, error=str(exc)))
                except Exception as exc:  # noqa: BLE001 - an unexpected decoder failure is one file's error too
                    self.put(_Item("end", stream))
                    self.put(_Item("error", stream, error=f"{path}: {exc!r}"))
                if self.reader_stop.is_set():
                    return
            if not played_any:
                self.put(_Item("error", error="no file played any audio: not looping"))
                break
        self.put(_Item("done"))

    def reader_stdin(self) -> None:
        s = self.settings
        stream = "stdin"
        try:
            self.play(stream, decode_raw(sys.stdin.buffer, s.stdin_rate_hz, s.stdin_channels, self.chunk_samples))
        except AudioInputError as exc:
            self.put(_Item("error", stream, error=str(exc)))
        self.put(_Item("done"))

    def open_microphone(self) -> None:
        s = self.settings
        try:
            import sounddevice  # noqa: PLC0415 - optional extra 'mic'
        except (ImportError, OSError) as exc:
            raise ActorExit(1, "audio_source: the microphone (source = 'mic') needs the 'mic' extra (pip install 'sensorium[mic]') "
                               f"and the PortAudio library (apt-get install libportaudio2): {exc}") from None
        device: Any = int(s.mic_device) if s.mic_device.isdigit() else (s.mic_device or None)
        resampler = StreamResampler(s.mic_rate_hz, 1)
        stream = "mic"
        self.mic_samples = 0

        def callback(indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
            pcm = resampler.convert(indata[:, 0].copy())
            item = _Item("chunk", stream, pcm, self.mic_samples / RATE_HZ)
            self.mic_samples += pcm.size
            try:
                self.items.put_nowait(item)
            except queue.Full:  # the loop fell behind: drop the oldest, keep the present
                self.mic_overflows += 1
                try:
                    self.items.get_nowait()
                except queue.Empty:
                    pass
                self.items.put_nowait(item)

        try:
            self.mic = sounddevice.InputStream(samplerate=s.mic_rate_hz, channels=1, dtype="int16", device=device,
                                               blocksize=s.mic_rate_hz * s.chunk_ms // 1000, callback=callback)
            self.mic.start()
        except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError: no such device
            raise ActorExit(1, f"audio_source: cannot open microphone {s.mic_device or '(default)'!r}: {exc}") from None
        # A live source is paced by the device itself.
        self.clock_start = None

    # -- the loop: publish at the playback pace -------------------------------

    def pump(self) -> None:
        s = self.settings
        if s.wait_for_subscriber and not self.pub.has_subscriber(AudioChunk.TOPIC):
            self.clock_start = None  # paused: resume at the pace, not with a burst of the time missed
            return
        paced = s.speed > 0 and s.source == "file"
        deadline = time.monotonic() + FAST_BUDGET_S
        while time.monotonic() < deadline:
            item = self.held or self.next_item()
            self.held = None
            if item is None:
                return
            if item.kind == "chunk":
                if paced:
                    if self.clock_start is None:
                        self.clock_start = time.monotonic() - self.played_s / s.speed
                    due = self.clock_start + self.played_s / s.speed
                    if due > time.monotonic():
                        self.held = item
                        return
                self.publish(AudioChunk(pcm=item.pcm, rate=RATE_HZ, t_start=round(item.t_start, 4),
                                        stream=item.stream))
                self.played_s += item.pcm.size / RATE_HZ
            elif item.kind == "end":
                self.publish(AudioChunk(pcm=np.zeros(0, np.int16), rate=RATE_HZ, t_start=round(item.t_start, 4),
                                        stream=item.stream, end=True))
                self.streams_done += 1
            elif item.kind == "error":
                self.file_errors += 1
                self.counters.errors += 1
                self.log.error("audio_input_error", stream=item.stream, error=item.error)
            elif item.kind == "done":
                self.finished = True
                self.log.info("playback_finished", played_s=round(self.played_s, 3), streams=self.streams_done,
                              file_errors=self.file_errors)

    def next_item(self) -> _Item | None:
        try:
            return self.items.get_nowait()
        except queue.Empty:
            return None

    def heartbeat_extra(self) -> dict[str, Any]:
        return {"source": self.settings.source, "played_s": round(self.played_s, 3), "streams": self.streams_done,
                "file_errors": self.file_errors, "queued": self.items.qsize(), "finished": self.finished,
                "mic_overflows": self.mic_overflows}

    def teardown(self) -> None:
        self.reader_stop.set()
        if self.mic is not None:
            self.mic.stop()
            self.mic.close()
