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

    def error(self, key: str, event: str, **fields: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._quiet_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed_since_last"] = suppressed
        self._log.error(event, **fields)
