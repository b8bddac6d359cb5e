"""Where relative paths in settings point: the repository (package) root.

Actors run with the repository as their working folder under the
supervisor, but a CLI command may run anywhere; settings such as a store or
replay path mean the same file in both when they are resolved here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_path(path: str | Path) -> Path:
    """``~`` expanded; a relative path is taken from the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def default_runtime_dir() -> Path:
    """The runtime folder when ``bus.runtime_dir`` is '': $XDG_RUNTIME_DIR/sensorium, else /tmp/sensorium-UID."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "sensorium"
    return Path(tempfile.gettempdir()) / f"sensorium-{os.getuid()}"


def default_data_dir() -> Path:
    """The user's data folder for Sensorium: $XDG_DATA_HOME/sensorium, else ~/.local/share/sensorium."""
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "sensorium"
