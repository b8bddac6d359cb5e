"""Which code runs the bus's hot paths: the native module (bus/_speedups.c) or the Python one.

The native module is an optional build (setup.py): where it was not built, or where
``SENSORIUM_PURE_PYTHON=1`` is set, ``native`` is None and the Python code of
bus/envelope.py and bus/batched.py runs, producing the same bytes and the same
messages (tests/bus/test_speedups.py holds both to that).
"""

from __future__ import annotations

import os
from types import ModuleType

PURE_ENV = "SENSORIUM_PURE_PYTHON"

native: ModuleType | None
why_not = ""
"""Why ``native`` is None ('' when it is not)."""
try:
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        raise ImportError(f"{PURE_ENV} is set")
    from bus import _speedups as native
except ImportError as exc:
    native = None
    why_not = str(exc)


def describe() -> str:
    """One line for people: which code runs the hot paths."""
    return "native (bus/_speedups.c)" if native is not None else f"Python ({why_not})"
