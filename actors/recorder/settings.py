"""Settings of the recorder kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from bus.topics import validate_prefix
from config.paths import Locations
from config.schema import Strict


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

    def default_paths(self, where: Locations) -> dict[str, Any]:
        return {"dir": str(where.resolve(self.dir) if self.dir else where.runtime_dir / "recordings")}
