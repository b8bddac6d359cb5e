"""The sensor kind: an IMU source (synthetic, Sensor Logger HTTP push, UDP, TCP, replay) onto ``sensor.imu``."""

from __future__ import annotations

from actors.sensor.settings import SensorSettings
from actors.spec import Check, KindSpec
from bus.bodies.imu import ImuBatch, SensorState
from config.paths import resolve_path


def check_source(name: str, settings: SensorSettings) -> list[Check]:
    """A replay file exists; a network source says where it listens or connects."""
    if settings.source == "replay":
        path = resolve_path(settings.replay.path)
        return [Check(f"{name} source", "ok" if path.is_file() else "fail",
                      f"replay {path}" + ("" if path.is_file() else ": no such file"))]
    if settings.source == "http":
        token = "no token (loopback only)"
        if settings.http.token_file:
            from actors.sensor.sources import read_token_file  # noqa: PLC0415 - aiohttp only for this check

            try:
                read_token_file(settings.http.token_file)
            except ValueError as exc:
                return [Check(f"{name} source", "fail", str(exc))]
            token = "token required"
        return [Check(f"{name} source", "ok",
                      f"HTTP push on {settings.http.host}:{settings.http.port}{settings.http.path}, {token}")]
    if settings.source in ("udp", "tcp"):
        where = getattr(settings, settings.source)
        return [Check(f"{name} source", "ok", f"{settings.source} {where.host}:{where.port}")]
    return [Check(f"{name} source", "ok", "synthetic gestures")]


SPEC = KindSpec(
    name="sensor",
    description="IMU readings, validated and calibrated, in batches on sensor.imu; source state on sensor.state",
    actor="actors.sensor.actor:SensorActor",
    settings=SensorSettings,
    publishes=(ImuBatch, SensorState),
    preflight=(check_source,),
)
