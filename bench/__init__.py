"""The benchmarks (bench/README.md): each runs as ``python bench/NAME.py`` or ``python -m bench.NAME``."""

import sys

from bench import _bootstrap

# The scripts import their bootstrap as the top-level ``_bootstrap``, which is what ``python
# bench/NAME.py`` finds; run as ``bench.NAME`` (``-m``, or a spawn child) the bench folder is not
# on sys.path, so the name is given here.
sys.modules.setdefault("_bootstrap", _bootstrap)
