"""Where relative paths in settings point: the repository (package) root.

Actors run with the repository as their working folder under the
supervisor, but a CLI command may run anywhere; settings such as a store or
replay path mean the same file in both when they are resolved here.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_path(path: str | Path) -> Path:
    """``~`` expanded; a relative path is taken from the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p
