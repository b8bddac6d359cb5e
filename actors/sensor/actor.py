"""The IMU sensor actor: one source in, ``sensor.imu`` batches out.

The story: open the configured source (synthetic script, Sensor Logger
HTTP push, UDP or TCP JSON lines, a replay file); every ``batch_s`` take
what arrived, pair accelerometer and gyroscope readings, validate them
(dropping NaN, out-of-range and out-of-order readings with flags),
remove the biases learned from stationary periods, score the batch's
quality and publish it. Every change of the source's connection state is
published on ``sensor.state``; the heartbeat carries the counters.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from actors.base import Actor
from actors.sensor.settings import SensorSettings
from actors.sensor.conditioning import Aligner, Calibrator, Validator
from actors.sensor.sources import Source, make_source
from bus.bodies.imu import ConnectionState, ImuBatch, ImuFlag, SensorState
from config.paths import resolve_path


class SensorActor(Actor[SensorSettings]):
    kind = "sensor"

    def setup(self) -> None:
        s = self.settings
        self.source: Source = make_source(s, resolve_path)
        self.aligner = Aligner(s.align_wait_s)
        self.validator = Validator(s.validation, s.rate_hz, s.calibration.gravity)
        self.calibrator = Calibrator(s.calibration)
        self.figures: Counter[str] = Counter()
        self.carried_flags: set[str] = set()
        self.source.start()
        self.every(s.batch_s, self.pump)

    def pump(self) -> None:
        now = time.monotonic()
        for readings in self.source.poll():
            self.aligner.add(readings, now)
        self.publish_state_changes()
        t, acc, gyro, no_gyro = self.aligner.take(now)
        if not len(t):
            return
        checked = self.validator.check(t, acc, gyro)
        self.figures["received"] += checked.received
        flags = checked.flags | self.carried_flags
        if no_gyro:
            flags.add(ImuFlag.NO_GYRO.value)
        if not len(checked.t):
            # Nothing left to carry them: they go out on the next batch.
            self.carried_flags = flags
            return
        if self.carried_flags:
            flags.add(ImuFlag.CARRIED.value)
            self.carried_flags = set()
        acc_c, gyro_c = self.calibrator.apply(checked.t, checked.acc, checked.gyro)
        if not self.calibrator.calibrated:
            flags.add(ImuFlag.UNCALIBRATED.value)
        self.figures["published"] += len(checked.t)
        self.publish(ImuBatch(t=checked.t, acc=acc_c, gyro=gyro_c, quality=round(checked.quality, 4),
                              flags=sorted(flags), source=self.source.kind, device=self.source.device))

    def publish_state_changes(self) -> None:
        while self.source.changes:
            change = self.source.changes.popleft()
            self.log.info("source_state", source=self.source.kind, state=change.state.value,
                          previous=change.previous.value if change.previous else "", reason=change.reason,
                          address=change.address)
            self.publish(SensorState(state=change.state.value,
                                     previous=change.previous.value if change.previous else "",
                                     source=self.source.kind, address=change.address, reason=change.reason,
                                     attempt=change.attempt, delay_s=change.delay_s))

    def teardown(self) -> None:
        self.source.stop()
        if self.pub is not None:
            self.publish_state_changes()

    def heartbeat_extra(self) -> dict[str, Any]:
        return {"source": self.source.kind, "state": self.source.state.value if self.source.state else "",
                "address": self.source.address, **{f"source_{k}": v for k, v in self.source.counts.items()},
                "readings_received": self.figures["received"], "readings_published": self.figures["published"],
                "dropped": dict(self.validator.counts), "calibrated": self.calibrator.calibrated,
                "acc_bias": [round(float(x), 4) for x in self.calibrator.acc_bias],
                "gyro_bias": [round(float(x), 4) for x in self.calibrator.gyro_bias]}


__all__ = ["ConnectionState", "SensorActor"]
