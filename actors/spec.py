"""What a kind declares about itself: one ``KindSpec`` per kind package.

A kind is one package under ``actors/`` (or anywhere, for kinds that live
outside the tree) whose ``__init__`` exports ``SPEC``: the actor class (as a
``"module:Class"`` path, imported only when an actor of the kind runs), the
settings model, the preflight checks ``sensorium validate`` runs, the CLI
commands it adds, the bodies it publishes, and one line of description.
Everything else (the kind table, settings validation, ``validate``, the
``sensorium`` command groups) is derived from the specs in the registry
(``actors/registry.py``).

Importing a kind package must stay cheap: its ``__init__`` imports its
settings and the bus bodies, never torch or TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Generic, Literal, TypeVar

from pydantic import BaseModel

from bus.cli import CliCommand
from bus.messages import Body

if TYPE_CHECKING:
    from actors.base import Actor

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class Check:
    """One line of ``sensorium validate``."""

    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str


Preflight = Callable[[str, S], list[Check]]
"""A kind's own check: (actor name, its typed settings) -> lines for ``validate``. It must not load models."""


@dataclass(frozen=True)
class Extra:
    """An optional part a kind needs: the pip extra and the modules it brings."""

    name: str
    """The extra in setup.cfg, e.g. ``vision`` (``pip install -e '.[vision]'``)."""
    modules: tuple[str, ...]
    """Top-level modules that must be importable, e.g. ``("torch", "cv2")``."""

    def missing(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]


@dataclass(frozen=True)
class KindSpec(Generic[S]):
    """Everything the runtime, the supervisor and the CLI need to know about one kind."""

    name: str
    """The kind, as written in ``[actors.NAME] kind = ...`` or before '@' in an actor name."""
    description: str
    """One line for ``sensorium kinds`` and the docs."""
    actor: str
    """``"module:Class"`` of the actor class; imported only when the kind runs."""
    settings: type[S]
    """The pydantic model of ``[actors.NAME.settings]``."""
    publishes: tuple[type[Body], ...] = ()
    """Typed bodies of the topics the kind publishes (schemas and topic tools list them)."""
    preflight: tuple[Preflight, ...] = ()
    """Checks ``sensorium validate`` runs for each enabled actor of the kind."""
    commands: tuple[CliCommand, ...] = ()
    """``sensorium`` subcommands the kind adds (``models``, ``gesture``, ``batch audio``...)."""
    extras: tuple[Extra, ...] = ()
    """Optional packages the actor needs; ``validate`` names the extra to install when one is missing."""
    doc: str = field(default="", compare=False)
    """Where to read more (a README section), for ``sensorium kinds``."""

    def actor_class(self) -> "type[Actor[S]]":
        """Import and return the actor class (this may import torch or TensorFlow)."""
        module, _, cls = self.actor.partition(":")
        return getattr(importlib.import_module(module), cls)

    def typed_settings(self, table: dict[str, object]) -> S:
        """``[actors.NAME.settings]`` as the kind's model; raises pydantic.ValidationError."""
        return self.settings.model_validate(table)
