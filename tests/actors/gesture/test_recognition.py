"""Recognition through the bus: a real gesture actor under a supervisor, fed a held-out stream."""

from __future__ import annotations

import numpy as np
import pytest

from actors.lib.imu.synthetic import GESTURES, ScriptedStream, Variation, random_shape
from bus.bodies.gesture import GestureRecognized
from bus.pubsub import Publisher
from tests.actors.gesture.conftest import overlaps

pytestmark = pytest.mark.slow

HELD_OUT = Variation(duration_s=(0.6, 1.6), amplitude=(0.6, 1.4), acc_noise=(0.1, 0.45), gyro_noise=(0.01, 0.06))
"""Wider than the shipped templates were made with (0.7-1.4 s, 0.7-1.3 x): speed, amplitude and noise vary more."""


def gesture_config(store) -> str:
    return f"""
[actors.gesture]
heartbeat_s = 0.5
settings = {{ store = {{ path = "{store}", seed_path = "" }} }}
"""


def test_held_out_stream_is_recognised_at_90_percent_and_unknown_motions_are_rejected(
        supervisor_factory, collector_factory, player_factory, store_copy, shipped_db):
    sup = supervisor_factory(gesture_config(store_copy))
    sup.wait_running("gesture")
    out = collector_factory(sup, ["gesture.", "sys.heartbeat"])
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "gesture"
                 and m.body["extra"].get("templates") == len(shipped_db.gestures), what="templates loaded")
    # A malformed batch is counted and dropped; the actor goes on.
    bad = Publisher(out.ctx, sup.frontend, "bad-sender")
    assert bad.wait_for_subscriber("sensor.imu", 30)
    bad.publish("sensor.imu", {"t": np.arange(3.0), "acc": np.zeros((3, 2)), "gyro": np.zeros((3, 3))})
    bad.close()
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "gesture"
                 and m.body["counters"]["dropped"] >= 1, what="the bad batch counted")
    # Seed 2024 (the shipped templates used 7): 12 performances of each gesture,
    # in random order, with 16 motions of shapes the store has never seen.
    shapes = dict(GESTURES)
    shapes.update({f"unknown{i}": random_shape(500 + i) for i in range(16)})
    script = [n for n in GESTURES for _ in range(12)] + [f"unknown{i}" for i in range(16)]
    stream = ScriptedStream(script, seed=2024, shuffle=False, pause_s=(0.8, 1.5), variation=HELD_OUT, shapes=shapes,
                            t0=1000.0)
    stream.rng.shuffle(stream.script)
    total_s = 2.2 * len(script) + 3
    player = player_factory(sup.frontend, out.ctx, stream, speed=20.0, batch_s=0.2, until_s=total_s).start()
    assert player.done.wait(total_s / 20 * 4 + 60), "the player did not finish"
    # The last gesture is complete once the segmenter has seen hold_s of quiet after it.
    events = [e for e in stream.events if e.t_end < stream.t0 + total_s - 1.0]
    out.wait_for(lambda m: m.topic == "sys.heartbeat" and m.header.src == "gesture"
                 and m.body["extra"]["segments"] >= len(events) * 0.95, what="segments of the whole stream")
    recognized = [GestureRecognized.from_body(m.body) for m in out.messages if m.topic == GestureRecognized.TOPIC]

    def found(event):
        return [r for r in recognized if overlaps(r.t_start, r.t_end, event.t_start, event.t_end) > 0.2]

    known = [e for e in events if e.name in GESTURES]
    unknown = [e for e in events if e.name not in GESTURES]
    correct = sum(1 for e in known if [r.name for r in found(e)] == [e.name])
    accuracy = correct / len(known)
    accepted_unknown = sum(1 for e in unknown if found(e))
    print(f"held-out accuracy {accuracy:.3f} ({correct}/{len(known)}); unknown motions accepted "
          f"{accepted_unknown}/{len(unknown)}")
    assert len(known) >= 90
    assert accuracy >= 0.90
    assert accepted_unknown <= len(unknown) * 0.25
    # Nothing recognised where no gesture was performed.
    spurious = [r for r in recognized if not any(overlaps(r.t_start, r.t_end, e.t_start, e.t_end) for e in events)]
    assert spurious == []
    first = recognized[0]
    assert 0.0 < first.confidence <= 1.0 and first.processing_time_ms > 0
    assert first.template_version == shipped_db.gestures[first.name].version
    confident = [r.confidence for e in known for r in found(e) if r.name == e.name]
    assert sum(confident) / len(confident) > 0.8
