"""The intent actor: transcripts and gestures in; intents, confirmations, actions and answers out.

The story of one command (all decisions in pure modules: ``grammar`` matches,
``confirm`` keeps the one intent waiting for an answer):

1. ``speech.transcript`` from an allowed sender (others are ignored and
   counted), not older than ``limits.speech_s``;
2. a yes/no while an intent waits answers it; otherwise the grammar matches
   the words: ``intent.recognized`` or ``intent.unknown``;
3. low risk goes straight on; medium and high ask (``intent.confirm_request``)
   and wait for a spoken yes/no, a confirm/cancel gesture, or their time-out;
4. confirmed: an answer intent answers (``assistant.answer``), any other one is
   published on ``action.<name>`` and runs its program, if one is configured,
   on a worker thread (no shell, a time limit; its result comes back through
   a deque the 50 ms timer drains, as in the speech actor).
"""

from __future__ import annotations

import itertools
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from actors.base import Actor
from actors.intent.confirm import Cancelled, Confirmations, Confirmed, Outcome, Pending, Queued, Request
from actors.intent.grammar import answer_of
from actors.intent.settings import IntentSettings, IntentSpec
from bus.bodies.audio import Transcript
from bus.bodies.gesture import GestureRecognized
from bus.bodies.intent import (ActionInvoked, ActionResult, AssistantAnswer, ConfirmRequest, IntentCancelled,
                               IntentConfirmed, IntentQueued, IntentRecognized, IntentUnknown, StageTimeout)
from bus.bodies.vision import Tracks
from bus.envelope import Header, Message, now_ns
from bus.senders import origin_host

TICK_S = 0.05


def sender_allowed(header: Header, allowed: list[str], local_host: str) -> bool:
    """Whether a message's sender is on the allow-list: ``NAME`` (this host), ``HOST/NAME``, ``*/NAME``."""
    on_this_host = header.host in ("", local_host)
    for entry in allowed:
        host, _, name = entry.rpartition("/")
        if name != header.src:
            continue
        if (not host and on_this_host) or host == "*" or host == header.host:
            return True
    return False


@dataclass
class _Run:
    pending: Pending
    name: str
    argv: list[str]


def run_program(argv: list[str], timeout_s: float, max_bytes: int) -> tuple[bool, int | None, str, str, str, float]:
    """(ok, exit code, stdout, stderr, error, duration ms) of one program run, never through a shell."""
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, shell=False, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        return (False, None, _cut(exc.stdout, max_bytes), _cut(exc.stderr, max_bytes),
                f"timed out after {timeout_s:g} s", (time.monotonic() - started) * 1000)
    except OSError as exc:  # not found, not executable
        return False, None, "", "", f"{type(exc).__name__}: {exc}", (time.monotonic() - started) * 1000
    duration = (time.monotonic() - started) * 1000
    error = "" if done.returncode == 0 else f"exit code {done.returncode}"
    return (done.returncode == 0, done.returncode, _cut(done.stdout, max_bytes), _cut(done.stderr, max_bytes), error,
            duration)


def _cut(data: bytes | None, max_bytes: int) -> str:
    return (data or b"")[:max_bytes].decode("utf-8", errors="replace")


def describe(counts: dict[str, int]) -> str:
    """"I see 2 circles and a square." from signal -> count of present tracks."""
    parts = [f"a {s}" if n == 1 else f"{n} {s}s" for s, n in sorted(counts.items()) if n]
    if not parts:
        return "I see nothing I know."
    return "I see " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]) + "."


