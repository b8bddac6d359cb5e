"""Actors: the runtime (``Actor``, ``KindSpec``, the registry) and one package per kind.

``python -m actors KIND --name NAME [-c CONFIG]`` runs one instance. The kind
packages (``actors/<kind>/``) export one ``SPEC`` each; ``actors/lib/`` is the
shared library that belongs to no kind. Kinds never import each other.
"""

from __future__ import annotations

from actors.base import Actor, ActorExit, handles
from actors.registry import BUILTIN_KINDS, Registry, UnknownKind, load_config
from actors.spec import Check, Extra, KindSpec

__all__ = [
    "BUILTIN_KINDS", "Actor", "ActorExit", "Check", "Extra", "KindSpec", "Registry", "UnknownKind", "handles",
    "load_config",
]
