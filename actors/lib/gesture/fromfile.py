"""Teaching from a recorded stream: ``sensorium gesture add NAME --from FILE --start T --end T``.

A file is either

* a **Sensorium recording** (MCAP, ``sensorium record``): its ``sensor.imu``
  batches, read with ``bus.recording.scan`` (a damaged file gives what it
  holds before the damage; the damage is reported), or
* a **Sensor Logger JSON-lines file** (the sensor's ``replay`` format): one
  entry per line, ``{"name", "time" ns, "values": {x, y, z}}`` or
  ``{"t": s, "acc": [...], "gyro": [...]}``; the accelerometer and
  gyroscope streams are aligned on the accelerometer's clock
  (``readings.merge_readings``). Bad lines are counted and skipped.

``--start``/``--end`` are **seconds from the first IMU reading of the
file** (not Unix time, not the file's own start), so the numbers read off a
plot of the file are the numbers to give.

The sample is cut exactly like a recorded one (``session.Recorder``): the
readings from ``LEAD_S`` before the range to ``TAIL_S`` after it go through
the same ``Segmenter``, its noise floor starting at the mean energy of
the window's rest (as if it had been listening at rest); the one motion segment lying
mostly inside the range is the sample, scored like a recorded take
(``session.score_sample``). ``exact`` takes the range as it is instead.
Readings of a Sensor Logger file are raw (the live sensor removes biases
once calibrated): a small gyroscope bias is far below a gesture's scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from actors.lib.gesture.segmenter import Segment, SegmentationSettings, Segmenter, motion_energy
from actors.lib.gesture.session import score_sample, synthetic_tell
from actors.lib.gesture.store import USER, Sample
from actors.lib.imu.readings import EntryParser, merge_readings
from bus.bodies.imu import ImuBatch
from bus.envelope import EnvelopeError
from bus.messages import BodyError
from bus.recording import RecordingError, ScanReport, scan
from bus.recording.mcapwriter import MAGIC

LEAD_S = 3.0
"""Readings before --start fed to the segmenter (its context and noise floor), seconds."""
TAIL_S = 1.0
"""Readings after --end fed to it, so that a motion ending at --end closes, seconds."""
REST_FACTOR = 3.0
"""Smoothed energies up to this many times the window's 10th percentile are rest: their mean starts the floor
(a motion starts at 6 x the floor, so none of it counts as rest)."""
MIN_INSIDE = 0.5
"""A segment belongs to the range when at least this share of it lies inside."""


class StreamFileError(ValueError):
    """A file that cannot be taught from, or a range without a usable motion; the message says which and why."""


@dataclass
class ImuFile:
    """The IMU readings of a file, on one clock."""

    path: Path
    kind: str
    """'recording' (MCAP) or 'json-lines' (Sensor Logger)."""
    t: np.ndarray
    """float64 (n,), seconds (the file's own clock)."""
    acc: np.ndarray
    """float64 (n, 3), m/s²."""
    gyro: np.ndarray
    """float64 (n, 3), rad/s."""
    quality: np.ndarray
    """float64 (n,): quality of each reading's batch (1 for a JSON-lines file)."""
    flags: list[set[str]] = field(default_factory=list)
    """Per reading, the flags of its batch (empty for a JSON-lines file)."""
    sources: set[str] = field(default_factory=set)
    """Source kinds named by the batches (recording): 'synthetic', 'http'..."""
    notes: list[str] = field(default_factory=list)
    """What was skipped or assumed on the way, in words."""

    @property
    def t0(self) -> float:
        return float(self.t[0])

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0])


