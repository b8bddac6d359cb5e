"""The registry of actor kinds: the one list, from which everything else is derived.

A kind is known in one of three ways:

* built in: one line in ``BUILTIN_KINDS`` (the package under ``actors/``);
* installed: a Python package that declares an entry point in the group
  ``sensorium.kinds`` (``toy = "mypkg.toy:SPEC"``);
* configured: ``[kinds] toy = "mypkg.toy:SPEC"`` in the config file (the
  module must be importable, e.g. on PYTHONPATH).

Each target names a ``KindSpec`` (``actors/spec.py``). The registry imports a
spec module only when that kind is asked for, and a spec module imports only
its settings and bodies: listing kinds, ``status`` and ``config show`` never
import torch or TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Mapping

from pydantic import BaseModel

from actors.spec import KindSpec
from bus.cli import CliCommand
from config.loader import ConfigError, load
from config.schema import Config

BUILTIN_KINDS: dict[str, str] = {
    "monitor": "actors.monitor:SPEC",
    "probe": "actors.probe:SPEC",
    "camera": "actors.camera:SPEC",
    "detector": "actors.detector:SPEC",
    "audio_source": "actors.audio_source:SPEC",
    "vad": "actors.vad:SPEC",
    "speech": "actors.speech:SPEC",
    "audio_events": "actors.audio_events:SPEC",
    "sensor": "actors.sensor:SPEC",
    "gesture": "actors.gesture:SPEC",
    "recorder": "actors.recorder:SPEC",
    "intent": "actors.intent:SPEC",
    "tracker": "actors.tracker:SPEC",
    "bridge": "actors.bridge:SPEC",
    "console": "actors.console:SPEC",
    "foxglove": "actors.foxglove:SPEC",
}
"""Kind -> ``"module:SPEC"`` of the kinds shipped in ``actors/``."""

ENTRY_POINT_GROUP = "sensorium.kinds"


class UnknownKind(KeyError):
    """A kind no registry entry names."""

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.known = known

    def __str__(self) -> str:
        return f"unknown actor kind {self.kind!r}; expected one of {', '.join(sorted(self.known))}"


class Registry:
    """Kind name -> its spec, imported on first use."""

    def __init__(self, targets: Mapping[str, tuple[str, str]]) -> None:
        """``targets``: kind -> (``"module:ATTRIBUTE"``, where it was declared, for error messages)."""
        self._targets = dict(targets)
        self._specs: dict[str, KindSpec] = {}

    @classmethod
    def for_config(cls, config: Config | None = None) -> "Registry":
        """Built-in kinds, then installed ones (entry points), then the config's ``[kinds]`` table."""
        targets = {kind: (target, "actors/registry.py") for kind, target in BUILTIN_KINDS.items()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            targets[ep.name] = (ep.value, f"entry point {ep.name} of {ep.dist.name if ep.dist else '?'}")
        if config is not None:
            for kind, target in config.kinds.items():
                targets[kind] = (target, f"kinds.{kind}")
        return cls(targets)

    def kind_names(self) -> list[str]:
        return list(self._targets)

    def spec(self, kind: str) -> KindSpec:
        """The spec of ``kind``; raises UnknownKind, or ConfigError when a declared spec cannot be loaded."""
        spec = self._specs.get(kind)
        if spec is not None:
            return spec
        if kind not in self._targets:
            raise UnknownKind(kind, self.kind_names())
        target, declared = self._targets[kind]
        module, _, attr = target.partition(":")
        try:
            spec = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError([f"{declared} = {target!r}: cannot load the kind spec: {exc}"]) from exc
        if not isinstance(spec, KindSpec):
            raise ConfigError([f"{declared} = {target!r}: {type(spec).__name__} is not a KindSpec"])
        if spec.name != kind:
            raise ConfigError([f"{declared} = {target!r}: the spec is named {spec.name!r}, not {kind!r}"])
        self._specs[kind] = spec
        return spec

    def settings_model(self, kind: str) -> type[BaseModel] | None:
        try:
            return self.spec(kind).settings
        except UnknownKind:
            return None

    def specs(self) -> list[KindSpec]:
        """Every spec, in registration order (imports every spec module: cheap by contract)."""
        return [self.spec(kind) for kind in self._targets]

    def commands(self) -> list[CliCommand]:
        """The CLI commands of every kind."""
        return [command for spec in self.specs() for command in spec.commands]

    def settings_for(self, config: Config, name: str) -> BaseModel:
        """The typed settings of actor ``name`` of ``config``."""
        actor = config.actors[name]
        return self.spec(actor.kind_for(name)).typed_settings(actor.settings)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The resolved configuration with every actor's kind known and its settings validated."""
    return load(path, environ, catalog=Registry.for_config)
