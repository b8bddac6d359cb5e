"""The tracker actor: ``detect.<signal>`` in, ``track.<signal>`` out, one ``SignalTracker`` per (sender, signal).

A small kind after the detector rather than code inside it: the detector
stays one job (frames to per-frame boxes), ``detect.*`` keeps its meaning for
its subscribers, and tracks work on detections from any detector instance or
a recording. One ``track.<signal>`` message follows every ``detect.<signal>``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from actors.base import Actor
from actors.tracker.settings import TrackerSettings
from actors.tracker.tracks import SignalTracker, TrackerParams
from bus.bodies.vision import Detections, Tracks, track_topic
from bus.envelope import Message


class TrackerActor(Actor[TrackerSettings]):
    kind = "tracker"

    def setup(self) -> None:
        s = self.settings
        self.params = TrackerParams(window=s.window, k_present=s.k_present, k_gone=s.k_gone, min_iou=s.min_iou,
                                    smoothing=s.smoothing, min_score=s.min_score, max_tracks=s.max_tracks)
        self.trackers: OrderedDict[tuple[str, str], SignalTracker] = OrderedDict()
        self.forgotten = 0
        self.subscribe(s.detect_prefix, self.on_detect)

    def on_detect(self, msg: Message) -> None:
        det = Detections.from_body(msg.body)
        signal = det.signal or msg.topic[len(self.settings.detect_prefix):]
        key = (msg.header.src, signal)
        tracker = self.trackers.get(key)
        if tracker is None:
            if len(self.trackers) >= self.settings.max_streams:
                self.trackers.popitem(last=False)
                self.forgotten += 1
            tracker = self.trackers[key] = SignalTracker(self.params)
        self.trackers.move_to_end(key)
        tracks = tracker.update(det.boxes, det.scores)
        body = Tracks(signal=signal, frame_id=det.frame_id, tracks=[t.to_body() for t in tracks],
                      window=self.params.window, present=tracker.present)
        self.publish(track_topic(signal), body.to_body())

    def heartbeat_extra(self) -> dict[str, Any]:
        return {"streams": len(self.trackers), "forgotten": self.forgotten,
                "present": {f"{src}/{sig}": t.present for (src, sig), t in self.trackers.items()},
                "flips": sum(t.flips for t in self.trackers.values())}