def read_imu_file(path: Path | str, *, topic: str = ImuBatch.TOPIC, acc_names: tuple[str, ...] = ("accelerometer",),
                  gyro_names: tuple[str, ...] = ("gyroscope",)) -> ImuFile:
    """The IMU readings of a recording (its ``topic`` messages) or of a Sensor Logger JSON-lines file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError as exc:
        raise StreamFileError(f"{path}: cannot read: {exc.strerror}") from exc
    if head == MAGIC:
        got = _read_recording(path, topic)
    else:
        got = _read_json_lines(path, acc_names, gyro_names)
    if len(got.t) == 0:
        raise StreamFileError(f"{path}: no IMU readings in the file"
                              + (f" ({'; '.join(got.notes)})" if got.notes else ""))
    return got


def _read_recording(path: Path, topic: str) -> ImuFile:
    report = ScanReport(path)
    ts, accs, gyros, quality, flags, sources, bad = [], [], [], [], [], set(), 0
    try:
        for record in scan(path, report, topics=lambda name: name == topic):
            if record.kind != "message":
                continue
            try:
                batch = ImuBatch.from_body(record.decode().body)
            except (EnvelopeError, BodyError, TypeError, ValueError):
                bad += 1
                continue
            if not len(batch):
                continue
            ts.append(batch.t)
            accs.append(batch.acc.astype(np.float64))
            gyros.append(batch.gyro.astype(np.float64))
            quality.append(np.full(len(batch), batch.quality))
            flags += [set(batch.flags)] * len(batch)
            sources.add(batch.source)
    except RecordingError as exc:
        raise StreamFileError(str(exc)) from exc
    except OSError as exc:
        raise StreamFileError(f"{path}: cannot read: {exc.strerror}") from exc
    notes = report.describe()
    if bad:
        notes.append(f"{bad} {topic} message(s) did not decode and were skipped")
    if not ts:
        return ImuFile(path, "recording", np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                       notes=notes + [f"no {topic} messages"])
    t = np.concatenate(ts)
    order = np.argsort(t, kind="stable")
    return ImuFile(path, "recording", t[order], np.concatenate(accs)[order], np.concatenate(gyros)[order],
                   np.concatenate(quality)[order], [flags[i] for i in order], sources, notes)


def _read_json_lines(path: Path, acc_names: tuple[str, ...], gyro_names: tuple[str, ...]) -> ImuFile:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StreamFileError(f"{path}: neither a recording (MCAP) nor a JSON-lines text file ({exc.reason} at byte "
                              f"{exc.start})") from exc
    except OSError as exc:
        raise StreamFileError(f"{path}: cannot read: {exc.strerror}") from exc
    parser = EntryParser(acc_names, gyro_names)
    parts, bad = parser.parse_lines(text, where=f"{path.name} line")
    notes = []
    if bad and not parts:
        raise StreamFileError(f"{path}: not a Sensor Logger JSON-lines file: {bad[0]}"
                              + (f" (and {len(bad) - 1} more bad lines)" if len(bad) > 1 else ""))
    if bad:
        notes.append(f"{len(bad)} bad line(s) skipped, the first: {bad[0]}")
    if parser.ignored:
        notes.append(f"{parser.ignored} entries of other sensors ignored (taken: {', '.join(acc_names)} and "
                     f"{', '.join(gyro_names)})")
    t, acc, gyro, no_gyro = merge_readings(parts)
    if no_gyro:
        notes.append(f"{no_gyro} accelerometer reading(s) without a gyroscope reading near them: gyro taken as 0")
    return ImuFile(path, "json-lines", t, acc, gyro, np.ones(len(t)), [set()] * len(t), set(), notes)


@dataclass
class Cut:
    sample: Sample
    quality: float
    problems: list[str]
    """Why the take is implausible (sample validation, dropouts); empty when good."""
    t_start: float
    """Start of the sample, seconds from the first reading of the file."""
    t_end: float


def cut_sample(data: ImuFile, start: float, end: float, settings: SegmentationSettings | None = None, *,
               exact: bool = False) -> Cut:
    """The sample of the motion in [start, end] (seconds from the first reading); raises StreamFileError."""
    where = f"{data.path}: {start:g}..{end:g} s"
    if not end > start:
        raise StreamFileError(f"{where}: --end must be after --start")
    if start < 0 or start > data.duration_s:
        raise StreamFileError(f"{where}: no IMU readings in that range (the file's readings span "
                              f"0..{data.duration_s:.2f} s from its first one)")
    rel = data.t - data.t0
    if exact:
        inside = (rel >= start) & (rel <= end)
        if inside.sum() < 2:
            raise StreamFileError(f"{where}: {int(inside.sum())} IMU reading(s) in that range")
        idx = np.flatnonzero(inside)
        energy = motion_energy(data.acc[idx], data.gyro[idx])
        quiet = max(float(np.percentile(energy, 10)), 1e-6)
        segment = Segment(data.t[idx], data.acc[idx].astype(np.float32), data.gyro[idx].astype(np.float32),
                          float(energy.max()), quiet)
    else:
        segment, idx = _segment_in(data, rel, start, end, settings or SegmentationSettings(), where)
    quality = float(np.mean(data.quality[idx]))
    flags = set().union(*[data.flags[i] for i in idx]) if data.flags else set()
    score, problems = score_sample(segment, quality, flags)
    sample = Sample(segment.t - segment.t[0], segment.acc, segment.gyro, quality=round(score, 4),
                    source=f"file:{data.path.name}@{start:g}-{end:g}", origin=USER)
    return Cut(sample, score, problems, float(segment.t[0] - data.t0), float(segment.t[-1] - data.t0))


def _segment_in(data: ImuFile, rel: np.ndarray, start: float, end: float, settings: SegmentationSettings,
                where: str) -> tuple[Segment, np.ndarray]:
    window = (rel >= start - LEAD_S) & (rel <= end + TAIL_S)
    if ((rel >= start) & (rel <= end)).sum() < 2:
        raise StreamFileError(f"{where}: no IMU readings in that range")
    idx = np.flatnonzero(window)
    t, acc, gyro = data.t[idx], data.acc[idx], data.gyro[idx]
    segmenter = Segmenter(settings)
    # Start the floor at the window's rest level, as if the segmenter had been listening at rest:
    # the window may begin in the middle of another motion.
    energy = motion_energy(acc, gyro)
    width = max(1, int(round(settings.smooth_s / max(float(np.median(np.diff(t))) if len(t) > 1 else 0.01, 1e-4))))
    smoothed = np.convolve(energy, np.ones(width) / width, mode="valid") if len(energy) >= width else energy
    quietest = float(np.percentile(smoothed, 10))
    segmenter.noise_floor = float(np.mean(smoothed[smoothed <= REST_FACTOR * quietest]))
    segments = segmenter.feed(t, acc, gyro)
    inside = []
    for seg in segments:
        s0, s1 = seg.t_start - data.t0, seg.t_end - data.t0
        if max(0.0, min(s1, end) - max(s0, start)) >= MIN_INSIDE * max(s1 - s0, 1e-9):
            inside.append(seg)
    if not inside:
        found = ", ".join(f"{s.t_start - data.t0:.2f}..{s.t_end - data.t0:.2f}" for s in segments)
        still = " (a motion is still going on at the end of the range)" if segmenter.active else ""
        raise StreamFileError(f"{where}: no motion found inside the range{still}; motions the segmenter found "
                              f"nearby: {found or 'none'} s. Widen the range, or take it as it is with --exact")
    if len(inside) > 1:
        spans = ", ".join(f"{s.t_start - data.t0:.2f}..{s.t_end - data.t0:.2f}" for s in inside)
        raise StreamFileError(f"{where}: {len(inside)} motions in the range ({spans} s); give a range around one")
    seg = inside[0]
    chosen = idx[(t >= seg.t_start) & (t <= seg.t_end)]
    return seg, chosen


def file_tell(data: ImuFile) -> str:
    """Why the file's stream looks like the synthetic sensor rather than a phone ('' when it does not)."""
    return synthetic_tell(data.sources, np.diff(data.t[: 2000]))
