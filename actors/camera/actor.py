"""The camera: frames from OpenCV or a synthetic scene, with their quality, on ``camera.frame``.

Sources (``settings.source``):

* ``synthetic`` - moving shapes of the kinds the shipped heads detect
  (``actors.lib.scenes.MovingScene``); the default pipeline uses it;
* a device index (``"0"``), a video file, or an RTSP/HTTP URL, through
  ``cv2.VideoCapture``. A capture thread opens the source, and reopens it
  after a failure with exponential backoff (``config.backoff.BackoffPolicy``,
  the supervisor's restart backoff); live sources are read continuously and
  only the newest frame is kept, a file is read one frame per published frame.

Each frame carries its quality - variance of the Laplacian (blur) and mean
grey level (brightness) - and flags for the thresholds it crosses. The rate
adapts between ``min_fps`` and ``max_fps`` to the detector latency heard on
``detect.*``: a frame period of ``latency_headroom`` x the smoothed latency,
so the detector is never handed more than it can take.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import cv2
import numpy as np

from actors.base import Actor, handles
from actors.camera.settings import CameraSettings
from actors.lib.scenes import MovingScene
from bus.bodies.vision import CameraFrame, Detections
from bus.envelope import Message
from bus.messages import BodyError
from config.backoff import BackoffPolicy

TICK_S = 0.02
"""How often the actor checks whether the next frame is due, seconds."""
LATENCY_SMOOTHING = 0.3
"""Weight of a new latency reading in the moving average."""


def frame_quality(image: np.ndarray) -> dict[str, float]:
    """``blur``: variance of the Laplacian of the grey image (low = blurry);
    ``brightness``: mean grey level 0..255."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return {"blur": round(float(cv2.Laplacian(grey, cv2.CV_64F).var()), 2),
            "brightness": round(float(grey.mean()), 2)}


def quality_flags(quality: dict[str, float], blur_below: float, dark_below: float, bright_above: float) -> list[str]:
    flags = []
    if quality["blur"] < blur_below:
        flags.append("blurry")
    if quality["brightness"] < dark_below:
        flags.append("dark")
    if quality["brightness"] > bright_above:
        flags.append("bright")
    return flags


def adaptive_fps(latency_ms: float | None, min_fps: float, max_fps: float, headroom: float) -> float:
    """Frames per second the detector keeps up with: one frame per ``headroom`` x latency, within the bounds."""
    if latency_ms is None or latency_ms <= 0:
        return max_fps
    return float(min(max_fps, max(min_fps, 1000.0 / (latency_ms * headroom))))


class CaptureSource:
    """A ``cv2.VideoCapture`` on its own thread, reconnecting with backoff."""

    def __init__(self, target: str, backoff: BackoffPolicy, loop_file: bool, log: Any) -> None:
        self.target: int | str = int(target) if target.isdigit() else target
        self.is_file = isinstance(self.target, str) and "://" not in self.target
        self.backoff = backoff
        self.loop_file = loop_file
        self.log = log
        self.connected = False
        self.reconnects = 0
        """Times the source was lost (or failed to open) and a reopen was scheduled."""
        self.frames_read = 0
        self.last_error = ""
        self._latest: np.ndarray | None = None
        self._lock = threading.Lock()
        self._want = threading.Event()
        self._stop = threading.Event()
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def take(self) -> np.ndarray | None:
        """The newest frame not handed out yet, or None."""
        with self._lock:
            frame, self._latest = self._latest, None
        self._want.set()  # a file is read one frame per request
        return frame

    def close(self) -> None:
        self._stop.set()
        self._want.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            cap = cv2.VideoCapture(self.target)
            if cap.isOpened():
                if not self.is_file:
                    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a driver-side queue would hand us stale frames
                got = self._read_until_lost(cap)
                if got:
                    attempt = 0  # it worked for a while: the next loss starts the backoff afresh
                reason = "stream ended or read failed"
            else:
                reason = "could not open"
            cap.release()
            self.connected = False
            if self._stop.is_set():
                return
            attempt += 1
            self.reconnects += 1
            delay = self.backoff.delay_s(attempt, self._rng)
            self.last_error = f"{self.target}: {reason}"
            self.log.warning("camera_source_lost", source=str(self.target), reason=reason, attempt=attempt,
                             retry_in_s=round(delay, 3))
            self._stop.wait(delay)

    def _read_until_lost(self, cap: cv2.VideoCapture) -> int:
        got = 0
        while not self._stop.is_set():
            if self.is_file:
                if not self._want.wait(0.2):
                    continue
                self._want.clear()
            ok, frame = cap.read()
            if not ok and self.is_file and self.loop_file and got:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = cap.read()
            if not ok or frame is None:
                return got
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            got += 1
            self.connected = True
            self.frames_read += 1
            with self._lock:
                self._latest = frame
        return got


