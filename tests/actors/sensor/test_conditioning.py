"""Validation, calibration and alignment of IMU readings, and the wire parsers (no processes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actors.sensor.conditioning import Aligner, Calibrator, Validator
from actors.lib.imu.readings import EntryParser, FormatError, Readings
from actors.lib.imu.synthetic import ScriptedStream
from bus.bodies.imu import ImuBatch, ImuFlag
from bus.messages import BodyError
from actors.sensor.settings import CalibrationSettings, ValidationSettings


def readings(n: int, t0: float = 0.0, rate: float = 100.0):
    t = t0 + np.arange(n) / rate
    return t, np.zeros((n, 3)) + [0.1, 0.2, 0.3], np.zeros((n, 3)) + [0.01, 0.02, 0.03]


def test_validator_drops_bad_readings_with_flags_and_counts():
    v = Validator(ValidationSettings(), rate_hz=100.0)
    t, acc, gyro = readings(10)
    acc[1] = [np.nan, 0, 0]
    gyro[2] = [np.inf, 0, 0]
    acc[3] = [200.0, 0, 0]            # > 16 g
    gyro[4] = [0, 40.0, 0]            # > 35 rad/s
    t[6] = t[5]                       # duplicate timestamp
    t[7] = t[5] - 0.005               # goes backwards
    checked = v.check(t, acc, gyro)
    assert len(checked.t) == 4 and checked.received == 10
    assert checked.flags == {ImuFlag.NONFINITE.value, ImuFlag.ACC_RANGE.value, ImuFlag.GYRO_RANGE.value,
                             ImuFlag.DUPLICATE.value, ImuFlag.NON_MONOTONIC.value, ImuFlag.DROPOUT.value}
    assert v.counts["nonfinite"] == 2 and v.counts["acc_out_of_range"] == 1 and v.counts["gyro_out_of_range"] == 1
    assert v.counts["duplicate_timestamp"] == 1 and v.counts["non_monotonic"] == 1
    # 0.05 -> 0.08 s jumped over four dropped readings: a dropout of 2 readings lost.
    assert v.counts["dropout"] == 1 and checked.missing == 2
    assert checked.quality == pytest.approx(4 / 10 * 4 / 6)
    # Order is kept across batches: a batch from the past is dropped whole.
    again = v.check(*readings(3, t0=0.0))
    assert len(again.t) == 0 and ImuFlag.NON_MONOTONIC.value in again.flags and again.quality == 0.0
    clean = v.check(*readings(5, t0=0.1))
    assert clean.flags == set() and clean.quality == 1.0


def test_calibrator_learns_both_biases_from_rest_and_ignores_motion():
    stream = ScriptedStream(["wave", "punch"], seed=3, pause_s=(1.5, 2.0), acc_bias=(0.3, -0.2, 0.1),
                            gyro_bias=(0.05, -0.04, 0.02))
    cal = Calibrator(CalibrationSettings())
    assert not cal.calibrated
    for k in range(1, 200):
        t, acc, gyro = stream.read_until(k * 0.05)
        cal.apply(t, acc.astype(float), gyro.astype(float))
    assert cal.calibrated and cal.updates > 3
    np.testing.assert_allclose(cal.gyro_bias, [0.05, -0.04, 0.02], atol=0.01)
    np.testing.assert_allclose(cal.acc_bias, [0.3, -0.2, 0.1], atol=0.06)
    # With gravity in acc, the bias is the magnitude error along gravity.
    g_cal = Calibrator(CalibrationSettings(acc_includes_gravity=True))
    t, acc, gyro = readings(100)
    acc[:] = [0.0, 0.0, 9.80665 + 0.2]
    acc += np.random.default_rng(0).normal(0, 0.05, acc.shape)
    g_cal.apply(t, acc, gyro)
    np.testing.assert_allclose(g_cal.acc_bias, [0, 0, 0.2], atol=0.03)


def test_aligner_interpolates_gyro_onto_accelerometer_times_and_waits_for_it():
    al = Aligner(wait_s=0.1)
    al.add(Readings(np.array([1.00, 1.01, 1.02]), acc=np.ones((3, 3))), now=0.0)
    t, *_ = al.take(now=0.01)
    assert len(t) == 0                                        # waits for gyro past 1.02
    al.add(Readings(np.array([0.995, 1.015, 1.035]), gyro=np.array([[0, 0, 0], [2, 2, 2], [4, 4, 4.0]])), now=0.02)
    t, acc, gyro, no_gyro = al.take(now=0.02)
    np.testing.assert_allclose(t, [1.00, 1.01, 1.02])
    np.testing.assert_allclose(gyro[:, 0], [0.5, 1.5, 2.5])
    assert not no_gyro
    al2 = Aligner(wait_s=0.1)
    al2.add(Readings(np.array([5.0]), acc=np.ones((1, 3))), now=0.0)
    t, acc, gyro, no_gyro = al2.take(now=0.2)                 # waited long enough, no gyro at all
    assert len(t) == 1 and no_gyro and (gyro == 0).all()


def test_parsers_accept_sensor_logger_and_line_formats_and_name_what_is_wrong():
    p = EntryParser(["accelerometer"], ["gyroscope"])
    body = json.dumps({"messageId": 1, "sessionId": "s", "deviceId": "phone-1", "payload": [
        {"name": "accelerometer", "time": 1_700_000_000_000_000_000, "values": {"x": 1, "y": 2, "z": 3}},
        {"name": "gyroscope", "time": 1_700_000_000_005_000_000, "values": {"x": 0.1, "y": 0.2, "z": 0.3}},
        {"name": "gravity", "time": 1_700_000_000_000_000_000, "values": {"x": 0, "y": 0, "z": 9.8}}]}).encode()
    device, got = p.parse_push(body)
    assert device == "phone-1" and p.ignored == 1
    acc = next(r for r in got if r.acc is not None)
    assert acc.t[0] == pytest.approx(1.7e9) and acc.acc.tolist() == [[1, 2, 3]]
    for bad, why in ((b"{", "not JSON"), (b"[]", "expected an object"), (b'{"x": 1}', "no 'payload'"),
                     (b'{"payload": 3}', "expected a list"),
                     (b'{"payload": [{"name": "gyroscope", "time": 1, "values": {"x": 1, "y": 2}}]}', "lacks 'z'"),
                     (b'{"payload": [{"name": "gyroscope", "time": "now", "values": [1, 2, 3]}]}', "time is str")):
        with pytest.raises(FormatError, match=why):
            p.parse_push(bad)
    lines = '{"t": 1.0, "acc": [1, 2, 3], "gyro": [0, 0, 1]}\nnot json\n{"t": 1.01, "acc": [1, 2]}\n'
    good, bad_lines = p.parse_lines(lines)
    assert len(good) == 1 and good[0].gyro.tolist() == [[0, 0, 1]] and len(bad_lines) == 2


def test_imu_batch_body_checks_shapes():
    b = ImuBatch(t=np.arange(3.0), acc=np.zeros((3, 3)), gyro=np.zeros((3, 3)), flags=["dropout"])
    back = ImuBatch.from_body(b.to_body())
    assert back.acc.dtype == np.float32 and back.t.dtype == np.float64 and back.flags == ["dropout"]
    with pytest.raises(BodyError, match="acc has shape"):
        ImuBatch(t=np.arange(3.0), acc=np.zeros((3, 2)), gyro=np.zeros((3, 3)))
    with pytest.raises(BodyError, match="lengths differ"):
        ImuBatch(t=np.arange(2.0), acc=np.zeros((3, 3)), gyro=np.zeros((3, 3)))
