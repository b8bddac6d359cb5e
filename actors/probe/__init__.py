"""The probe kind: a diagnostic actor that echoes, ticks and acts out faults for drills and tests."""

from actors.probe.settings import ProbeSettings
from actors.spec import KindSpec

SPEC = KindSpec(
    name="probe",
    description="diagnostics: echoes topics on probe.echo, ticks on probe.tick, acts out slow/failed setups, crashes, hangs",
    actor="actors.probe.actor:ProbeActor",
    settings=ProbeSettings,
)