class SyntheticSource:
    """Moving shapes rendered at the time of each frame."""

    connected = True
    reconnects = 0

    def __init__(self, settings: Any) -> None:
        self.scene = MovingScene(settings.seed, settings.kinds, width=settings.width, height=settings.height,
                                 n_objects=settings.objects, speed_px_s=settings.speed_px_s)
        self.t0 = time.monotonic()

    def take(self, out: np.ndarray | None = None) -> np.ndarray:
        """The scene now, drawn into ``out`` when given (a frame on loan: published without a copy)."""
        return self.scene.frame(time.monotonic() - self.t0, out=out).image

    def close(self) -> None:
        pass


class CameraActor(Actor[CameraSettings]):
    kind = "camera"

    def setup(self) -> None:
        s = self.settings
        if s.source == "synthetic":
            self.source: SyntheticSource | CaptureSource = SyntheticSource(s)
        else:
            self.source = CaptureSource(s.source, BackoffPolicy.from_settings(s.reconnect), s.loop_file, self.log)
        self.fps = float(s.max_fps)
        self.latency_ms: float | None = None
        self.latency_frames: set[tuple[str, int]] = set()
        self.frame_id = 0
        self.flagged = {flag: 0 for flag in ("blurry", "dark", "bright")}
        self.waiting_for_source = 0
        self.next_due = time.monotonic()
        self.every(TICK_S, self.tick)

    @handles("detect.")
    def on_detect(self, msg: Message) -> None:
        """Each frame's latency once (every head's message of a frame carries the same figure)."""
        det = Detections.from_body(msg.body)
        # A figure that is no number is bad input (dropped), not a bug here.
        try:
            key = (msg.header.src, int(det.frame_id))
            latency = float(det.latency_ms)
        except (TypeError, ValueError) as exc:
            raise BodyError(f"{msg.topic}: frame_id or latency_ms is not a number: {exc}") from exc
        if key in self.latency_frames:
            return
        if len(self.latency_frames) > 256:
            self.latency_frames.clear()
        self.latency_frames.add(key)
        if not np.isfinite(latency) or latency < 0:
            raise BodyError(f"{msg.topic}: latency_ms {latency!r} is not a non-negative number")
        self.latency_ms = latency if self.latency_ms is None else \
            (1 - LATENCY_SMOOTHING) * self.latency_ms + LATENCY_SMOOTHING * latency
        s = self.settings
        self.fps = adaptive_fps(self.latency_ms, s.min_fps, s.max_fps, s.latency_headroom)

    def tick(self) -> None:
        now = time.monotonic()
        if now < self.next_due:
            return
        s = self.settings
        if isinstance(self.source, SyntheticSource):  # drawn straight into a shared-memory slot
            image = self.source.take(self.loan(CameraFrame.TOPIC, (s.height, s.width, 3), np.uint8))
        else:
            image = self.source.take()
        if image is None:
            self.waiting_for_source += 1
            self.next_due = now + TICK_S * 5
            return
        self.next_due = now + 1.0 / self.fps
        quality = frame_quality(image)
        flags = quality_flags(quality, s.blur_below, s.dark_below, s.bright_above)
        for flag in flags:
            self.flagged[flag] += 1
        self.publish(CameraFrame(image=np.ascontiguousarray(image), frame_id=self.frame_id, fps=round(self.fps, 3),
                                 quality=quality, flags=flags, source=s.source, t_capture_ns=time.time_ns()))
        self.frame_id += 1

    def heartbeat_extra(self) -> dict[str, Any]:
        return {"fps": round(self.fps, 3), "frames": self.frame_id,
                "detector_latency_ms": round(self.latency_ms, 2) if self.latency_ms else None,
                "flagged": self.flagged, "connected": bool(self.source.connected),
                "reconnects": self.source.reconnects, "waiting_for_source": self.waiting_for_source,
                "frames_on_loan": self.pub.loans_published if self.pub is not None else 0,
                "pipe_writes": self.pub.pipes.written if self.pub is not None else 0}

    def teardown(self) -> None:
        self.source.close()
