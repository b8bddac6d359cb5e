"""Run one actor: ``python -m actors KIND --name NAME [-c CONFIG]``.

Exit codes: 0 clean stop, 1 failure (setup or fatal error), 2 bad config.
"""

from __future__ import annotations

import argparse
import json
import sys

from actors import load_kind
from bus.envelope import Limits
from config import ConfigError, kind_settings, load, runtime_paths
from config.logging import configure_logging
from config.schema import ActorSpec


def check_kinds(kinds: list[str]) -> int:
    results = {}
    for kind in kinds:
        try:
            load_kind(kind)
            results[kind] = "ok"
        except Exception as exc:  # noqa: BLE001 - the report is the point: any import error counts
            results[kind] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(results))
    return 0 if all(v == "ok" for v in results.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors", description="Run one Sensorium actor.")
    parser.add_argument("kind", nargs="+", help="the kind to run (with --check: every kind to import)")
    parser.add_argument("--name", help="instance name (default: the kind)")
    parser.add_argument("-c", "--config", help="config file (TOML, or the supervisor's resolved JSON)")
    parser.add_argument("--check", action="store_true",
                        help="import each KIND and print {kind: 'ok' or the error} as JSON, then exit")
    args = parser.parse_args(argv)
    if args.check:
        return check_kinds(args.kind)
    if len(args.kind) != 1:
        parser.error("give exactly one KIND to run")
    args.kind = args.kind[0]
    name = args.name or args.kind
    try:
        config = load(args.config)
        spec = config.actors.get(name, ActorSpec(kind=args.kind))
        if spec.kind_for(name) != args.kind:
            raise ConfigError([f"actors.{name}.kind is {spec.kind_for(name)!r}, not {args.kind!r}"])
        cls = load_kind(args.kind)
        settings = kind_settings(spec, name)
    except (ConfigError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    configure_logging(name, config.log.level)
    paths = runtime_paths(config)
    actor = cls(name, settings, paths.endpoints, hwm=config.bus.hwm,
                limits=Limits(max_message_bytes=config.bus.max_message_bytes), heartbeat_s=spec.heartbeat_s)
    return actor.run()


if __name__ == "__main__":
    sys.exit(main())
