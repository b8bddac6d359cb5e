"""The gesture recognizer actor: ``sensor.imu`` in, ``gesture.recognized`` (and ``gesture.unknown``) out.

The story: load the gesture store (seeding it from the shipped templates
the first time; a corrupt file is recovered from backup and an alert
published), then for every IMU batch feed the sliding-window segmenter of
its stream; each motion segment it closes is matched against the templates
(``recognizer.Recognizer``) and, when accepted, published with its
confidence, outlier flag and processing time; a motion that is no gesture
of the store is counted (``rejected``, by reason in ``unknown``) and
published on ``gesture.unknown`` (``publish_unknown``). A timer notices when the
store file changes (``sensorium gesture train`` in another terminal) and
reloads it without a restart.

A stream is one sender (host, src, instance id: ``bus/senders.py``) and
device: two phones, a replay next to the live sensor, or an outside
publisher that borrowed the sensor's name each get their own segmenter, so
one stream's readings never cut into another's motion. Streams are bounded
(``max_streams``, least recently heard dropped first) and a silent one is
dropped after ``idle_drop_s``, as the vad does with audio streams.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from actors.base import Actor
from actors.gesture.settings import GestureSettings
from actors.gesture.recognizer import Recognizer
from actors.lib.gesture.segmenter import Segmenter
from actors.lib.gesture.store import GestureStore, StoreLoad
from bus.bodies.gesture import GestureRecognized, GestureUnknown
from bus.bodies.imu import ImuBatch
from bus.envelope import Message
from bus.messages import Alert
from config.storage import CorruptFileError, LockTimeout


STORE_LOCK_WAIT_S = 1.0
"""Longest wait for the store's lock inside the actor loop, seconds."""

StreamKey = tuple[str, str, str, str]
"""(host, src, iid, device) of an IMU stream."""


@dataclass
class ImuStream:
    segmenter: Segmenter
    last_heard: float
    """Monotonic time of its last batch, seconds."""


