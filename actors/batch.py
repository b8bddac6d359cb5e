"""``sensorium batch KIND ...``: offline processing of recorded data, one module per kind.

Not an actor kind: the same building blocks as the actors (decoders,
segmenters, models), run in this one process as fast as the machine allows,
with no bus. Each kind's module has ``main(argv, config) -> int`` and its own
parser (prog ``sensorium batch KIND``). Add a kind with one line in
``BATCH_KINDS``.
"""

from __future__ import annotations

import argparse
import importlib

from config.schema import Config

BATCH_KINDS: dict[str, tuple[str, str]] = {
    "audio": ("actors.audio.batch", "transcripts and VAD statistics for a folder of recordings"),
}
"""Batch kind -> (module, help)."""


def main(argv: list[str], config: Config) -> int:
    parser = argparse.ArgumentParser(prog="sensorium batch", description="Offline processing of a folder of data.")
    parser.add_argument("kind", choices=sorted(BATCH_KINDS),
                        help="; ".join(f"{k}: {h}" for k, (_m, h) in sorted(BATCH_KINDS.items())))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="see 'sensorium batch KIND --help'")
    args = parser.parse_args(argv)
    module = importlib.import_module(BATCH_KINDS[args.kind][0])
    return module.main(args.rest, config)
