"""Help that can be trusted: every parser of every ``sensorium`` command describes itself, every
positional and flag has help text, and no help shows reStructuredText marks."""

from __future__ import annotations

import argparse
import re

import pytest

import supervisor
from actors.registry import Registry

RST = re.compile(r"``|:[a-z]+:`|`")
"""Double backticks, roles such as :func:`x`, any backtick quoting (help is plain text)."""


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parser_of(argv: list[str], monkeypatch) -> argparse.ArgumentParser:
    """The parser ``sensorium ARGV`` builds, caught as it starts parsing (nothing runs)."""

    prog = " ".join(["sensorium", *argv])
    original = argparse.ArgumentParser.parse_known_args

    def capture(self, *args, **kwargs):
        if self.prog == prog:
            raise _Captured(self)
        return original(self, *args, **kwargs)  # e.g. the group's parser, picking the member

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        try:
            supervisor.main(argv)
        except _Captured as caught:
            return caught.parser
    raise AssertionError(f"sensorium {' '.join(argv)} built no parser")


def walk(parser: argparse.ArgumentParser):
    """The parser and every sub-command parser under it, with the help its parent gives each."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{sub.prog}: no help line in {parser.prog}'s list of commands"
                yield from walk(sub)


def command_lines() -> list[list[str]]:
    """Every command: sensorium itself, its own commands, the delegated ones, each group and its members."""
    lines: list[list[str]] = [[]]
    lines += [[name] for name in supervisor.OWN_COMMANDS]
    groups = set()
    for command in supervisor.delegated_commands(Registry.for_config()):
        if command.group:
            groups.add(command.group)
            lines.append([command.group, command.name])
        else:
            lines.append([command.name])
    return lines + [[group] for group in sorted(groups)]


def problems_of(parser: argparse.ArgumentParser) -> list[str]:
    found = []
    if not (parser.description or "").strip():
        found.append(f"{parser.prog}: no description")
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            found.append(f"{parser.prog} {name}: no help")
    text = parser.format_help()
    for mark in RST.findall(text):
        found.append(f"{parser.prog}: reStructuredText {mark!r} in its help")
    return found


def test_the_walk_covers_every_command():
    lines = command_lines()
    assert ["status"] in lines and ["ctl"] in lines and ["batch", "audio"] in lines and ["config"] in lines
    assert ["batch"] in lines and ["models"] in lines and ["gesture"] in lines


@pytest.mark.parametrize("argv", command_lines(), ids=lambda argv: " ".join(argv) or "sensorium")
def test_every_parser_of_the_command_has_help(argv, monkeypatch):
    parsers = list(walk(parser_of(argv, monkeypatch)))
    problems = [p for parser in parsers for p in problems_of(parser)]
    assert not problems, "\n".join(problems)
