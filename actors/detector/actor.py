"""The Hydra detector: one backbone per frame, every head on the shared features.

It loads the active backbone and the configured heads from the model store
(the user store over the shipped ``models/``: ``actors.lib.modelstore``), keeps only the newest ``camera.frame`` (older ones waiting
behind it are skipped and counted: no backlog; it works on a frame as soon
as no other message is waiting behind it), runs the backbone once and
each head on its features, and publishes ``detect.<signal>`` per head.

Weights are checked against their sha256 in the registry before loading. A
mismatch is refused: the previous good version is used instead and a
``monitor.alert`` (metric ``model.sha256``) is published. Frames that are
not uint8 HxWx3 are counted and dropped.

It follows the registry: every ``reload_check_s`` it looks whether a
registry changed (``sensorium models promote/rollback/train`` in another
terminal) and switches each followed head (and the backbone) to its active
version without a restart. Every switch is logged (``head_switched``) and
published on ``sys.model`` (``bus.messages.ModelSwitch``: model, old and
new version, reason).

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

from actors.base import Actor, ActorExit
from actors.detector.settings import DetectorSettings
from actors.detector import model as hm
from actors.lib.model_migration import open_layered
from actors.lib.modelstore import BACKBONE, DEFAULT_STORE, StoreError, check_signal, show, user_models_dir, version_label
from bus.bodies.vision import CameraFrame, Detections, detect_topic
from bus.envelope import Message
from bus.messages import Alert, BodyError, ModelSwitch
from config.storage import CorruptFileError, LockTimeout

RELOAD_ERRORS = (StoreError, CorruptFileError, LockTimeout, OSError, ValueError)
"""What a registry check or head load may raise: logged, counted and alerted, never fatal at run time."""

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
        shipped = Path(s.models_dir) if s.models_dir else DEFAULT_STORE
        try:
            self.store = open_layered(shipped, user_models_dir(s.user_dir),
                                      say=lambda line: self.log.warning("models_moved_to_user_store", detail=line),
                                      on_recovered=lambda m: self.alert("model.registry", m, level="warning"))
        except RELOAD_ERRORS as exc:
            raise ActorExit(1, f"model store {shipped}: {exc}") from exc
        self.registry_unusable = False
        """A ``model.registry.unusable`` alert is raised and not yet cleared."""
        self.heads: dict[str, tuple[hm.Head, str]] = {}
        self.unloaded: set[str] = set()
        """Heads unloaded by command: not loaded again when the registry changes."""
        self.latest: CameraFrame | None = None
        self.latest_msg: Message | None = None
        """The message ``latest`` came in: its image may be a view of the camera's ring (``still_valid``)."""
        self.stats = {"frames": 0, "skipped_stale": 0, "rejected": 0, "overwritten": 0, "refused_weights": 0,
                      "switches": 0,
                      "reload_errors": 0}
        self.detect_ms: deque[float] = deque(maxlen=256)
        self.registry_signature = self.store.signature()
        try:
            self.backbone, self.backbone_version = self._load_backbone()
            signals = list(s.heads) or self.store.signals()
        except (StoreError, FileNotFoundError, CorruptFileError) as exc:
            raise ActorExit(1, f"model store {self.store.describe()}: {exc}") from exc
        for signal in signals:
            try:
                self._load_head(signal, None, "start")
            except (StoreError, CorruptFileError, ValueError) as exc:
                self.log.error("head_not_loaded", signal=signal, error=str(exc))
        self.log.info("models_loaded", device=str(self.device), store=self.store.describe(),
                      backbone=self.backbone_version, heads=self.ctl_heads())
        # Frames as views of the camera's ring, their references through a pipe: no copy, no broker.
        self.subscribe(s.frame_topic, self.on_camera_frame, views=True)
        self.every(PENDING_CHECK_S, self.detect_latest)
        self.every(s.reload_check_s, self.follow_registry)

    # -- following the registry -------------------------------------------------------

    def follow_registry(self) -> None:
        """After a registry changed: the backbone and every followed head to their active versions."""
        signature = self.store.signature()
        if signature == self.registry_signature:
            return
        self.registry_signature = signature  # a broken registry is tried again at its next change
        try:
            doc = self.read_registry()
            if self.store.active(BACKBONE, doc) != self.backbone_version:
                old = self.backbone_version
                self.backbone, self.backbone_version = self._load_backbone()
                if self.backbone_version != old:
                    self._announce(BACKBONE, old, self.backbone_version, "registry changed")
            targets = wanted_heads(self.settings.heads, self.store.signals(doc), self.unloaded)
        except RELOAD_ERRORS as exc:
            self._reload_failed(BACKBONE, exc)
            return
        for signal in targets:
            loaded = self.heads.get(signal)
            try:
                active = self.store.active(signal, doc)
                if active is None:
                    continue
                needs = self.store.meta(signal, active, doc).get("backbone")
                if loaded is None or loaded[1] != active or needs != self.backbone_version:
                    self._load_head(signal, None, "registry changed")
            except RELOAD_ERRORS as exc:
                self._reload_failed(signal, exc)

    def _reload_failed(self, model: str, exc: Exception) -> None:
        self.stats["reload_errors"] += 1
        self.alert("model.reload", f"{model}: following the registry failed: {exc}", level="warning")

    def _announce(self, model: str, old: str | None, new: str, reason: str) -> None:
        self.stats["switches"] += 1
        self.log.info("head_switched" if model != BACKBONE else "backbone_switched", model=model,
                      old=old or "", new=new, reason=reason)
        self.publish(ModelSwitch(actor=self.name, model=model, old_version=old or "", new_version=new, reason=reason))

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
                self.alert("model.registry.unusable", f"{self.store.describe()}: {exc}")
            raise
        if self.registry_unusable:
            self.registry_unusable = False
            self.log.info("model_alert_cleared", metric="model.registry.unusable")
            self.publish(Alert(level="critical", metric="model.registry.unusable", value=0.0, threshold=0.0,
                               actor=self.name, state="cleared", message=f"{self.store.describe()} reads again"))
        return doc

    def _verified(self, name: str, version: str, doc: dict[str, Any]) -> bytes | None:
        """The weights of one version, or None (alert published) when the sha256 does not match."""
        try:
            return self.store.read_verified(name, version, doc)
        except CorruptFileError as exc:
            self.stats["refused_weights"] += 1
            self.alert("model.sha256", f"{name} {show(version)} refused: {exc}")
            return None

    def _load_backbone(self) -> tuple[hm.Backbone, str]:
        doc = self.read_registry()
        for version in self.store.candidates(BACKBONE, doc):
            data = self._verified(BACKBONE, version, doc)
            if data is not None:
                if version != self.store.active(BACKBONE, doc):
                    self.alert("model.fallback", f"backbone: using {show(version)} instead of the active "
                               f"{show(self.store.active(BACKBONE, doc))}")
                backbone = hm.backbone_from_bytes(data, f"backbone {show(version)}")
                return backbone.to(self.device, self.dtype).eval(), version
        raise StoreError(f"no backbone version passes its sha256 check in {self.store.describe()}")

    def _load_head(self, signal: str, version: str | None, reason: str) -> str:
        """Load ``signal`` at ``version`` (None: the active one). A refused
        version falls back to the version already loaded, else to earlier good ones."""
        check_signal(signal)
        before = self.heads.get(signal)
        loaded_version = self._pick_head(signal, version)
        if before is None or before[1] != loaded_version:
            self._announce(signal, before[1] if before else None, loaded_version, reason)
        return loaded_version

    def _pick_head(self, signal: str, version: str | None) -> str:
        doc = self.read_registry()
        entry = self.store.entry(signal, doc)
        wanted = version if version is not None else entry["active"]
        if wanted is None:
            raise StoreError(f"{signal} has no active version")
        self.store.meta(signal, wanted, doc)
        loaded = self.heads.get(signal)
        order = [wanted] + ([loaded[1]] if loaded else []) + self.store.candidates(signal, doc)
        tried: list[str] = []
        for v in order:
            if v in tried:
                continue
            tried.append(v)
            if loaded and v == loaded[1] and v != wanted \
                    and self.store.meta(signal, v, doc).get("backbone") == self.backbone_version:
                self.alert("model.fallback", f"{signal}: {show(wanted)} refused, keeping the loaded {show(v)}")
                return v
            meta = self.store.meta(signal, v, doc)
            if meta.get("backbone") != self.backbone_version:
                self.log.warning("head_needs_other_backbone", signal=signal, version=v, needs=meta.get("backbone"),
                                 loaded=self.backbone_version)
                continue
            data = self._verified(signal, v, doc)
            if data is None:
                continue
            head = hm.head_from_bytes(data, f"{signal} {show(v)}").to(self.device, self.dtype).eval()
            self.heads[signal] = (head, v)
            if v != wanted:
                self.alert("model.fallback", f"{signal}: using {show(v)} instead of {show(wanted)}")
            self.log.info("head_loaded", signal=signal, version=v)
            return v
        raise StoreError(f"{signal}: no version usable with backbone {show(self.backbone_version)} passes its "
                         f"sha256 check (tried {', '.join(f'{show(v)}' for v in tried)})")

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
        self.latest, self.latest_msg = frame, msg
        # Work on it now unless another message is already waiting (it may be
        # a newer frame); the timer catches a frame left behind by a command.
        if not self.messages_waiting():
            self.detect_latest()

    def detect_latest(self) -> None:
        frame, msg, self.latest, self.latest_msg = self.latest, self.latest_msg, None, None
        if frame is None or msg is None or not self.heads:
            return
        t0 = time.perf_counter()
        s = self.settings
        x = hm.preprocess(frame.image)  # a copy: what the heads see cannot change under them
        if not self.still_valid(msg):  # the camera wrote over the slot while it was read: a drop, not a detection
            self.stats["overwritten"] += 1
            return
        x = x.to(self.device, self.dtype)
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

    def ctl_heads(self) -> dict[str, str]:
        return {signal: v for signal, (_h, v) in sorted(self.heads.items())}

    def ctl_load_head(self, signal: str, version: int | None = None) -> dict[str, Any]:
        self.unloaded.discard(signal)
        v = self._load_head(signal, None if version is None else version_label(version), "ctl load_head")
        return {"signal": signal, "version": v, "heads": self.ctl_heads()}

    def ctl_unload_head(self, signal: str) -> dict[str, Any]:
        if self.heads.pop(signal, None) is None:
            raise StoreError(f"{signal} is not loaded; loaded: {', '.join(self.heads) or 'none'}")
        self.unloaded.add(signal)
        self.log.info("head_unloaded", signal=signal)
        return {"signal": signal, "heads": self.ctl_heads()}

    def ctl_promote(self, signal: str, version: int) -> dict[str, Any]:
        reg = self.store.promote(signal, version)
        self.registry_signature = None  # the next check applies it (a backbone too)
        loaded = self._load_head(signal, reg.version, "ctl promote") if signal != BACKBONE else None
        return {"signal": signal, "active": reg.version, "loaded": loaded, "reason": reg.reason,
                "heads": self.ctl_heads()}

    def ctl_rollback(self, signal: str) -> dict[str, Any]:
        reg = self.store.rollback(signal)
        self.registry_signature = None
        loaded = self._load_head(signal, reg.version, "ctl rollback") if signal != BACKBONE else None
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


def wanted_heads(configured: list[str], signals: list[str], unloaded: set[str]) -> list[str]:
    """The heads the detector follows: the configured ones, or (none configured) every signal in the
    registry; never one unloaded by command."""
    return [s for s in (configured or signals) if s not in unloaded]
