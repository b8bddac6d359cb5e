"""Fixtures of the gesture tests: the shipped store, a copy to damage, a stream player."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from actors.lib.gesture.store import GestureDB
from actors.lib.imu.synthetic import ScriptedStream
from bus.bodies.imu import ImuBatch
from bus.pubsub import Publisher
from config.paths import resolve_path
from config.storage import unseal
from tests.support import WAIT_S

SHIPPED = resolve_path("models/gestures/synthetic.gst")


@pytest.fixture(scope="session")
def shipped_db() -> GestureDB:
    # Decoded, not loaded through GestureStore: a load would back the file up inside the checkout.
    return GestureDB.decode(unseal(SHIPPED.read_bytes(), SHIPPED)[0], SHIPPED)


@pytest.fixture
def store_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped store (tests may corrupt or edit it)."""
    path = tmp_path / "gestures" / "store.gst"
    path.parent.mkdir()
    shutil.copy(SHIPPED, path)
    return path


class StreamPlayer:
    """Publishes a ScriptedStream on sensor.imu from a thread, ``speed`` x real time."""

    def __init__(self, frontend: str, ctx, stream: ScriptedStream, *, speed: float = 10.0, batch_s: float = 0.1,
                 until_s: float | None = None, src: str = "player") -> None:
        self.pub = Publisher(ctx, frontend, src)
        self.stream = stream
        self.speed = speed
        self.batch_s = batch_s
        self.until_s = until_s
        self.published_until = stream.t0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, wait_for_subscriber: bool = True) -> "StreamPlayer":
        if wait_for_subscriber:
            assert self.pub.wait_for_subscriber(ImuBatch.TOPIC, WAIT_S), "nobody subscribed to sensor.imu"
        self._thread.start()
        return self

    def _run(self) -> None:
        t_data = self.stream.t0
        start = time.monotonic()
        while not self._stop.is_set():
            if self.until_s is not None and t_data >= self.stream.t0 + self.until_s:
                break
            t_data += self.batch_s
            t, acc, gyro = self.stream.read_until(t_data)
            self.pub.publish(ImuBatch.TOPIC, ImuBatch(t=t, acc=acc, gyro=gyro, source="test").to_body())
            self.published_until = t_data
            lag = start + (t_data - self.stream.t0) / self.speed - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        self.done.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.pub.close()


@pytest.fixture
def player_factory() -> Iterator:
    made: list[StreamPlayer] = []

    def make(*args, **kwargs) -> StreamPlayer:
        p = StreamPlayer(*args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def overlaps(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


__all__ = ["SHIPPED", "StreamPlayer", "np", "overlaps"]
