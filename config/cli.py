"""``sensorium config show``: the resolved configuration as JSON, or where each value came from."""

from __future__ import annotations

import argparse
import json
from typing import Any

from config.loader import dotted
from config.schema import Config


def leaves(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, value) of every value in ``data``; an empty table counts as one value."""
    if isinstance(data, dict) and data:
        return [leaf for key, value in data.items() for leaf in leaves(value, prefix + (str(key),))]
    return [(prefix, data)]


def source_lines(config: Config, resolved: dict[str, Any]) -> list[str]:
    """One line per value: ``key = value  # source`` (default, the file's path, or environment VAR)."""
    rows = [(dotted(path), json.dumps(value), config.source_of(path)) for path, value in leaves(resolved)]
    width = min(max(len(k) + len(v) for k, v, _ in rows) + 3, 70)
    return [f"{f'{k} = {v}':<{width}}  # {src}" for k, v, src in rows]


def main(argv: list[str], config: Config) -> int:
    parser = argparse.ArgumentParser(prog="sensorium config", description="Configuration tools.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION", help="show: the resolved configuration")
    show = sub.add_parser(
        "show", help="print the resolved configuration (JSON), or where each value came from",
        description="Print the resolved configuration: the embedded default, the user file (-c FILE or "
        "SENSORIUM_CONFIG) merged over it, then SENSORIUM__SECTION__KEY environment variables; every actor's "
        "settings with their defaults filled in, and every '' that stands for a default location (runtime "
        "folder, log folder, endpoints, model and store paths) replaced by that location.")
    show.add_argument("--sources", action="store_true",
                      help="print one line per value, 'key = value  # source', where source is 'default', the "
                      "user file's path, or 'environment VARIABLE'")
    show.add_argument("--as-written", action="store_true",
                      help="print the values as configured ('' kept where a default location is meant) instead "
                      "of the resolved ones")
    args = parser.parse_args(argv)
    resolved = config.model_dump(mode="json") if args.as_written else config.resolved()
    if args.sources:
        print("\n".join(source_lines(config, resolved)))
    else:
        print(json.dumps(resolved, indent=2))
    return 0
