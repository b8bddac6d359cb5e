"""Bodies of the IMU topics: ``sensor.imu`` batches and ``sensor.state``.

A ``sensor.imu`` batch holds N aligned readings (one timestamp, one
accelerometer and one gyroscope vector each) that passed validation and
calibration. What was dropped on the way is told by ``flags`` and counted in
the sensor's heartbeat; nothing disappears silently.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np

from bus.messages import ArraySpec, Body, BodyError


class ImuFlag(str, enum.Enum):
    """Why a batch is less than perfect; a batch lists each that applies once."""

    NONFINITE = "nonfinite"
    """Readings with NaN or inf were dropped."""
    ACC_RANGE = "acc_out_of_range"
    """Readings with |acc| above the physical limit (16 g) were dropped."""
    GYRO_RANGE = "gyro_out_of_range"
    """Readings with |gyro| above the physical limit (35 rad/s) were dropped."""
    NON_MONOTONIC = "non_monotonic"
    """Readings whose timestamp went backwards were dropped."""
    DUPLICATE = "duplicate_timestamp"
    """Readings repeating the previous timestamp were dropped."""
    DROPOUT = "dropout"
    """A gap longer than the dropout limit precedes a reading of this batch."""
    UNCALIBRATED = "uncalibrated"
    """No stationary period seen yet: biases are not removed."""
    NO_GYRO = "no_gyro"
    """The source sent no gyroscope readings for these; gyro is zero."""
    CARRIED = "carried"
    """Flags of earlier readings that were all dropped travel on this batch."""


class ConnectionState(str, enum.Enum):
    """Where a sensor source stands; published on ``sensor.state`` on every change."""

    CONNECTING = "connecting"
    """Opening its socket or file, or connecting to its peer."""
    LISTENING = "listening"
    """A server source is bound and waits for data."""
    CONNECTED = "connected"
    """A client source reached its peer and waits for data."""
    STREAMING = "streaming"
    """Readings arrive."""
    STALE = "stale"
    """Connected or listening, but no readings for longer than stale_after_s."""
    BACKOFF = "backoff"
    """The last try failed; the next one follows after a backoff delay."""
    ENDED = "ended"
    """A finite source (a replay without loop) has no more readings."""
    STOPPED = "stopped"
    """The actor stopped the source."""


def _array(value: Any, dtype: str, ndim: int, topic: str, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
        if arr.ndim == ndim and arr.dtype != np.dtype(dtype):
            arr = arr.astype(dtype)
    except (TypeError, ValueError) as exc:  # ragged lists, strings, None among the numbers
        raise BodyError(f"{topic}: {name} is not a {dtype} array: {exc}") from exc
    if arr.ndim != ndim or (ndim == 2 and arr.shape[1] != 3):
        raise BodyError(f"{topic}: {name} has shape {arr.shape}, expected {'(N,)' if ndim == 1 else '(N, 3)'}")
    return arr


MAX_BATCH_READINGS = 100_000
"""Most readings a consumer accepts in one ``sensor.imu`` batch: the sensor sends ``batch_s`` worth (5 at
100 Hz by default; one whole 4 MB HTTP push is ~35,000); more is refused by ``from_body`` (BodyError)."""


@dataclass
class ImuBatch(Body):
    TOPIC: ClassVar[str] = "sensor.imu"

    t: Annotated[np.ndarray, ArraySpec("float64", ("N",))]
    """float64 (N,): sample times, seconds (the source's clock; Sensor Logger: Unix time)."""
    acc: Annotated[np.ndarray, ArraySpec("float32", ("N", 3))]
    """float32 (N, 3): acceleration, m/s² (device frame; gravity removed unless the source includes it)."""
    gyro: Annotated[np.ndarray, ArraySpec("float32", ("N", 3))]
    """float32 (N, 3): angular velocity, rad/s (device frame), bias removed once calibrated."""
    quality: float = 1.0
    """0..1: share of readings kept times share of the expected readings that arrived."""
    flags: list[str] = field(default_factory=list)
    """``ImuFlag`` values that apply to this batch."""
    source: str = ""
    """Source kind: synthetic, http, udp, tcp, replay."""
    device: str = ""
    """Device id as the source names it (Sensor Logger deviceId), or ''."""

    def __post_init__(self) -> None:
        self.t = _array(self.t, "float64", 1, self.TOPIC, "t")
        self.acc = _array(self.acc, "float32", 2, self.TOPIC, "acc")
        self.gyro = _array(self.gyro, "float32", 2, self.TOPIC, "gyro")
        if not (len(self.t) == len(self.acc) == len(self.gyro)):
            raise BodyError(f"{self.TOPIC}: t, acc, gyro lengths differ "
                            f"({len(self.t)}, {len(self.acc)}, {len(self.gyro)})")

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "ImuBatch":
        """Refuses a batch longer than ``MAX_BATCH_READINGS`` (BodyError) before its arrays are checked."""
        t = body.get("t") if isinstance(body, dict) else None
        if isinstance(t, np.ndarray) and t.size > MAX_BATCH_READINGS:
            raise BodyError(f"sensor.imu: {t.size} readings in one batch, more than {MAX_BATCH_READINGS}")
        return super().from_body(body)

    def __len__(self) -> int:
        return len(self.t)

    def to_body(self) -> dict[str, Any]:
        return {"t": np.ascontiguousarray(self.t), "acc": np.ascontiguousarray(self.acc),
                "gyro": np.ascontiguousarray(self.gyro), "quality": float(self.quality), "flags": list(self.flags),
                "source": self.source, "device": self.device}


@dataclass
class SensorState(Body):
    TOPIC: ClassVar[str] = "sensor.state"
    LATCHED: ClassVar[bool] = True

    state: str
    """A ``ConnectionState`` value."""
    previous: str = ""
    """The state before this change."""
    source: str = ""
    """Source kind: synthetic, http, udp, tcp, replay."""
    address: str = ""
    """Where the source listens or connects (host:port, file path), once known."""
    reason: str = ""
    """Why the state changed (the error on a failed connect)."""
    attempt: int = 0
    """Consecutive failed tries (BACKOFF)."""
    delay_s: float = 0.0
    """Seconds until the next try (BACKOFF)."""