class IntentActor(Actor[IntentSettings]):
    kind = "intent"

    def setup(self) -> None:
        s = self.settings
        self.grammar = s.grammar()
        self.confirmations = Confirmations(s.confirm_timeouts(), s.pending, s.queue_size)
        self.local_host = origin_host()
        self.ids = itertools.count()
        self.tracks: dict[str, tuple[float, Tracks]] = {}
        self.runs: queue.Queue[_Run | None] = queue.Queue()
        self.results: queue.Queue[tuple[_Run, tuple]] = queue.Queue()
        self.stats = {"recognized": 0, "unknown": 0, "refused_senders": 0, "confirmed": 0, "cancelled": 0,
                      "actions": 0, "actions_failed": 0, "answers": 0, "timeouts": 0, "stale_answers": 0}
        self.worker = threading.Thread(target=self._work, name="actions", daemon=True)
        self.worker.start()
        self.subscribe(s.transcript_topic, self.on_speech_transcript)
        self.subscribe(s.gesture_topic, self.on_gesture_recognized)
        self.subscribe(s.track_prefix, self.on_track)
        self.every(TICK_S, self.tick)

    # -- inputs -------------------------------------------------------------

    def allowed(self, msg: Message) -> bool:
        if sender_allowed(msg.header, self.settings.allowed_senders, self.local_host):
            return True
        self.stats["refused_senders"] += 1
        self.counters.dropped += 1
        self._burst.error(f"sender:{msg.header.src}", "sender_not_allowed", topic=msg.topic, src=msg.header.src,
                            host=msg.header.host, seq=msg.header.seq, refused_total=self.stats["refused_senders"])
        return False

    def on_speech_transcript(self, msg: Message) -> None:
        if not self.allowed(msg):
            return
        transcript = Transcript.from_body(msg.body)
        limits = self.settings.limits
        if transcript.latency_ms / 1000 > limits.speech_s:
            self.timeout("speech", limits.speech_s, transcript.latency_ms / 1000)
            return
        s = self.settings
        answer = answer_of(transcript.text, s.yes_words, s.no_words, s.fillers)
        if answer is not None:
            outcomes = self.confirmations.answer(answer == "yes", "voice", msg.header.src, time.monotonic())
            if outcomes:
                self.emit(outcomes)
            else:
                self.unknown(transcript, "no_pending", msg.header.src)
            return
        match = self.grammar.match(transcript.text)
        if match is None:
            self.unknown(transcript, "no_match", msg.header.src)
            return
        if match.confidence < s.min_confidence:
            self.unknown(transcript, "low_confidence", msg.header.src, match.intent, match.confidence)
            return
        spec = s.intents[match.intent]
        pending = Pending(f"{self.name}-{next(self.ids)}", match.intent, match.slots, spec.risk, match.words)
        self.stats["recognized"] += 1
        self.publish(IntentRecognized(id=pending.id, intent=match.intent, slots=match.slots, words=match.words,
                                      confidence=match.confidence, risk=spec.risk, text=transcript.text,
                                      pattern=match.pattern, source=msg.header.src, segment_id=transcript.segment_id,
                                      t_start=transcript.t_start), corr=pending.id)
        elapsed = (now_ns() - msg.header.ts) / 1e9
        if elapsed > limits.intent_s:
            self.timeout("intent", limits.intent_s, elapsed, pending)
            return
        self.emit(self.confirmations.submit(pending, time.monotonic()))

    def on_gesture_recognized(self, msg: Message) -> None:
        if not self.allowed(msg):
            return
        gesture = GestureRecognized.from_body(msg.body)
        s = self.settings
        if gesture.is_outlier or gesture.confidence < s.min_gesture_confidence:
            return
        if gesture.name in s.confirm_gestures or gesture.name in s.cancel_gestures:
            yes = gesture.name in s.confirm_gestures
            self.emit(self.confirmations.answer(yes, "gesture", msg.header.src, time.monotonic()))

    def on_track(self, msg: Message) -> None:
        tracks = Tracks.from_body(msg.body)
        self.tracks[tracks.signal] = (time.monotonic(), tracks)

    def tick(self) -> None:
        self.emit(self.confirmations.tick(time.monotonic()))
        while not self.results.empty():
            run, (ok, code, out, err, error, duration_ms) = self.results.get_nowait()
            self.stats["actions_failed"] += not ok
            if not ok:
                self.log.warning("action_failed", id=run.pending.id, action=run.name, argv=run.argv, error=error,
                                 exit_code=code)
            self.publish(ActionResult(id=run.pending.id, name=run.name, ok=ok, exit_code=code, stdout=out,
                                      stderr=err, error=error, duration_ms=round(duration_ms, 2), argv=run.argv),
                         corr=run.pending.id)
            if code is None and error.startswith("timed out"):
                self.timeout("action", self.settings.limits.action_s, duration_ms / 1000, run.pending)

    # -- outcomes ---------------------------------------------------------------

    def emit(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            p = outcome.pending
            if isinstance(outcome, Request):
                self.publish(ConfirmRequest(id=p.id, intent=p.intent, slots=p.slots, risk=p.risk,
                                            timeout_s=outcome.timeout_s, prompt=self.prompt(p)), corr=p.id)
            elif isinstance(outcome, Queued):
                self.publish(IntentQueued(id=p.id, intent=p.intent, slots=p.slots, position=outcome.position),
                             corr=p.id)
            elif isinstance(outcome, Confirmed):
                self.stats["confirmed"] += 1
                self.publish(IntentConfirmed(id=p.id, intent=p.intent, slots=p.slots, via=outcome.via, by=outcome.by),
                             corr=p.id)
                self.act(p)
            elif isinstance(outcome, Cancelled):
                self.stats["cancelled"] += 1
                self.publish(IntentCancelled(id=p.id, intent=p.intent, slots=p.slots, reason=outcome.reason,
                                             by=outcome.by, waited_s=outcome.waited_s), corr=p.id)
                if outcome.reason == "timeout":
                    self.timeout("confirm", self.confirmations.timeouts_s[p.risk], outcome.waited_s, p)

    def prompt(self, p: Pending) -> str:
        spec = self.settings.intents[p.intent]
        if spec.prompt:
            return spec.prompt.format_map({k: str(v) for k, v in p.slots.items()}) if p.slots else spec.prompt
        slots = ", ".join(f"{k} {v}" for k, v in p.slots.items())
        return f"{p.intent}{' (' + slots + ')' if slots else ''}: yes or no?"

    def act(self, p: Pending) -> None:
        spec: IntentSpec = self.settings.intents[p.intent]
        if spec.answer == "vision":
            self.answer_vision(p)
            return
        name = spec.action or p.intent
        self.stats["actions"] += 1
        invoked = ActionInvoked(id=p.id, name=name, intent=p.intent, slots=p.slots, program=bool(spec.program))
        self.publish(invoked.topic(), invoked.to_body(), corr=p.id)
        if spec.program:
            values = {k: str(v) for k, v in p.slots.items()}
            self.runs.put(_Run(p, name, [arg.format_map(values) for arg in spec.program]))

    def answer_vision(self, p: Pending) -> None:
        limit = self.settings.limits.vision_s
        now = time.monotonic()
        fresh = {signal: t for signal, (seen, t) in self.tracks.items() if now - seen <= limit}
        newest_age = min((now - seen for seen, _ in self.tracks.values()), default=None)
        if not fresh:
            self.stats["stale_answers"] += 1
            self.timeout("vision", limit, newest_age if newest_age is not None else 0.0, p)
            text = "I cannot see anything right now: no recent camera tracks."
            counts: dict[str, int] = {}
        else:
            counts = {signal: t.present for signal, t in fresh.items()}
            text = describe(counts)
        self.stats["answers"] += 1
        self.publish(AssistantAnswer(text=text, id=p.id, intent=p.intent,
                                     facts={"counts": counts, "age_s": round(newest_age, 3) if newest_age is not None
                                            else None}), corr=p.id)

    def unknown(self, transcript: Transcript, reason: str, source: str, nearest: str = "",
                confidence: float = 0.0) -> None:
        self.stats["unknown"] += 1
        self.publish(IntentUnknown(text=transcript.text, reason=reason, nearest=nearest, confidence=confidence,
                                   source=source, segment_id=transcript.segment_id, t_start=transcript.t_start))

    def timeout(self, stage: str, limit_s: float, elapsed_s: float, p: Pending | None = None) -> None:
        self.stats["timeouts"] += 1
        self.log.warning("stage_timeout", stage=stage, limit_s=limit_s, elapsed_s=round(elapsed_s, 3),
                         id=p.id if p else "")
        self.publish(StageTimeout(stage=stage, limit_s=limit_s, elapsed_s=round(elapsed_s, 3),
                                  id=p.id if p else "", intent=p.intent if p else ""), corr=p.id if p else None)

    # -- the action worker -------------------------------------------------

    def _work(self) -> None:
        s = self.settings
        while True:
            run = self.runs.get()
            if run is None:
                return
            self.results.put((run, run_program(run.argv, s.limits.action_s, s.max_output_bytes)))

    def heartbeat_extra(self) -> dict[str, Any]:
        waiting = self.confirmations.waiting
        return {**self.stats, "waiting": waiting.id if waiting else "", "queued": len(self.confirmations.queue)}

    def teardown(self) -> None:
        self.runs.put(None)
        self.worker.join(timeout=self.settings.limits.action_s + 1)
        self.tick()
