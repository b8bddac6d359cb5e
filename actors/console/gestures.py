"""Gestures from the console: the store (list, delete, export, train), recording sessions, practice.

Recording runs in a thread of its own with its own subscriber to the IMU
topic and the library's resumable ``RecordingSession`` (saved after every
sample: a session stopped by a closed page, a cancel or a console restart
resumes where it was). Practice listens to ``gesture.recognized`` and
``gesture.unknown`` and appends each attempt to ``DATA_DIR/practice.json``
(written atomically), from which accuracy over time is computed.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import zmq

from actors.console.settings import ConsoleSettings
from actors.lib.gesture.session import RecordingSession, Recorder, sample_from, score_sample, session_summary
from actors.lib.gesture.store import GestureStore, StoreError, valid_name
from actors.lib.gesture.training import train
from bus.pubsub import Subscriber
from config.storage import write_atomic

if TYPE_CHECKING:
    from actors.console.actor import ConsoleActor

MIN_QUALITY = 0.5
TAKE_TIMEOUT_S = 20.0
MAX_PRACTICE_ATTEMPTS = 5000


class Cancelled(Exception):
    pass


def accuracy_by_day(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per UTC day: attempts, correct ones and the accuracy (0..1), oldest first."""
    days: dict[str, list[int]] = {}
    for a in attempts:
        day = time.strftime("%Y-%m-%d", time.gmtime(a["ts"]))
        d = days.setdefault(day, [0, 0])
        d[0] += 1
        d[1] += bool(a.get("correct"))
    return [{"day": k, "attempts": n, "correct": c, "accuracy": round(c / n, 3)} for k, (n, c) in sorted(days.items())]


