"""structlog set-up shared by the supervisor, the actors and the CLI.

One JSON object per line with ``ts``, ``level``, ``actor`` and ``event``
(DESIGN.md, "Logging and metrics"), written to stderr; the supervisor
captures each actor's stderr into that actor's rotating log file.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _Tee:
    """A text stream writing to stderr and to a line sink (the supervisor's rotating log)."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink

    def write(self, text: str) -> int:
        sys.stderr.write(text)
        for line in text.splitlines():
            self._sink(line)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(actor: str, level: str = "info", also: Callable[[str], None] | None = None) -> None:
    """JSON lines on stderr; ``also`` receives each line too (e.g. a rotating file)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=repr),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=_Tee(also) if also else sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(actor=actor)
