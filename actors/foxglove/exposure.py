"""Where the live view may listen: loopback, or TLS and a token (checked by preflight and by setup)."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

from actors.foxglove.settings import FoxgloveSettings
from config.paths import resolve_path


def is_loopback(host: str) -> bool:
    """localhost or an address of 127.0.0.0/8 or ::1 (names other than localhost are not loopback)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(s: FoxgloveSettings) -> str | None:
    """Why the server must not start as configured, or None."""
    if not is_loopback(s.host):
        missing = [k for k in ("tls_cert", "tls_key", "token_file") if not getattr(s, k)]
        if missing:
            return (f"refusing to listen on {s.host}: off loopback the live view needs TLS and a token; "
                    f"set {', '.join(missing)} (or host = \"127.0.0.1\")")
    for key in ("tls_cert", "tls_key", "token_file"):
        value = getattr(s, key)
        if value and not resolve_path(value).is_file():
            return f"{key} = {value!r}: no such file ({resolve_path(value)})"
    if s.token_file:
        try:
            read_token(resolve_path(s.token_file))
        except ValueError as exc:
            return str(exc)
    return None


def read_token(path: Path) -> str:
    """The token in ``path``; ValueError if the file is readable by others or holds no token."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"token_file {path} is readable by others (mode {stat.S_IMODE(mode):o}): chmod 600 it")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ValueError(f"token_file {path}: the token must be at least 16 characters")
    return token