class GestureActor(Actor[GestureSettings]):
    kind = "gesture"

    def setup(self) -> None:
        s = self.settings
        # Short: the loop must not stall while the CLI holds the lock (training);
        # a busy store is simply tried again at the next check.
        self.store = GestureStore.from_settings(s.store, lock_timeout_s=STORE_LOCK_WAIT_S)
        self.streams: dict[StreamKey, ImuStream] = {}
        self.last_stream: ImuStream | None = None
        self.dropped_streams = {"too_long": 0, "too_short": 0, "streams_dropped": 0}
        self.recognizer: Recognizer | None = None
        self.store_revision = 0
        self.store_signature: Any = None
        self.store_unusable = False
        """A ``gesture.store.unusable`` alert is raised and not yet cleared."""
        self.figures = {"segments": 0, "recognized": 0, "rejected": 0, "outliers": 0, "low_confidence": 0,
                        "reloads": 0, "store_errors": 0}
        self.unknown_by_reason: dict[str, int] = {}
        """Rejected motions by reason (acceptance.FAR, acceptance.AMBIGUOUS)."""
        self.load_store()
        self.subscribe(s.input_topic, self.on_sensor_imu)
        self.every(s.reload_check_s, self.reload_if_changed)
        self.every(min(s.idle_drop_s / 2, 5.0), self.drop_idle_streams)

    def on_sensor_imu(self, msg: Message) -> None:
        received = time.perf_counter()
        batch = ImuBatch.from_body(msg.body)
        for segment in self.stream_of(msg, batch).segmenter.feed(batch.t, batch.acc, batch.gyro):
            self.figures["segments"] += 1
            if self.recognizer is None:
                continue
            decision = self.recognizer.recognize(segment.t, segment.acc, segment.gyro)
            if decision is None:
                continue
            if not decision.accepted:
                self.figures["rejected"] += 1
                self.unknown_by_reason[decision.reason] = self.unknown_by_reason.get(decision.reason, 0) + 1
                self.log.debug("segment_rejected", nearest=decision.name, reason=decision.reason,
                               distance=round(decision.distance, 3), threshold=round(decision.threshold, 3),
                               margin=round(decision.margin, 3), t_start=segment.t_start)
                if self.settings.publish_unknown:
                    self.publish(GestureUnknown(
                        nearest=decision.name, reason=decision.reason, distance=round(decision.distance, 4),
                        threshold=round(decision.threshold, 4), margin=round(decision.margin, 4),
                        runner_up=decision.runner_up,
                        processing_time_ms=round((time.perf_counter() - received) * 1000.0, 3),
                        t_start=segment.t_start, t_end=segment.t_end, store_version=self.store_revision))
                continue
            if decision.confidence < self.settings.min_confidence:
                self.figures["low_confidence"] += 1
                continue
            self.figures["recognized"] += 1
            self.figures["outliers"] += decision.is_outlier
            self.publish(GestureRecognized(
                name=decision.name, confidence=round(decision.confidence, 4), is_outlier=bool(decision.is_outlier),
                processing_time_ms=round((time.perf_counter() - received) * 1000.0, 3),
                template_version=decision.template_version, distance=round(decision.distance, 4),
                threshold=round(decision.threshold, 4), t_start=segment.t_start, t_end=segment.t_end,
                runner_up=decision.runner_up, store_version=self.store_revision))

    def stream_of(self, msg: Message, batch: ImuBatch) -> ImuStream:
        host, src, iid = msg.header.sender
        key = (host, src, iid, batch.device)
        stream = self.streams.get(key)
        if stream is None:
            if len(self.streams) >= self.settings.max_streams:
                oldest = min(self.streams, key=lambda k: self.streams[k].last_heard)
                self.log.warning("too_many_imu_streams", dropping=list(oldest), max_streams=self.settings.max_streams)
                self.drop_stream(oldest)
            stream = self.streams[key] = ImuStream(Segmenter(self.settings.segmentation), 0.0)
            self.log.info("imu_stream_opened", host=host, src=src, iid=iid, device=batch.device,
                          streams=len(self.streams))
        stream.last_heard = time.monotonic()
        self.last_stream = stream
        return stream

    def drop_idle_streams(self) -> None:
        now = time.monotonic()
        for key in [k for k, st in self.streams.items() if now - st.last_heard > self.settings.idle_drop_s]:
            self.log.info("imu_stream_idle_dropped", host=key[0], src=key[1], iid=key[2], device=key[3])
            self.drop_stream(key)

    def drop_stream(self, key: StreamKey) -> None:
        stream = self.streams.pop(key)
        self.dropped_streams["too_long"] += stream.segmenter.too_long
        self.dropped_streams["too_short"] += stream.segmenter.too_short
        self.dropped_streams["streams_dropped"] += 1
        if self.last_stream is stream:
            self.last_stream = None

    def reload_if_changed(self) -> None:
        if self.store.signature() != self.store_signature:
            self.load_store()

    def load_store(self) -> None:
        signature = self.store.signature()
        try:
            loaded = self.store.load()
        except LockTimeout:
            self.log.info("gesture_store_busy", path=str(self.store.path), retry_in_s=self.settings.reload_check_s)
            return
        except (CorruptFileError, OSError, ValueError) as exc:
            # Keep matching with what we have; try again at the next check.
            self.figures["store_errors"] += 1
            self.store_signature = signature
            self.log.error("gesture_store_unusable", path=str(self.store.path), error=str(exc))
            self.publish(Alert(level="critical", metric="gesture.store.unusable", value=1.0, threshold=0.0,
                               actor=self.name, message=f"gesture store {self.store.path}: {exc}"))
            self.store_unusable = True
            return
        self.store_signature = self.store.signature()
        if self.store_unusable:
            self.store_unusable = False
            self.publish(Alert(level="critical", metric="gesture.store.unusable", value=0.0, threshold=0.0,
                               actor=self.name, state="cleared",
                               message=f"gesture store {self.store.path} loads again (revision {loaded.db.revision})"))
        self.report_load(loaded)
        self.recognizer = Recognizer(loaded.db, rule=self.settings.acceptance(),
                                     outlier_sigma=self.settings.outlier_sigma,
                                     history_weight=self.settings.history_weight)
        self.store_revision = loaded.db.revision
        self.figures["reloads"] += 1
        self.log.info("gesture_store_loaded", path=str(self.store.path), revision=loaded.db.revision,
                      gestures=self.recognizer.names, untrained=sorted(set(loaded.db.gestures) - set(self.recognizer.names)),
                      # The user's own samples of these replace the shipped ones (training decided).
                      user_over_shipped=sorted(n for n, g in loaded.db.gestures.items() if g.superseded))

    def report_load(self, loaded: StoreLoad) -> None:
        if loaded.recovered_from is not None:
            self.log.error("gesture_store_recovered", path=str(self.store.path), error=loaded.error,
                           quarantined=str(loaded.quarantined), restored=str(loaded.recovered_from))
            self.publish(Alert(level="warning", metric="gesture.store.corrupt", value=1.0, threshold=0.0,
                               actor=self.name, message=f"gesture store {self.store.path} was corrupt "
                               f"({loaded.error}); restored {loaded.recovered_from.name}, "
                               f"corrupt file kept as {loaded.quarantined}"))
        if loaded.migrated_from is not None:
            self.log.warning("gesture_store_migrated", legacy=str(loaded.migrated_from), skipped=list(loaded.skipped))
        if loaded.backup_error:
            self.log.warning("gesture_store_not_backed_up", path=str(self.store.path), error=loaded.backup_error)
        if loaded.seeded_from is not None:
            self.log.info("gesture_store_seeded", seed=str(loaded.seeded_from), path=str(self.store.path))

    def heartbeat_extra(self) -> dict[str, Any]:
        return {**self.figures, "unknown": dict(self.unknown_by_reason), "store_revision": self.store_revision,
                "templates": len(self.recognizer.names) if self.recognizer else 0,
                "streams": len(self.streams), "streams_dropped": self.dropped_streams["streams_dropped"],
                "noise_floor": round(self.last_stream.segmenter.noise_floor or 0.0, 4) if self.last_stream else 0.0,
                "too_long": self.dropped_streams["too_long"] + sum(st.segmenter.too_long
                                                                   for st in self.streams.values()),
                "too_short": self.dropped_streams["too_short"] + sum(st.segmenter.too_short
                                                                     for st in self.streams.values())}