class GestureService:
    def __init__(self, settings: ConsoleSettings, data_dir: Path, actor: "ConsoleActor",
                 broadcast: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self.store = GestureStore.from_settings(settings.gestures)
        self.actor = actor
        self.broadcast = broadcast
        self.practice_path = Path(data_dir) / "practice.json"
        self._record_thread: threading.Thread | None = None
        self._record_cancel = threading.Event()
        self._record_state: dict[str, Any] = {"state": "idle"}
        self._practice_thread: threading.Thread | None = None
        self._practice_stop = threading.Event()
        self._practice_target: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._record_cancel.set()
        self._practice_stop.set()

    # -- the store --------------------------------------------------------------

    @property
    def sessions_dir(self) -> Path:
        return self.store.path.parent / "sessions"

    def list(self) -> dict[str, Any]:
        db = self.store.load().db
        history = self._practice()
        gestures = []
        for name in sorted(db.gestures):
            row = db.gestures[name].summary()
            mine = [a for a in history if a["target"] == name]
            row["practice"] = {"attempts": len(mine), "correct": sum(bool(a["correct"]) for a in mine)}
            gestures.append(row)
        paused = sorted(p.stem for p in self.sessions_dir.glob("*.session")) if self.sessions_dir.exists() else []
        return {"store": str(self.store.path), "gestures": gestures, "paused_sessions": paused}

    def delete(self, name: str) -> dict[str, Any]:
        with self.store.edit() as db:
            db.gesture(name)
            del db.gestures[name]
        return {"deleted": name}

    def export(self, names: list[str] | None) -> dict[str, Any]:
        dest = self.practice_path.parent / "exports" / time.strftime("gestures-%Y%m%d-%H%M%S.gst")
        dest.parent.mkdir(parents=True, exist_ok=True)
        n = self.store.export(dest, names or None)
        return {"path": str(dest), "gestures": n}

    def train(self) -> dict[str, Any]:
        with self.store.edit() as db:
            report = train(db)
        return {"accuracy": report.accuracy, "gestures": report.gestures, "skipped": report.skipped,
                "notes": report.lines(), "seconds": round(report.seconds, 2)}

    # -- recording ------------------------------------------------------------------

    def recording_status(self) -> dict[str, Any]:
        return dict(self._record_state)

    def _say(self, **state: Any) -> None:
        self._record_state = {**state, "ts": time.time()}
        self.broadcast({"type": "record", **self._record_state})

    def start_recording(self, name: str, target: int, fresh: bool, countdown_s: float) -> dict[str, Any]:
        try:
            name = valid_name(name)
        except (StoreError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        if not 1 <= target <= 50:
            raise ValueError(f"record.start: target must be 1..50 samples, got {target}")
        if not 0 <= countdown_s <= 10:
            raise ValueError(f"record.start: countdown_s must be 0..10, got {countdown_s:g}")
        with self._lock:
            if self._record_thread is not None and self._record_thread.is_alive():
                raise ValueError(f"a recording session ({self._record_state.get('name')}) is already running")
            session, resumed = RecordingSession.open(self.sessions_dir, name, target, fresh=fresh)
            session.save()
            self._record_cancel.clear()
            self._record_thread = threading.Thread(target=self._record, args=(session, countdown_s),
                                                   name="console-record", daemon=True)
            self._say(state="started", resumed=resumed, **session_summary(session))
            self._record_thread.start()
        return {"resumed": resumed, **session_summary(session)}

    def cancel_recording(self) -> dict[str, Any]:
        if self._record_thread is None or not self._record_thread.is_alive():
            raise ValueError("no recording session is running")
        self._record_cancel.set()
        return {"cancelled": self._record_state.get("name"), "note": "the samples so far are kept: start the same "
                "gesture again to resume"}

    def _tick(self) -> None:
        if self._record_cancel.is_set():
            raise Cancelled()

    def _idle(self, recorder: Recorder, seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            self._tick()
            recorder.idle(min(0.2, max(end - time.time(), 0.0)))

    def _record(self, session: RecordingSession, countdown_s: float) -> None:
        endpoints = self.actor.endpoints
        sub = Subscriber(zmq.Context.instance(), endpoints.backend, [self.settings.imu_topic])
        summary = lambda: session_summary(session)  # noqa: E731
        try:
            if not sub.wait_subscribed(endpoints.frontend, 10.0):
                raise StoreError(f"no bus at {endpoints.frontend}")
            recorder = Recorder(sub, self.settings.imu_topic)
            self._idle(recorder, 0.5)
            while not session.done:
                k = len(session.samples) + 1
                left = countdown_s
                while left > 0:
                    self._say(state="countdown", left=round(left), sample=k, **summary())
                    self._idle(recorder, min(1.0, left))
                    left -= 1.0
                self._say(state="go", sample=k, **summary())
                got = recorder.next_segment(time.time(), TAKE_TIMEOUT_S, tick=self._tick)
                if got is None:
                    self._say(state="paused", reason=f"no motion within {TAKE_TIMEOUT_S:g} s; start again to resume",
                              **summary())
                    return
                segment, batch_quality, flags = got
                quality, problems = score_sample(segment, batch_quality, flags)
                if problems or quality < MIN_QUALITY:
                    session.rejected += 1
                    session.save()
                    self._say(state="rejected", sample=k, why="; ".join(problems) or f"quality {quality:.2f}",
                              **summary())
                    continue
                session.samples.append(sample_from(segment, quality, session.id))
                session.save()  # auto-save: a stop now keeps this sample
                self._say(state="sample", sample=k, quality=round(quality, 3), duration_s=round(segment.duration_s, 3),
                          trace=np.round(segment.acc[:: max(1, len(segment.acc) // 100)], 3).tolist(), **summary())
            with self.store.edit() as db:
                db.add_samples(session.name, session.samples)
                report = train(db)
            session.remove()
            self._say(state="done", accuracy=report.accuracy, notes=report.lines(), **summary())
        except Cancelled:
            self._say(state="cancelled", **summary())
        except Exception as exc:  # noqa: BLE001 - the page hears why; the session file keeps the samples
            self._say(state="failed", error=str(exc), **summary())
        finally:
            sub.close()

    # -- practice ----------------------------------------------------------------------

    def _practice(self) -> list[dict[str, Any]]:
        try:
            return json.loads(self.practice_path.read_text())["attempts"]
        except (FileNotFoundError, ValueError, KeyError):
            return []

    def practice_history(self, gesture: str | None) -> dict[str, Any]:
        attempts = [a for a in self._practice() if gesture is None or a["target"] == gesture]
        names = sorted({a["target"] for a in attempts})
        return {"attempts": attempts[-200:], "by_gesture": {n: accuracy_by_day([a for a in attempts if a["target"] == n])
                                                            for n in names}}

    async def start_practice(self, gesture: str) -> dict[str, Any]:
        if self._practice_thread is not None and self._practice_thread.is_alive():
            self._practice_target = gesture
            return {"practising": gesture}
        self._practice_target = gesture
        self._practice_stop.clear()
        ready = threading.Event()
        self._practice_thread = threading.Thread(target=self._practise, args=(ready,), name="console-practice",
                                                 daemon=True)
        self._practice_thread.start()
        ready.wait(10.0)
        return {"practising": gesture}

    async def stop_practice(self) -> dict[str, Any]:
        self._practice_stop.set()
        return {"practising": None}

    def _practise(self, ready: threading.Event) -> None:
        endpoints = self.actor.endpoints
        sub = Subscriber(zmq.Context.instance(), endpoints.backend, ["gesture.recognized", "gesture.unknown"])
        try:
            sub.wait_subscribed(endpoints.frontend, 10.0)
            ready.set()
            while not self._practice_stop.is_set():
                msg = sub.recv(timeout_ms=200)
                if msg is None or self._practice_target is None:
                    continue
                body = msg.body
                recognized = body.get("name") if msg.topic == "gesture.recognized" else None
                attempt = {"ts": time.time(), "target": self._practice_target, "recognized": recognized,
                           "confidence": body.get("confidence"), "nearest": body.get("nearest"),
                           "correct": recognized == self._practice_target}
                self._append_attempt(attempt)
                self.broadcast({"type": "practice", "attempt": attempt})
        finally:
            ready.set()
            sub.close()

    def _append_attempt(self, attempt: dict[str, Any]) -> None:
        attempts = self._practice()
        attempts.append(attempt)
        self.practice_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.practice_path, json.dumps({"attempts": attempts[-MAX_PRACTICE_ATTEMPTS:]}).encode())
