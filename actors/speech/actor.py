"""The speech actor: ``audio.speech`` segments in, ``speech.transcript`` out (faster-whisper).

Partial transcripts: ``audio.partial`` (the vad's segment so far) in,
``speech.partial`` out, with a stable prefix (``actors/speech/partials.py``).
One slot holds the newest window; the worker takes it only when no final
segment waits, so a final is never queued behind a partial (at most behind
the one greedy partial decode already running). A partial that finishes after
its segment's final arrived is not published.

Whisper runs on a worker thread, so the actor's loop keeps heartbeating (and
answering ``ctl``) during a long transcription; CTranslate2 releases the GIL
while it computes. Finished transcripts come back through a deque that a
20 ms timer drains onto the bus (sockets stay on the loop's thread).

Queue policy: at most ``queue_size`` segments wait. When a new one arrives
at a full queue the *oldest* waiting segment is dropped — a live transcript
should follow the present, and the newest speech is what a user waits for —
counted in ``dropped`` and ``extra.dropped_oldest``; ``extra.backlog`` is the
queue length in each heartbeat.

Oversize: a segment longer than ``max_segment_s`` is refused on arrival,
before it is copied or queued (``dropped`` and ``extra.oversize``, logged
once per burst): one 26-minute segment must not hold Whisper for minutes
while real speech waits.

Stopping: the worker checks the stop flag between Whisper's 30 s windows
(``TranscriptionStopped``), so teardown's join normally ends within one
window. Should a native call outlast ``stop_wait_s`` anyway, the process
ends with ``os._exit`` after its last log line and heartbeat: interpreter
finalisation would otherwise free the model (and CTranslate2's threads)
under the running native call, which ended in SIGSEGV/SIGABRT instead of a
clean exit 0.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from actors.speech.partials import PartialState
from actors.speech.transcriber import Transcriber, TranscriberParams, Transcription, TranscriptionStopped
from actors.base import Actor, handles
from actors.speech.settings import SpeechSettings
from bus.bodies.audio import SPEECH_RATE_HZ, PartialTranscript, SpeechSegment, SpeechSoFar, Transcript
from bus.envelope import Message, now_ns

DRAIN_S = 0.02
"""Period of the timer that publishes finished transcripts, seconds."""


@dataclass
class _Job:
    segment: SpeechSegment
    speech_ts_ns: int
    """Header ts of the audio.speech message (when the vad closed the segment)."""
    queued_at: float


@dataclass
class _PartialJob:
    so_far: SpeechSoFar
    ts_ns: int
    """Header ts of the audio.partial message."""


class SpeechActor(Actor[SpeechSettings]):
    kind = "speech"

    def setup(self) -> None:
        self.transcriber = Transcriber(TranscriberParams.from_settings(self.settings))
        self.log.info("model_loaded", path=self.transcriber.model_path, device=self.transcriber.device,
                      compute_type=self.transcriber.compute_type)
        self.queue: deque[_Job] = deque()
        self.done: deque[tuple[_Job, Transcription | None, float]] = deque()
        self.wake = threading.Condition()
        self.dropped_oldest = 0
        self.oversize = 0
        self.max_samples = int(self.settings.max_segment_s * SPEECH_RATE_HZ)
        self.transcribed = 0
        self.filtered = 0
        self.suspect_segments = 0
        self.audio_s = 0.0
        self.busy_s = 0.0
        self.busy = False
        # Partial transcripts: one slot (the newest audio.partial replaces an older one waiting), worked on only
        # when no final segment waits, so that finals are never queued behind partials.
        self.partial_job: _PartialJob | None = None
        self.partial_done: deque[tuple[_PartialJob, Transcription | None]] = deque()
        self.partial_states: dict[tuple[str, int], PartialState] = {}
        self.finished_segments: deque[tuple[str, int]] = deque(maxlen=256)
        """Segments whose final arrived: their late partials are not published."""
        self.partial_counts = {"partials": 0, "partials_replaced": 0, "partials_dropped": 0, "partials_late": 0}
        if self.settings.partials:
            self.subscribe(SpeechSoFar.TOPIC, self.on_audio_partial)
        self.worker = threading.Thread(target=self._work, name="whisper", daemon=True)
        self.worker.start()
        self.every(DRAIN_S, self.publish_finished)

    @handles("audio.speech")
    def on_audio_speech(self, msg: Message) -> None:
        segment = SpeechSegment.from_body(msg.body)
        if segment.pcm.size > self.max_samples:
            self.oversize += 1
            self.counters.dropped += 1
            self._burst.error("speech_oversize", "segment_refused", topic=msg.topic, src=msg.header.src,
                              seq=msg.header.seq, segment_id=segment.segment_id, stream=segment.stream,
                              duration_s=round(segment.pcm.size / SPEECH_RATE_HZ, 1),
                              max_segment_s=self.settings.max_segment_s, refused_total=self.oversize)
            return
        segment.pcm = segment.pcm.copy()  # the received array is a view of the zmq frame
        with self.wake:
            if len(self.queue) >= self.settings.queue_size:
                old = self.queue.popleft()
                self.dropped_oldest += 1
                self.counters.dropped += 1
                self._burst.error("speech_queue_full", "dropped_oldest_segment", segment_id=old.segment.segment_id,
                                    stream=old.segment.stream, queue_size=self.settings.queue_size,
                                    dropped_total=self.dropped_oldest)
            self.queue.append(_Job(segment, msg.header.ts, time.monotonic()))
            self.finished_segments.append((segment.stream, segment.segment_id))
            self.partial_states.pop((segment.stream, segment.segment_id), None)
            if self.partial_job is not None and (self.partial_job.so_far.stream, self.partial_job.so_far.segment_id) \
                    == (segment.stream, segment.segment_id):
                self.partial_job = None
            self.wake.notify()

    def on_audio_partial(self, msg: Message) -> None:
        so_far = SpeechSoFar.from_body(msg.body)
        if so_far.pcm.size < self.settings.partial_min_audio_s * SPEECH_RATE_HZ:
            return
        so_far.pcm = so_far.pcm.copy()  # the received array is a view of the zmq frame
        with self.wake:
            if self.partial_job is not None:
                self.partial_counts["partials_replaced"] += 1
            self.partial_job = _PartialJob(so_far, msg.header.ts)
            self.wake.notify()

    def _work(self) -> None:
        while True:
            with self.wake:
                while not self.queue and self.partial_job is None and not self.stopping:
                    self.wake.wait(0.5)
                if self.stopping:
                    return
                job = self.queue.popleft() if self.queue else None
                partial = None
                if job is None:  # finals always go first: a partial only when none waits
                    partial, self.partial_job = self.partial_job, None
                self.busy = True
            if job is None:
                if partial is not None:
                    self._work_partial(partial)
                continue
            started = time.monotonic()
            try:
                result: Transcription | None = self.transcriber.transcribe(job.segment.pcm, job.segment.pcm_t_start,
                                                                           should_stop=lambda: self.stopping)
            except TranscriptionStopped as exc:
                self.busy = False
                self.log.info("transcription_abandoned", segment_id=job.segment.segment_id,
                              stream=job.segment.stream, reason=str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - one bad segment must not end the worker
                result = None
                self.counters.errors += 1
                self._burst.error("whisper", "transcribe_failed", segment_id=job.segment.segment_id,
                                  stream=job.segment.stream, error=repr(exc))
            self.busy = False
            self.done.append((job, result, (started - job.queued_at) * 1000.0))

    def _work_partial(self, job: _PartialJob) -> None:
        try:
            result: Transcription | None = self.transcriber.transcribe(
                job.so_far.pcm, job.so_far.pcm_t_start, should_stop=lambda: self.stopping,
                beam_size=self.settings.partial_beam_size)
        except TranscriptionStopped:
            result = None  # stopping: the partial of a segment still being spoken is not worth waiting for
        except Exception as exc:  # noqa: BLE001 - one bad window must not end the worker
            result = None
            self.counters.errors += 1
            self._burst.error("whisper_partial", "transcribe_failed", segment_id=job.so_far.segment_id,
                              stream=job.so_far.stream, error=repr(exc))
        self.busy = False
        self.partial_done.append((job, result))

    def publish_partials(self) -> None:
        while self.partial_done:
            job, result = self.partial_done.popleft()
            key = (job.so_far.stream, job.so_far.segment_id)
            if result is None:
                continue
            if key in self.finished_segments:
                self.partial_counts["partials_late"] += 1  # the final is on its way: a partial now would confuse
                continue
            state = self.partial_states.get(key)
            if state is None:
                if len(self.partial_states) >= 64:
                    self.partial_states.pop(next(iter(self.partial_states)))
                state = self.partial_states[key] = PartialState()
            update = state.update(result.text)
            if update is None:
                self.partial_counts["partials_dropped"] += 1
                continue
            text, stable = update
            self.partial_counts["partials"] += 1
            self.publish(PartialTranscript(text=text, stable=stable, segment_id=job.so_far.segment_id,
                                           latency_ms=round((now_ns() - job.ts_ns) / 1e6, 2),
                                           audio_s=round(job.so_far.pcm.size / SPEECH_RATE_HZ, 3),
                                           stream=job.so_far.stream))

    def publish_finished(self) -> None:
        self.publish_partials()
        while self.done:
            job, result, queue_ms = self.done.popleft()
            if result is None:
                continue
            seg = job.segment
            self.transcribed += 1
            self.suspect_segments += result.suspect
            self.audio_s += result.audio_s
            self.busy_s += result.transcribe_ms / 1000.0
            if not result.text and not result.segments:
                self.filtered += 1  # only hallucinations (or nothing) heard: not published
                continue
            latency_ms = (now_ns() - job.speech_ts_ns) / 1e6
            self.publish(Transcript(text=result.text, segments=result.segments, language=result.language,
                                    segment_id=seg.segment_id, latency_ms=round(latency_ms, 2), t_start=seg.t_start,
                                    t_end=seg.t_end, stream=seg.stream, transcribe_ms=result.transcribe_ms,
                                    queue_ms=round(queue_ms, 2), extra={"suspect": result.suspect}))

    def heartbeat_extra(self) -> dict[str, Any]:
        return {"backlog": len(self.queue), "queue_size": self.settings.queue_size,
                "dropped_oldest": self.dropped_oldest, "oversize": self.oversize, "busy": self.busy, "transcribed": self.transcribed,
                "filtered": self.filtered, "suspect_segments": self.suspect_segments,
                "audio_s": round(self.audio_s, 3),
                "rtf": round(self.busy_s / self.audio_s, 4) if self.audio_s else None, **self.partial_counts}

    def teardown(self) -> None:
        with self.wake:
            self.wake.notify_all()
        # The worker stops at the next window boundary; one native call cannot be interrupted.
        self.worker.join(timeout=self.settings.stop_wait_s)
        if self.worker.is_alive():
            self.log.warning("whisper_still_running", waited_s=self.settings.stop_wait_s,
                             action="the process exits without finalising the interpreter")
        self.publish_finished()

    def run(self) -> int:
        code = super().run()
        worker = getattr(self, "worker", None)
        if worker is not None and worker.is_alive():
            # Finalisation would free the model under the native call still running on the worker.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code

