"""``sensorium`` subcommands: how a command is declared, and the bus's own.

A command is a ``CliCommand``: its name, one line of help, and the
``"module:function"`` of its ``main(argv, config) -> int``, which owns its
argparse parser (prog ``sensorium NAME``). The module is imported only when
the command runs, so ``sensorium status`` never imports torch or TensorFlow.
The bus tools are declared here; kinds declare theirs in their spec
(``actors/spec.py``); ``supervisor.main`` assembles them all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from config.schema import Config

Main = Callable[[list[str], Config], int]


@dataclass(frozen=True)
class CliCommand:
    name: str
    """``sensorium NAME``; with a group, ``sensorium GROUP NAME``."""
    help: str
    """One line, shown by ``sensorium --help`` (and ``sensorium GROUP --help``)."""
    main: str
    """``"module:function"``: ``function(argv, config) -> int``."""
    group: str = ""
    """Commands of one group share a word: ``batch`` holds ``batch audio`` and ``batch events``."""

    def load(self) -> Main:
        module, _, function = self.main.partition(":")
        return getattr(importlib.import_module(module), function)

    def run(self, argv: list[str], config: Config) -> int:
        return self.load()(argv, config)


BUS_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand("tap", "print bus messages as JSON lines (topic, src, seq, ts, body)", "bus.tools:tap_main"),
    CliCommand("inject", "publish a message built from JSON onto the bus", "bus.tools:inject_main"),
    CliCommand("ctl", "send one actor a command (ping, stats, stop, its kind's) and print its reply",
               "bus.tools:ctl_main"),
    CliCommand("record", "record bus topics to an MCAP file", "bus.recording.record:main"),
    CliCommand("replay", "publish a recording onto the bus again", "bus.recording.replay:main"),
    CliCommand("info", "topics, counts, rates, duration, gaps and damage of a recording", "bus.recording.info:main"),
    CliCommand("topic", "live topics: list, hz, bw, info (publishers, subscribers), schema",
               "bus.introspect:main"),
    CliCommand("keys", "this host's CURVE keypair and the trusted peer keys: init, show, trust, untrust, list",
               "bus.security:main"),
    CliCommand("top", "live table of the actors and their figures (from monitor.health)", "bus.top:main"),
)
