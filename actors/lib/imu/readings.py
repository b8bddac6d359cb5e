"""What sources deliver, and the parsers of the wire formats they speak.

Formats:

* **Sensor Logger HTTP push** (the app's "Data Streaming" -> "HTTP Push"):
  a JSON object ``{"messageId": int, "sessionId": str, "deviceId": str,
  "payload": [{"name": str, "time": int ns, "values": {"x", "y", "z"}},
  ...]}``. Streams named in ``acc_names``/``gyro_names`` are taken; others
  (gravity, orientation, location...) are counted and ignored.
* **JSON lines** (UDP datagrams, a TCP stream, replay files): one object per
  line, either a Sensor Logger payload entry as above, or a combined reading
  ``{"t": seconds, "acc": [x, y, z], "gyro": [x, y, z]}``.

Malformed input raises ``FormatError`` with the reason (the HTTP receiver
answers it with 400), including JSON nested too deeply and integers too
large for a float; other numbers pass through unchecked (NaN included):
validation downstream drops and flags them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np


class FormatError(ValueError):
    """Input that does not follow the format; the message says what and where."""


@dataclass
class Readings:
    """Readings of one source, in arrival order: acc and gyro at the same
    times (a combined reading), or only one of them (one Sensor Logger stream)."""

    t: np.ndarray
    """float64 (n,), seconds."""
    acc: np.ndarray | None = None
    """float64 (n, 3), m/s²."""
    gyro: np.ndarray | None = None
    """float64 (n, 3), rad/s."""

    def __len__(self) -> int:
        return len(self.t)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(f"{where} is {type(value).__name__} {value!r:.40}, expected a number")
    try:
        return float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        raise FormatError(f"{where} is an integer of {len(str(value))} digits, too large for a float") from None


def _json(text: str | bytes) -> Any:
    """json.loads with the reasons it can fail as ValueError: Python's int-from-string digit limit
    (4300 digits) raises ValueError already; nesting deeper than the interpreter's recursion limit
    (~1000 levels, far beyond any reading) raises RecursionError, turned into a FormatError here."""
    try:
        return json.loads(text)
    except RecursionError:
        raise FormatError("JSON nested too deeply") from None


def _xyz(values: Any, where: str) -> tuple[float, float, float]:
    if isinstance(values, dict):
        try:
            return tuple(_number(values[k], f"{where}.{k}") for k in ("x", "y", "z"))  # type: ignore[return-value]
        except KeyError as exc:
            raise FormatError(f"{where} lacks {exc.args[0]!r}") from None
    if isinstance(values, (list, tuple)) and len(values) == 3:
        return tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(values))  # type: ignore[return-value]
    raise FormatError(f"{where} must be {{x, y, z}} or [x, y, z], got {str(values)[:40]}")


class EntryParser:
    """Collects Sensor Logger entries and combined readings into ``Readings``."""

    def __init__(self, acc_names: Iterable[str], gyro_names: Iterable[str]) -> None:
        self.acc_names = {n.lower() for n in acc_names}
        self.gyro_names = {n.lower() for n in gyro_names}
        self.ignored = 0
        """Entries of other streams (gravity, orientation...)."""

    def parse_entries(self, entries: Iterable[Any], where: str = "payload") -> list[Readings]:
        acc_t, acc, gyro_t, gyro, both_t, both_acc, both_gyro = [], [], [], [], [], [], []
        for i, entry in enumerate(entries):
            here = f"{where}[{i}]"
            if not isinstance(entry, dict):
                raise FormatError(f"{here} is {type(entry).__name__}, expected an object")
            if "name" in entry:
                name = entry["name"]
                if not isinstance(name, str):
                    raise FormatError(f"{here}.name is not a string")
                kind = "acc" if name.lower() in self.acc_names else "gyro" if name.lower() in self.gyro_names else ""
                if not kind:
                    self.ignored += 1
                    continue
                if "time" not in entry or "values" not in entry:
                    raise FormatError(f"{here} ({name}) lacks {'time' if 'time' not in entry else 'values'}")
                t = _number(entry["time"], f"{here}.time") / 1e9
                xyz = _xyz(entry["values"], f"{here}.values")
                (acc_t if kind == "acc" else gyro_t).append(t)
                (acc if kind == "acc" else gyro).append(xyz)
            elif "t" in entry and "acc" in entry:
                both_t.append(_number(entry["t"], f"{here}.t"))
                both_acc.append(_xyz(entry["acc"], f"{here}.acc"))
                both_gyro.append(_xyz(entry["gyro"], f"{here}.gyro") if "gyro" in entry else (math.nan,) * 3)
            else:
                raise FormatError(f"{here} has neither name/time/values nor t/acc")
        out = []
        if both_t:
            out.append(Readings(np.array(both_t), np.array(both_acc), np.array(both_gyro)))
        if acc_t:
            out.append(Readings(np.array(acc_t), acc=np.array(acc)))
        if gyro_t:
            out.append(Readings(np.array(gyro_t), gyro=np.array(gyro)))
        return out

    def parse_push(self, body: bytes) -> tuple[str, list[Readings]]:
        """A Sensor Logger push: (deviceId, readings); raises FormatError."""
        try:
            doc = _json(body)
        except FormatError as exc:
            raise FormatError(f"body is not a usable JSON document: {exc}") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise FormatError(f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise FormatError(f"body is a JSON {type(doc).__name__}, expected an object with 'payload'")
        if "payload" not in doc:
            raise FormatError("body has no 'payload'")
        if not isinstance(doc["payload"], list):
            raise FormatError(f"'payload' is {type(doc['payload']).__name__}, expected a list")
        device = doc.get("deviceId", "")
        return str(device) if device is not None else "", self.parse_entries(doc["payload"])

    def parse_lines(self, text: str, where: str = "line") -> tuple[list[Readings], list[str]]:
        """Readings of every good line, and the reasons of the bad ones (counted by the caller)."""
        entries, bad = [], []
        for n, line in enumerate(text.splitlines()):
            line = line.strip()
            if not line:
                continue
            try:
                entry = _json(line)
                entries.extend(self.parse_entries([entry], f"{where} {n + 1}"))
            except ValueError as exc:   # FormatError and JSONDecodeError
                bad.append(f"{where} {n + 1}: {exc}")
        return entries, bad


GYRO_REACH_S = 0.25
"""An accelerometer reading farther than this from any gyroscope reading gets no gyro, seconds."""


def merge_readings(parts: Iterable[Readings]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One stream on the accelerometer's clock from parsed readings: t (n,), acc (n, 3), gyro (n, 3), and how
    many readings had no gyroscope reading within GYRO_REACH_S (their gyro is zero).

    Combined readings keep their own gyro; accelerometer-only readings (Sensor Logger sends each sensor
    apart) take the gyroscope interpolated at their time, as the live sensor's aligner does. Sorted by
    time; a repeated timestamp is kept once; non-finite values are dropped."""
    both_t, both_acc, both_gyro, acc_t, acc, gyro_t, gyro = [], [], [], [], [], [], []
    for r in parts:
        if r.acc is not None and r.gyro is not None:
            both_t.append(r.t), both_acc.append(r.acc), both_gyro.append(r.gyro)
        elif r.acc is not None:
            acc_t.append(r.t), acc.append(r.acc)
        elif r.gyro is not None:
            gyro_t.append(r.t), gyro.append(r.gyro)
    t_out, acc_out, gyro_out, missing = [], [], [], 0
    if both_t:
        t_out.append(np.concatenate(both_t))
        acc_out.append(np.concatenate(both_acc))
        gyro_out.append(np.concatenate(both_gyro))
    if acc_t:
        t = np.concatenate(acc_t)
        a = np.concatenate(acc)
        gt = np.concatenate(gyro_t) if gyro_t else np.zeros(0)
        gv = np.concatenate(gyro) if gyro else np.zeros((0, 3))
        ok = np.isfinite(gt) & np.isfinite(gv).all(axis=1)
        gt, first = np.unique(gt[ok], return_index=True)
        gv = gv[ok][first]
        if len(gt):
            g = np.stack([np.interp(t, gt, gv[:, c]) for c in range(3)], axis=1)
            idx = np.searchsorted(gt, t)
            last = len(gt) - 1
            nearest = np.minimum(np.abs(gt[np.clip(idx - 1, 0, last)] - t), np.abs(gt[np.clip(idx, 0, last)] - t))
            far = nearest > GYRO_REACH_S
        else:
            g, far = np.zeros((len(t), 3)), np.ones(len(t), dtype=bool)
        g[far] = 0.0
        missing = int(far.sum())
        t_out.append(t), acc_out.append(a), gyro_out.append(g)
    if not t_out:
        return np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)), 0
    t, a, g = np.concatenate(t_out), np.concatenate(acc_out), np.concatenate(gyro_out)
    ok = np.isfinite(t) & np.isfinite(a).all(axis=1) & np.isfinite(g).all(axis=1)
    t, a, g = t[ok], a[ok], g[ok]
    t, first = np.unique(t, return_index=True)
    return t, a[first], g[first], missing
