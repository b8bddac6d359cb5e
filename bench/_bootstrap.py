"""The one sys.path bootstrap of the bench scripts: ``from _bootstrap import HERE, ROOT`` first.

Run as ``python bench/NAME.py`` (from any folder), a script's own folder
comes first on sys.path, so ``bench/bus.py`` would shadow the ``bus``
package (and ``bench/hydra.py`` etc. any module of their names), while the
repository root, where ``bus``, ``actors`` and ``config`` live, is not on it
at all (an editable install may then find them in another checkout).
Importing this module takes the bench folder off sys.path and puts the root
first: the script then runs exactly as ``python -m bench.NAME`` would, and
says so in its ``__spec__``. That last part is for ``multiprocessing``'s
``spawn``: a child re-imports the main module with the parent's sys.path,
where the bench folder (and with it the top-level name ``_bootstrap``) is
gone; by module name, ``bench.NAME``, it finds the script through the
``bench`` package, whose ``__init__`` registers this module as ``_bootstrap``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
"""The bench folder (its ``out/`` is the default output folder)."""
ROOT = HERE.parent
"""The repository root."""

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_main = sys.modules.get("__main__")
_main_file = getattr(_main, "__file__", None)
if _main is not None and getattr(_main, "__spec__", None) is None and _main_file \
        and Path(_main_file).resolve().parent == HERE:
    _main.__spec__ = importlib.util.spec_from_file_location(f"bench.{Path(_main_file).stem}", _main_file)


def headless_pyplot(json_name: str):  # -> matplotlib.pyplot module, or None
    """matplotlib's pyplot on the Agg backend (no display needed), or None with a note when matplotlib is not
    importable: the bench's JSON (``json_name``) still has every number."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not importable, skipping the plot ({json_name} has every number)")
        return None
    return plt
