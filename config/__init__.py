"""Configuration: the schema, the loader, and the storage rules every part follows.

This package imports nothing of the project (DESIGN.md, "Layout"): the
catalogue of actor kinds whose settings it validates is handed to ``load``
by the caller (``actors.registry.load_config``).
"""

from __future__ import annotations

from config.loader import DEFAULT_PATH, ConfigError, KindCatalog, load, start_order
from config.schema import ActorSpec, BackoffSettings, Config, IntensitySettings, Strict

__all__ = [
    "DEFAULT_PATH", "ActorSpec", "BackoffSettings", "Config", "ConfigError", "IntensitySettings", "KindCatalog",
    "Strict", "load", "start_order",
]
