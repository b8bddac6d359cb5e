"""The settings schema: the keys every run reads, with their defaults and units.

Unknown keys are errors (``extra="forbid"``). Each actor kind declares the
model of its own ``settings`` table in its spec (``actors/<kind>/settings.py``);
the loader validates an actor's table against it through the catalogue of
kinds it is given (``config.loader.KindCatalog``), so this package imports
nothing of the project.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ACTOR_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(@[a-z0-9_\-]+)?")
KIND_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
RESERVED_NAMES = {"supervisor"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class BusSettings(Strict):
    runtime_dir: str = ""
    """Folder of the ipc sockets, mode 0700; '' means $XDG_RUNTIME_DIR/sensorium or /tmp/sensorium-UID."""
    frontend: str = ""
    """Endpoint publishers connect to; '' means ipc://RUNTIME_DIR/pub.sock."""
    backend: str = ""
    """Endpoint subscribers connect to; '' means ipc://RUNTIME_DIR/sub.sock."""
    control: str = ""
    """The supervisor's control endpoint; '' means ipc://RUNTIME_DIR/control.sock."""
    hwm: int = Field(10_000, ge=1)
    """High-water mark of every bus socket, messages."""
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest message accepted, bytes (all frames)."""


class LogSettings(Strict):
    dir: str = ""
    """Folder of the rotating log files; '' means RUNTIME_DIR/logs."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    max_bytes: int = Field(10_000_000, ge=10_000)
    """Size of one log file before it rotates, bytes."""
    backups: int = Field(5, ge=0)
    """Rotated files kept per actor."""


class SupervisorSettings(Strict):
    term_wait_s: float = Field(3.0, gt=0)
    """After SIGTERM, seconds to wait before SIGKILL."""
    tick_s: float = Field(0.05, gt=0, le=1)
    """Period of the supervision loop, seconds."""


class BackoffSettings(Strict):
    initial_s: float = Field(0.5, ge=0)
    """First restart delay, seconds."""
    factor: float = Field(2.0, ge=1)
    """Each further consecutive restart waits this many times longer."""
    max_s: float = Field(30.0, ge=0)
    """Cap on the delay, seconds."""
    jitter: float = Field(0.1, ge=0, le=1)
    """Random spread, a fraction of the delay (0.1: +/-10%)."""
    reset_after_s: float = Field(30.0, ge=0)
    """Seconds of healthy running after which the delay starts again from initial_s."""


class IntensitySettings(Strict):
    max_restarts: int = Field(5, ge=0)
    """Restarts allowed within window_s; one more opens the circuit (FAILED)."""
    window_s: float = Field(60.0, gt=0)
    recovery_s: float = Field(30.0, ge=0)
    """Seconds a FAILED actor waits before its one half-open try."""


class ActorSpec(Strict):
    """How to run and supervise one actor instance (an OTP child spec)."""

    kind: str = ""
    """Actor kind; '' means the part of the name before '@'."""
    enabled: bool = True
    """false: configured but not started with the rest; `sensorium start NAME` starts it."""
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    """permanent: always restart; transient: only after a failure; temporary: never."""
    shutdown_s: float = Field(5.0, gt=0)
    """Grace period between the stop request and SIGTERM, seconds."""
    after: list[str] = []
    """Actors that must be ready before this one starts (stopped after it)."""
    start_timeout_s: float = Field(30.0, gt=0)
    """Seconds from spawn to the first ready heartbeat (covers model loading)."""
    liveness_timeout_s: float = Field(5.0, gt=0)
    """Seconds without a heartbeat after which a running actor counts as hung."""
    heartbeat_s: float = Field(1.0, gt=0)
    """Heartbeat period, seconds."""
    max_rss_bytes: int = Field(0, ge=0)
    """Memory limit: a heartbeat reporting a resident set above it makes the supervisor kill and restart the
    actor (reason "memory limit") and raise a ``monitor.alert`` (metric ``actor.memory_limit``); 0: no limit."""
    backoff: BackoffSettings = BackoffSettings()
    intensity: IntensitySettings = IntensitySettings()
    settings: dict[str, Any] = {}
    """Kind-specific settings, validated against the settings model of the kind's spec."""

    def kind_for(self, name: str) -> str:
        return self.kind or name.split("@", 1)[0]


class Config(Strict):
    bus: BusSettings = BusSettings()
    log: LogSettings = LogSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    actor_defaults: dict[str, Any] = {}
    """Keys merged under every [actors.NAME] table (restart, backoff, ...)."""
    kinds: dict[str, str] = {}
    """Kinds that live outside the tree: kind name -> "module:ATTRIBUTE" of its KindSpec (the module must be
    importable, e.g. on PYTHONPATH). Python packages can register kinds through the ``sensorium.kinds`` entry
    point group instead."""
    actors: dict[str, ActorSpec] = {}

    @field_validator("kinds")
    @classmethod
    def _kind_paths(cls, kinds: dict[str, str]) -> dict[str, str]:
        for kind, target in kinds.items():
            if not KIND_NAME_RE.fullmatch(kind):
                raise ValueError(f"kind name {kind!r} must be lowercase letters, digits and '_'")
            module, _, attr = target.partition(":")
            if not module or not attr:
                raise ValueError(f"kinds.{kind} = {target!r}: expected 'module:ATTRIBUTE', e.g. 'mypkg.kind:SPEC'")
        return kinds

    @field_validator("actors")
    @classmethod
    def _names(cls, actors: dict[str, ActorSpec]) -> dict[str, ActorSpec]:
        for name in actors:
            if name in RESERVED_NAMES:
                raise ValueError(f"actor name {name!r} is reserved (the supervisor's own log and heartbeat use it)")
            if not ACTOR_NAME_RE.fullmatch(name):
                raise ValueError(f"actor name {name!r} must look like 'kind' or 'kind@instance' "
                                 "(lowercase letters, digits, '_')")
        return actors

    def enabled_actors(self) -> dict[str, ActorSpec]:
        return {n: s for n, s in self.actors.items() if s.enabled}
