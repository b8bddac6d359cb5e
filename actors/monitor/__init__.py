"""The monitor kind: heartbeats and process readings into ``monitor.health``, alerts, Prometheus."""

from actors.monitor.settings import MonitorSettings
from actors.spec import KindSpec
from bus.messages import ActiveAlerts, Alert, Health

SPEC = KindSpec(
    name="monitor",
    description="health of every actor and of the machine on monitor.health; alerts with hysteresis; Prometheus",
    actor="actors.monitor.actor:MonitorActor",
    settings=MonitorSettings,
    publishes=(Health, Alert, ActiveAlerts),
)
