"""The Hydra detector: one backbone per frame, every head on the shared features.

It loads the active backbone and the configured heads from the model store
(``models/``), keeps only the newest ``camera.frame`` (older ones waiting
behind it are skipped and counted: no backlog; it works on a frame as soon
as no other message is waiting behind it), runs the backbone once and
each head on its features, and publishes ``detect.<signal>`` per head.

Weights are checked against their sha256 in the registry before loading. A
mismatch is refused: the previous good version is used instead and a
``monitor.alert`` (metric ``model.sha256``) is published. Frames that are
not uint8 HxWx3 are counted and dropped.

Registry alerts: a registry restored from its backup raises ``model.registry``
(warning: a file went to quarantine, a person should look); a registry that
cannot be read at all raises ``model.registry.unusable`` (critical), cleared
by the next read that succeeds.

Commands on ``ctl.<name>`` (answered on ``ctl.reply``):
``load_head(signal, version=None)``, ``unload_head(signal)``,
``promote(signal, version)``, ``rollback(signal)``, ``heads()``.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zmq

from actors.base import Actor, ActorExit
from actors.detector.settings import DetectorSettings
from actors.detector import model as hm
from actors.lib.modelstore import BACKBONE, DEFAULT_STORE, ModelStore, StoreError, check_signal
from bus.bodies.vision import CameraFrame, Detections, detect_topic
from bus.envelope import Message
from bus.messages import Alert, BodyError
from config.storage import CorruptFileError

PENDING_CHECK_S = 0.02
"""How often the loop looks for a kept frame that no later message replaced, seconds."""


class DetectorActor(Actor[DetectorSettings]):
    kind = "detector"

    def setup(self) -> None:
        s = self.settings
        torch.set_num_threads(s.threads)
        if s.device == "cuda" and not torch.cuda.is_available():
            raise ActorExit(1, "settings.device is 'cuda' but torch sees no CUDA device")
        self.device = torch.device("cuda" if s.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.store = ModelStore(Path(s.models_dir) if s.models_dir else DEFAULT_STORE,
                                on_recovered=lambda m: self.alert("model.registry", m, level="warning"))
        self.registry_unusable = False
        """A ``model.registry.unusable`` alert is raised and not yet cleared."""
        self.heads: dict[str, tuple[hm.Head, int]] = {}
        self.latest: CameraFrame | None = None
        self.stats = {"frames": 0, "skipped_stale": 0, "rejected": 0, "refused_weights": 0}
        self.detect_ms: deque[float] = deque(maxlen=256)
        try:
            self.backbone, self.backbone_version = self._load_backbone()
            signals = list(s.heads) or self.store.signals()
        except (StoreError, FileNotFoundError, CorruptFileError) as exc:
            raise ActorExit(1, f"model store {self.store.root}: {exc}") from exc
        for signal in signals:
            try:
                self._load_head(signal, None)
            except (StoreError, CorruptFileError, ValueError) as exc:
                self.log.error("head_not_loaded", signal=signal, error=str(exc))
        self.log.info("models_loaded", device=str(self.device), backbone=self.backbone_version,
                      heads={k: v for k, (_h, v) in self.heads.items()})
        self.subscribe(s.frame_topic, self.on_camera_frame)
        self.every(PENDING_CHECK_S, self.detect_latest)

    # -- loading with checksums ----------------------------------------------------

    def alert(self, metric: str, message: str, level: str = "critical") -> None:
        self.log.error("model_alert", metric=metric, message=message)
        self.publish(Alert(level=level, metric=metric, value=1.0, threshold=0.0, actor=self.name, message=message))

    def read_registry(self) -> dict[str, Any]:
        """The registry document. A read that fails (corrupt, no good backup) raises the critical
        ``model.registry.unusable`` alert; the next read that succeeds clears it."""
        try:
            doc = self.store.read()
        except (CorruptFileError, StoreError, ValueError) as exc:
            if not self.registry_unusable:
                self.registry_unusable = True
                self.alert("model.registry.unusable", f"{self.store.registry.path}: {exc}")
            raise
        if self.registry_unusable:
            self.registry_unusable = False
            self.log.info("model_alert_cleared", metric="model.registry.unusable")
            self.publish(Alert(level="critical", metric="model.registry.unusable", value=0.0, threshold=0.0,
                               actor=self.name, state="cleared", message=f"{self.store.registry.path} reads again"))
        return doc

    def _verified(self, name: str, version: int, doc: dict[str, Any]) -> bytes | None:
        """The weights of one version, or None (alert published) when the sha256 does not match."""
        try:
            return self.store.read_verified(name, version, doc)
        except CorruptFileError as exc:
            self.stats["refused_weights"] += 1
            self.alert("model.sha256", f"{name} v{version} refused: {exc}")
            return None

    def _load_backbone(self) -> tuple[hm.Backbone, int]:
        doc = self.read_registry()
        for version in self.store.candidates(BACKBONE, doc):
            data = self._verified(BACKBONE, version, doc)
            if data is not None:
                if version != self.store.active(BACKBONE, doc):
                    self.alert("model.fallback", f"backbone: using v{version} instead of the active "
                               f"v{self.store.active(BACKBONE, doc)}")
                backbone = hm.backbone_from_bytes(data, f"backbone v{version}")
                return backbone.to(self.device, self.dtype).eval(), version
        raise StoreError(f"no backbone version passes its sha256 check in {self.store.root}")

    def _load_head(self, signal: str, version: int | None) -> int:
        """Load ``signal`` at ``version`` (None: the active one). A refused
        version falls back to the version already loaded, else to earlier good ones."""
        check_signal(signal)
        doc = self.read_registry()
        entry = self.store.entry(signal, doc)
        wanted = version if version is not None else entry["active"]
        if wanted is None:
            raise StoreError(f"{signal} has no active version")
        self.store.meta(signal, wanted, doc)
        loaded = self.heads.get(signal)
        order = [wanted] + ([loaded[1]] if loaded else []) + self.store.candidates(signal, doc)
        tried: list[int] = []
        for v in order:
            if v in tried:
                continue
            tried.append(v)
            if loaded and v == loaded[1] and v != wanted:
                self.alert("model.fallback", f"{signal}: v{wanted} refused, keeping the loaded v{v}")
                return v
            meta = self.store.meta(signal, v, doc)
            if meta.get("backbone") != self.backbone_version:
                self.log.warning("head_needs_other_backbone", signal=signal, version=v, needs=meta.get("backbone"),
                                 loaded=self.backbone_version)
                continue
            data = self._verified(signal, v, doc)
            if data is None:
                continue
            head = hm.head_from_bytes(data, f"{signal} v{v}").to(self.device, self.dtype).eval()
            self.heads[signal] = (head, v)
            if v != wanted:
                self.alert("model.fallback", f"{signal}: using v{v} instead of v{wanted}")
            self.log.info("head_loaded", signal=signal, version=v)
            return v
        raise StoreError(f"{signal}: no version usable with backbone v{self.backbone_version} passes its "
                         f"sha256 check (tried {', '.join(f'v{v}' for v in tried)})")

    # -- frames -------------------------------------------------------------------------

    def on_camera_frame(self, msg: Message) -> None:
        """Keep only the newest frame; a bad frame is counted and dropped (the base class counts it as dropped)."""
        try:
            frame = CameraFrame.from_body(msg.body)
            frame.check_image(self.settings.max_side_px)
        except (BodyError, TypeError) as exc:
            self.stats["rejected"] += 1
            raise BodyError(f"{msg.topic} seq {msg.header.seq} from {msg.header.src}: {exc}") from exc
        if self.latest is not None:
            self.stats["skipped_stale"] += 1
        self.latest = frame
        # Work on it now unless another message is already waiting (it may be
        # a newer frame); the timer catches a frame left behind by a command.
        assert self.sub is not None
        if not self.sub.sock.get(zmq.EVENTS) & zmq.POLLIN:
            self.detect_latest()

    def detect_latest(self) -> None:
        frame, self.latest = self.latest, None
        if frame is None or not self.heads:
            return
        t0 = time.perf_counter()
        s = self.settings
        x = hm.preprocess(frame.image).to(self.device, self.dtype)
        with torch.inference_mode():
            features = self.backbone(x)
            outputs = {signal: head(features) for signal, (head, _v) in self.heads.items()}
            decoded = {signal: hm.decode(out, frame_hw=frame.image.shape[:2], score_threshold=s.score_threshold,
                                         max_detections=s.max_detections)[0] for signal, out in outputs.items()}
        latency_ms = round((time.perf_counter() - t0) * 1000.0, 3)
        self.detect_ms.append(latency_ms)
        self.stats["frames"] += 1
        for signal, det in decoded.items():
            body = Detections(boxes=np.ascontiguousarray(det.boxes, np.float32),
                              scores=np.ascontiguousarray(det.scores, np.float32), frame_id=int(frame.frame_id),
                              head_version=self.heads[signal][1], latency_ms=latency_ms, signal=signal,
                              backbone_version=self.backbone_version)
            self.publish(detect_topic(signal), body.to_body())

    # -- commands --------------------------------------------------------------------------

    def ctl_heads(self) -> dict[str, int]:
        return {signal: v for signal, (_h, v) in sorted(self.heads.items())}

    def ctl_load_head(self, signal: str, version: int | None = None) -> dict[str, Any]:
        v = self._load_head(signal, None if version is None else int(version))
        return {"signal": signal, "version": v, "heads": self.ctl_heads()}

    def ctl_unload_head(self, signal: str) -> dict[str, Any]:
        if self.heads.pop(signal, None) is None:
            raise StoreError(f"{signal} is not loaded; loaded: {', '.join(self.heads) or 'none'}")
        self.log.info("head_unloaded", signal=signal)
        return {"signal": signal, "heads": self.ctl_heads()}

    def ctl_promote(self, signal: str, version: int) -> dict[str, Any]:
        reg = self.store.promote(signal, int(version))
        loaded = self._load_head(signal, reg.version) if signal != BACKBONE else None
        return {"signal": signal, "active": reg.version, "loaded": loaded, "reason": reg.reason,
                "heads": self.ctl_heads()}

    def ctl_rollback(self, signal: str) -> dict[str, Any]:
        reg = self.store.rollback(signal)
        loaded = self._load_head(signal, reg.version) if signal != BACKBONE else None
        return {"signal": signal, "active": reg.version, "loaded": loaded, "reason": reg.reason,
                "heads": self.ctl_heads()}

    def heartbeat_extra(self) -> dict[str, Any]:
        lat = np.fromiter(self.detect_ms, np.float64)
        detect_ms = {"n": int(lat.size)}
        if lat.size:
            p50, p90 = np.percentile(lat, [50, 90])
            detect_ms.update(p50=round(float(p50), 3), p90=round(float(p90), 3), max=round(float(lat.max()), 3))
        return {"device": str(self.device), "backbone": self.backbone_version,
                "heads": self.ctl_heads(), "detect_ms": detect_ms, **self.stats}
