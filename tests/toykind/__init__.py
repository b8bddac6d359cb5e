"""A kind that lives outside ``actors/``: registered by ``[kinds] toy = "tests.toykind:SPEC"`` in a config.

The registry test runs it under a real supervisor; nothing else in the tree names it.
"""

from __future__ import annotations

from pydantic import Field

from actors.spec import Check, KindSpec
from config.schema import Strict


class ToySettings(Strict):
    factor: int = Field(2, ge=1)
    """What ``toy.in`` numbers are multiplied by."""


def check_factor(name: str, settings: ToySettings) -> list[Check]:
    return [Check(f"{name} factor", "ok" if settings.factor < 100 else "warn", f"x{settings.factor}")]


SPEC = KindSpec(
    name="toy",
    description="multiplies the n of toy.in by its factor onto toy.out",
    actor="tests.toykind.actor:ToyActor",
    settings=ToySettings,
    preflight=(check_factor,),
)
