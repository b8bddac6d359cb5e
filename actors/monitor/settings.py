"""Settings of the monitor kind: ``[actors.monitor.settings]``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from config.paths import Locations
from config.schema import Strict


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

    def default_paths(self, where: Locations) -> dict[str, Any]:
        # '' is the actor's working folder: the repository root under the supervisor.
        return {"disk_path": str(where.resolve(self.disk_path) if self.disk_path else where.repo_root)}
