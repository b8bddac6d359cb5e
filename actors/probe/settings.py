"""Settings of the probe kind (a diagnostic actor)."""

from __future__ import annotations

from pydantic import Field

from config.schema import Strict


class ProbeSettings(Strict):
    """A diagnostic actor: echoes messages and can act out faults for drills and tests."""

    echo: list[str] = []
    """Topic prefixes to echo back on probe.echo."""
    tick_hz: float = Field(0.0, ge=0)
    """Publish probe.tick at this rate; 0: never."""
    setup_delay_s: float = Field(0.0, ge=0)
    """Pretend setup takes this long (a slow model load)."""
    fail_setup: bool = False
    """Raise in setup: the process exits with code 1."""
    crash_after_s: float = Field(0.0, ge=0)
    """Exit with code 1 this long after ready; 0: never."""
    hang_after_s: float = Field(0.0, ge=0)
    """Stop handling anything (heartbeats included) this long after ready; 0: never."""
