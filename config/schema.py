"""The settings schema: the keys every run reads, with their defaults and units.

Unknown keys are errors (``extra="forbid"``), and types are strict where
leniency hides mistakes: a boolean is not a number (``hwm = true`` is refused)
and a number is not a boolean; an int is still a float (``max_fps = 5``), and
an array is still a tuple (actors read the supervisor's resolved config as
JSON). Each actor kind declares the model of its own ``settings`` table in its
spec (``actors/<kind>/settings.py``, derived from ``Strict``); the loader
validates an actor's table against it through the catalogue of kinds it is
given (``config.loader.KindCatalog``), so this package imports nothing of the
project.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, PrivateAttr
from pydantic_core import CoreSchema

from config.paths import Locations, default_endpoint

ACTOR_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(@[a-z0-9_\-]+)?")
KIND_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
RESERVED_NAMES = {"supervisor"}
STRICT_SCALARS = {"int", "float", "bool"}
"""Core schema types validated strictly: no bool for a number, no number or string for a bool."""


def _is_strict_model(cls: Any) -> bool:
    return isinstance(cls, type) and any(c.__module__ == __name__ and c.__name__ == "Strict" for c in cls.__mro__)


def _strict_scalars(schema: Any) -> None:
    """Mark every int, float and bool in a core schema strict (in place), nested ones included."""
    if isinstance(schema, dict):
        if schema.get("type") in STRICT_SCALARS:
            schema["strict"] = True
        if schema.get("type") == "model" and not _is_strict_model(schema.get("cls")):
            return  # another model's schema, with its own rules
        for value in schema.values():
            _strict_scalars(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict_scalars(value)


class Strict(BaseModel):
    """Base of every settings model: unknown keys refused, scalar types strict (see the module doc)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema = handler(source)
        _strict_scalars(schema)
        return schema

    def default_paths(self, where: Locations) -> dict[str, Any]:
        """Setting -> what its '' (or relative) path stands for at run time; override where a model has such
        settings. Only ``sensorium config show`` uses it: the actors keep reading the settings as written."""
        return {}

    def resolved(self, where: Locations) -> dict[str, Any]:
        """The settings as JSON values, every '' that means a default location replaced by that location."""
        out = self.model_dump(mode="json")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Strict):
                out[name] = value.resolved(where)
            elif isinstance(value, dict) and any(isinstance(v, Strict) for v in value.values()):
                out[name] = {k: v.resolved(where) if isinstance(v, Strict) else out[name][k] for k, v in value.items()}
        out.update(self.default_paths(where))
        return out


def _actor_name(name: str) -> str:
    if name in RESERVED_NAMES:
        raise ValueError(f"actor name {name!r} is reserved (the supervisor's own log and heartbeat use it)")
    if not ACTOR_NAME_RE.fullmatch(name):
        raise ValueError("an actor name must look like 'kind' or 'kind@instance' "
                         "(lowercase letters, digits and '_'; after '@' also '-')")
    return name


def _kind_name(kind: str) -> str:
    if not KIND_NAME_RE.fullmatch(kind):
        raise ValueError("a kind name must be lowercase letters, digits and '_'")
    return kind


def _kind_target(target: str) -> str:
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ValueError("expected 'module:ATTRIBUTE', e.g. 'mypkg.kind:SPEC'")
    return target


ActorName = Annotated[str, AfterValidator(_actor_name)]
KindName = Annotated[str, AfterValidator(_kind_name)]
KindTarget = Annotated[str, AfterValidator(_kind_target)]


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
    shm_threshold_bytes: int = Field(64 * 1024, ge=0)
    """Arrays of this many bytes or more go to local subscribers through the publisher's shared memory
    (docs/wire.md, section 12), bytes; 0: never (always inline)."""
    shm_slots: int = Field(8, ge=1, le=1024)
    """Slots of each publisher's shared-memory ring: a local reader more than this many large arrays
    behind counts drops."""
    host: str = Field("", max_length=63, pattern=r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
    """This host's name in message headers and between bridges; '' means the machine's host name
    (two hosts joined by bridges must have different names)."""

    def default_paths(self, where: Locations) -> dict[str, Any]:
        out: dict[str, Any] = {"runtime_dir": str(where.runtime_dir)}
        for role in ("frontend", "backend", "control"):
            if not getattr(self, role):
                out[role] = default_endpoint(where.runtime_dir, role)
        return out


class LogSettings(Strict):
    dir: str = ""
    """Folder of the rotating log files; '' means RUNTIME_DIR/logs."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    max_bytes: int = Field(10_000_000, ge=10_000)
    """Size of one log file before it rotates, bytes."""
    backups: int = Field(5, ge=0)
    """Rotated files kept per actor."""

    def default_paths(self, where: Locations) -> dict[str, Any]:
        return {"dir": str(where.log_dir)}


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
    _typed_settings: BaseModel | None = PrivateAttr(None)
    """``settings`` as the kind's model, set by the loader when it knew the kind (for ``config show``)."""

    def kind_for(self, name: str) -> str:
        return self.kind or name.split("@", 1)[0]

    def resolved(self, where: Locations) -> dict[str, Any]:
        out = super().resolved(where)
        if isinstance(self._typed_settings, Strict):
            out["settings"] = self._typed_settings.resolved(where)
        return out


class Config(Strict):
    replace_default_actors: bool = False
    """false: the user file's [actors.NAME] tables merge over the default pipeline's actors (key by key) and add
    new ones; true: they are the whole pipeline, the default's actors do not join."""
    bus: BusSettings = BusSettings()
    log: LogSettings = LogSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    actor_defaults: dict[str, Any] = {}
    """Keys merged under every [actors.NAME] table (restart, backoff, ...); the loader checks them as ActorSpec keys."""
    kinds: dict[KindName, KindTarget] = {}
    """Kinds that live outside the tree: kind name -> "module:ATTRIBUTE" of its KindSpec (the module must be
    importable, e.g. on PYTHONPATH). Python packages can register kinds through the ``sensorium.kinds`` entry
    point group instead."""
    actors: dict[ActorName, ActorSpec] = {}
    _sources: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)
    """Key path -> where a value that is not the default came from (a file's path, ``environment VAR``)."""

    def enabled_actors(self) -> dict[str, ActorSpec]:
        return {n: s for n, s in self.actors.items() if s.enabled}

    def source_of(self, path: tuple[str, ...]) -> str:
        """Where the value at ``path`` came from: a file's path, ``environment VAR``, or ``default``."""
        for n in range(len(path), 0, -1):
            if path[:n] in self._sources:
                return self._sources[path[:n]]
        return "default"

    def locations(self) -> Locations:
        """The runtime and log folders this config resolves to."""
        return Locations.of(self.bus.runtime_dir, self.log.dir)

    def resolved(self, where: Locations | None = None) -> dict[str, Any]:
        """The whole config as JSON values with every default location filled in (``sensorium config show``)."""
        out = super().resolved(where or self.locations())
        for name, spec in self.actors.items():
            out["actors"][name]["kind"] = spec.kind_for(name)
        return out
