"""``sensorium config show``: the resolved configuration as JSON."""

from __future__ import annotations

import argparse

from config.schema import Config


def main(argv: list[str], config: Config) -> int:
    parser = argparse.ArgumentParser(prog="sensorium config", description="Configuration tools.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("show", help="print the resolved configuration as JSON",
                   description="Print the resolved configuration (the embedded default, the user file, then "
                   "SENSORIUM__SECTION__KEY environment variables) as JSON, every actor's settings with their "
                   "defaults filled in.")
    parser.parse_args(argv)
    print(config.model_dump_json(indent=2))
    return 0
