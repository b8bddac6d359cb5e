"""``supervisor.py`` with one fault put in: SIGINT arrives while it writes the log line of an actor's move to running.

The handler then runs inside structlog's print (which holds the log's lock)
and inside a watcher's transition. Arguments are the supervisor's own
(``run -c CONFIG``). Used by test_signals.py.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

import supervisor

_configure_logging = supervisor.configure_logging


def _configure_with_fault(actor: str, level: str = "info", also: Callable[[str], None] | None = None) -> None:
    raised: list[str] = []

    def sink(line: str) -> None:
        if also is not None:
            also(line)
        if '"actor_transition"' in line and '"to": "running"' in line and not raised:
            raised.append(line)
            os.kill(os.getpid(), signal.SIGINT)  # its Python handler runs at the next bytecode: here

    _configure_logging(actor, level, also=sink)


if __name__ == "__main__":
    supervisor.configure_logging = _configure_with_fault
    sys.exit(supervisor.main(sys.argv[1:]))
