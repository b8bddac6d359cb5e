"""Run one actor: ``python -m actors KIND --name NAME [-c CONFIG]``.

Exit codes: 0 clean stop, 1 failure (setup or fatal error), 2 bad config.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from actors.registry import Registry, UnknownKind
from bus.endpoints import runtime_paths
from bus.envelope import Limits
from bus.senders import set_origin_host
from config.loader import ConfigError, load
from config.logging import configure_logging
from config.schema import ActorSpec


def check_kinds(registry: Registry, kinds: list[str]) -> int:
    """Import each kind's actor class as a real start would; print {kind: 'ok' or the error} as JSON."""
    results = {}
    for kind in kinds:
        try:
            registry.spec(kind).actor_class()
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
    try:
        config = load(args.config, catalog=Registry.for_config)
        registry = Registry.for_config(config)
        if args.check:
            return check_kinds(registry, args.kind)
        if len(args.kind) != 1:
            parser.error("give exactly one KIND to run")
        kind = args.kind[0]
        name = args.name or kind
        actor_spec = config.actors.get(name, ActorSpec(kind=kind))
        if actor_spec.kind_for(name) != kind:
            raise ConfigError([f"actors.{name}.kind is {actor_spec.kind_for(name)!r}, not {kind!r}"])
        spec = registry.spec(kind)
        settings = spec.typed_settings(actor_spec.settings)
        cls = spec.actor_class()
    except (ConfigError, UnknownKind, ValueError) as exc:
        print(f"{args.name or args.kind[0]}: {exc}", file=sys.stderr)
        return 2
    configure_logging(name, config.log.level)
    set_origin_host(config.bus.host)
    paths = runtime_paths(config)
    actor = cls(name, settings, paths.endpoints, hwm=config.bus.hwm,
                limits=Limits(max_message_bytes=config.bus.max_message_bytes), heartbeat_s=actor_spec.heartbeat_s,
                shm_threshold=config.bus.shm_threshold_bytes, shm_slots=config.bus.shm_slots)
    return actor.run()


def exit_now(code: int) -> None:
    """End the process without the interpreter's finalization.

    By the time ``run()`` returns, teardown has released what setup took and
    the sockets are closed. What is left is Python's own shutdown, which for
    the model kinds means TensorFlow and torch joining their thread pools and
    freeing every module: 1-2 s on an idle 2-core machine, past the 5 s stop
    grace period under load (the supervisor then sent SIGTERM). Nothing of
    ours needs it, so flush the output and leave.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
