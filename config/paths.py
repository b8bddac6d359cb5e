"""Where relative paths in settings point: the repository (package) root.

Actors run with the repository as their working folder under the
supervisor, but a CLI command may run anywhere; settings such as a store or
replay path mean the same file in both when they are resolved here.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
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


SOCKET_FILES = {"frontend": "pub.sock", "backend": "sub.sock", "control": "control.sock"}
"""The ipc socket file of each bus endpoint in the runtime folder, when its setting is ''."""


def default_endpoint(runtime_dir: Path, role: str) -> str:
    """``ipc://RUNTIME_DIR/<socket>`` of endpoint ``role`` (frontend, backend or control)."""
    return f"ipc://{runtime_dir}/{SOCKET_FILES[role]}"


@dataclass(frozen=True)
class Locations:
    """The folders the '' path settings stand for at run time (``sensorium config show`` prints them)."""

    runtime_dir: Path
    """Private folder of the ipc sockets and the resolved config."""
    log_dir: Path
    """Folder of the rotating log files."""
    repo_root: Path = REPO_ROOT
    """Where relative paths in settings point (and the working folder of supervised actors)."""

    @classmethod
    def of(cls, runtime_dir: str, log_dir: str) -> "Locations":
        """From ``bus.runtime_dir`` and ``log.dir`` as configured ('' : the defaults)."""
        runtime = Path(runtime_dir).expanduser() if runtime_dir else default_runtime_dir()
        return cls(runtime_dir=runtime, log_dir=Path(log_dir).expanduser() if log_dir else runtime / "logs")

    def resolve(self, path: str | Path) -> Path:
        """A setting's path as the actors read it: ``~`` expanded, relative paths from the repository root."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.repo_root / p


def default_data_dir() -> Path:
    """The user's data folder for Sensorium: $XDG_DATA_HOME/sensorium, else ~/.local/share/sensorium."""
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "sensorium"
