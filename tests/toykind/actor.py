"""The toy kind's actor: ``toy.in`` {n} -> ``toy.out`` {n: n * factor, by: name}."""

from __future__ import annotations

from actors.base import Actor, handles
from bus.envelope import Message
from tests.toykind import ToySettings


class ToyActor(Actor[ToySettings]):
    kind = "toy"

    @handles("toy.in")
    def on_toy_in(self, msg: Message) -> None:
        self.publish("toy.out", {"n": msg.body["n"] * self.settings.factor, "by": self.name})
