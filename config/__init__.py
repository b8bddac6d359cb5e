"""Configuration: the schema, the loader, and where things live at run time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bus.endpoints import Endpoints, default_runtime_dir
from config.loader import DEFAULT_PATH, ConfigError, kind_settings, load, start_order
from config.schema import KIND_SETTINGS, ActorSpec, BackoffSettings, Config, IntensitySettings


@dataclass(frozen=True)
class RuntimePaths:
    runtime_dir: Path
    """Private folder (0700) of the ipc sockets and the resolved config."""
    log_dir: Path
    endpoints: Endpoints


def runtime_paths(config: Config) -> RuntimePaths:
    runtime_dir = Path(config.bus.runtime_dir).expanduser() if config.bus.runtime_dir else default_runtime_dir()
    log_dir = Path(config.log.dir).expanduser() if config.log.dir else runtime_dir / "logs"
    endpoints = Endpoints.resolve(runtime_dir, config.bus.frontend, config.bus.backend, config.bus.control)
    return RuntimePaths(runtime_dir=runtime_dir, log_dir=log_dir, endpoints=endpoints)


__all__ = [
    "DEFAULT_PATH", "KIND_SETTINGS", "ActorSpec", "BackoffSettings", "Config", "ConfigError", "IntensitySettings",
    "RuntimePaths", "kind_settings", "load", "runtime_paths", "start_order",
]
