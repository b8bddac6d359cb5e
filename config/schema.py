"""The settings schema: every key Sensorium reads, with its default and unit.

Unknown keys are errors (``extra="forbid"``). Each actor kind has its own
settings model in ``KIND_SETTINGS``; the loader validates an actor's
``settings`` table against the model of its kind.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bus.topics import validate_prefix

ACTOR_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(@[a-z0-9_\-]+)?")
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
    backoff: BackoffSettings = BackoffSettings()
    intensity: IntensitySettings = IntensitySettings()
    settings: dict[str, Any] = {}
    """Kind-specific settings, validated against KIND_SETTINGS[kind]."""

    def kind_for(self, name: str) -> str:
        return self.kind or name.split("@", 1)[0]


class MonitorSettings(Strict):
    interval_s: float = Field(1.0, gt=0)
    """Period of monitor.health, seconds."""
    stale_after_s: float = Field(10.0, gt=0)
    """An actor silent this long is reported as stale (and raises a critical actor.heartbeat_age_s alert)."""
    prometheus_port: int = Field(-1, ge=-1, le=65535)
    """Prometheus endpoint on 127.0.0.1, TCP port; 0: any free port (named in the heartbeat); -1: off
    (default.toml turns it on at 9464)."""
    disk_path: str = ""
    """Folder whose disk is reported; '' means the current folder."""
    gpu: Literal["auto", "torch", "off"] = "auto"
    """GPU memory: auto (nvidia-smi, else torch.cuda when an NVIDIA driver is loaded), torch, or off."""
    alert_hold_s: float = Field(3.0, ge=0)
    """A value must stay beyond its threshold this long before the alert is raised, seconds."""
    clear_fraction: float = Field(0.8, gt=0, lt=1)
    """Hysteresis of latency and rate alerts: cleared at this fraction of the budget (or target / it)."""
    cpu_percent_max: float = Field(80.0, gt=0)
    """Alert when the machine, or one actor (percent of one core), uses more CPU than this, percent."""
    cpu_percent_clear: float = Field(70.0, gt=0)
    """...and clear it below this, percent."""
    memory_percent_max: float = Field(90.0, gt=0, le=100)
    """Alert when machine memory in use exceeds this, percent."""
    memory_percent_clear: float = Field(85.0, gt=0, le=100)
    """...and clear it below this, percent."""
    disk_percent_max: float = Field(95.0, gt=0, le=100)
    """Alert when the disk is fuller than this, percent."""
    disk_percent_clear: float = Field(90.0, gt=0, le=100)
    """...and clear it below this, percent."""
    rss_bytes_max: int = Field(0, ge=0)
    """Alert when one actor's resident memory exceeds this, bytes; 0: off."""
    gaps_per_s_max: float = Field(10.0, gt=0)
    """Alert when messages go missing on the bus faster than this, messages/s."""
    latency_budget_ms: dict[str, float] = {}
    """Per actor name or kind: alert when handler latency p99 exceeds this, milliseconds."""
    min_out_rate_hz: dict[str, float] = {}
    """Per actor name or kind: alert when it publishes fewer messages per second (a frame rate
    below target; heartbeats count too, 1/s), messages/s."""


class ProbeSettings(Strict):
    """A diagnostic actor: echoes messages and can act out faults for drills and tests."""

    echo: list[str] = []
    """Topic prefixes to echo back on probe.echo."""
    tick_hz: float = Field(0.0, ge=0)
    """Publish probe.tick at this rate; 0: never."""
    setup_delay_s: float = Field(0.0, ge=0)
    """Pretend setup takes this long (a slow model load)."""
    fail_setup: bool = False
    """Raise in setup: the process exits with code 1."""
    crash_after_s: float = Field(0.0, ge=0)
    """Exit with code 1 this long after ready; 0: never."""
    hang_after_s: float = Field(0.0, ge=0)
    """Stop handling anything (heartbeats included) this long after ready; 0: never."""


# -- recorder --


class RecorderSettings(Strict):
    """Records bus topics into crash-safe MCAP files (bus/recording)."""

    dir: str = ""
    """Folder of the recordings; '' means RUNTIME_DIR/recordings."""
    prefixes: list[str] = ["sensor.", "camera.", "audio.", "speech.", "gesture.", "detect."]
    """Topics (exact) or prefixes ending in '.' to record; '' (everything) is not allowed."""
    include_sys_actor: bool = True
    """Also record the supervisor's sys.actor events."""
    name_prefix: str = Field("rec", pattern=r"^[A-Za-z0-9_\-]+$")
    """Files are named NAME_PREFIX-<UTC time>-<n>.mcap."""
    flush_s: float = Field(1.0, gt=0, le=60)
    """Close the open chunk and fsync at least this often, seconds: a crash loses at most this much."""
    fsync: bool = True
    """fsync at each flush (false: survives a process crash, not a power cut)."""
    compression: Literal["none", "lz4", "zstd"] = "none"
    """Chunk compression; none keeps up with camera frames on 2 cores."""
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=0)
    """Rotate to a new file past this size, bytes; 0: never."""
    max_file_s: float = Field(600.0, ge=0)
    """Rotate to a new file after this long, seconds; 0: never."""
    max_total_bytes: int = Field(4 * 1024 * 1024 * 1024, ge=0)
    """Retention: delete the oldest recordings beyond this total, bytes; 0: no limit."""
    max_age_s: float = Field(7 * 86400.0, ge=0)
    """Retention: delete recordings older than this, seconds; 0: no limit."""
    min_free_bytes: int = Field(256 * 1024 * 1024, ge=0)
    """Stop recording (alert, file closed) when the disk has less free space than this, bytes."""
    queue_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    """Messages waiting for the writer thread, bytes; beyond it they are dropped (and show as gaps)."""
    rcv_hwm: int = Field(100_000, ge=1)
    """High-water mark of the recorder's sockets, messages (raised above bus.hwm so bursts wait)."""

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, prefixes: list[str]) -> list[str]:
        for p in prefixes:
            if p == "":
                raise ValueError("'' (everything) would record every heartbeat and frame: name the areas")
            validate_prefix(p)
        return prefixes


KIND_SETTINGS: dict[str, type[Strict]] = {
    "monitor": MonitorSettings,
    "probe": ProbeSettings,
    "recorder": RecorderSettings,
}


class Config(Strict):
    bus: BusSettings = BusSettings()
    log: LogSettings = LogSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    actor_defaults: dict[str, Any] = {}
    """Keys merged under every [actors.NAME] table (restart, backoff, ...)."""
    actors: dict[str, ActorSpec] = {}

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
