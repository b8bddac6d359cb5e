"""Log a recurring problem once per burst instead of once per occurrence."""

from __future__ import annotations

import time
from typing import Any


class BurstLog:
    """The first occurrence of an event logs at once; later ones within
    ``quiet_s`` are only counted and summarised in the next line logged."""

    def __init__(self, log: Any, quiet_s: float = 5.0) -> None:
        self._log = log
        self._quiet_s = quiet_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def error(self, key: str, event: str, exc_info: BaseException | None = None, **fields: Any) -> None:
        """Log ``event`` at error level unless ``key`` was logged within ``quiet_s``; ``exc_info``: an
        exception whose traceback goes with the line (a bug's, so that it can be found)."""
        self._emit("error", key, event, exc_info, fields)

    def warning(self, key: str, event: str, **fields: Any) -> None:
        """The same at warning level: something outside (a peer, the network), not a fault here."""
        self._emit("warning", key, event, None, fields)

    def _emit(self, level: str, key: str, event: str, exc_info: BaseException | None, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._quiet_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed_since_last"] = suppressed
        if exc_info is not None:
            fields["exc_info"] = exc_info
        getattr(self._log, level)(event, **fields)
