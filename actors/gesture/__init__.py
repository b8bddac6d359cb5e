"""The gesture kind: motion segments of ``sensor.imu`` matched against the gesture store; ``sensorium gesture``."""

from __future__ import annotations

from actors.gesture.settings import GestureSettings
from actors.spec import Check, KindSpec
from bus.bodies.gesture import GestureRecognized, GestureUnknown
from bus.cli import CliCommand
from bus.messages import Alert
from config.paths import resolve_path
from config.storage import CorruptFileError, unseal


def check_store(name: str, settings: GestureSettings) -> list[Check]:
    """The gesture store (or the seed it starts from) reads back with a good checksum."""
    path = resolve_path(settings.store.path)
    if not path.exists():
        seed = resolve_path(settings.store.seed_path) if settings.store.seed_path else None
        if seed is None:
            return [Check(f"{name} store", "ok", f"{path} absent: starts empty")]
        if not seed.is_file():
            return [Check(f"{name} store", "fail", f"{path} absent and its seed {seed} is missing")]
        return [Check(f"{name} store", "ok", f"{path} absent: starts as a copy of {seed}")]
    try:
        unseal(path.read_bytes(), path)
    except (OSError, CorruptFileError) as exc:
        return [Check(f"{name} store", "warn", f"{exc} (the newest good backup is restored at start)")]
    return [Check(f"{name} store", "ok", f"{path}: checksum good")]


SPEC = KindSpec(
    name="gesture",
    description="gesture recognition: motion segments of sensor.imu matched (DTW) against the gesture store",
    actor="actors.gesture.actor:GestureActor",
    settings=GestureSettings,
    publishes=(GestureRecognized, GestureUnknown, Alert),
    preflight=(check_store,),
    commands=(CliCommand("gesture", "record, train and manage gesture templates", "actors.gesture.cli:main"),),
)
