"""Generated sound events, pure numpy: what the shipped head is trained on and what the tests mix.

Each generator takes a ``numpy.random.Generator`` and a length in samples
(16 kHz) and returns float32 audio at about unit RMS; ``render`` sets the
level and adds a background. What each class is, honestly:

* ``alarm`` - electronic alarms: beeping tones (700-3500 Hz, some with odd
  harmonics like a piezo buzzer), sirens (a tone swept sinusoidally or in
  saw-tooth ramps), two-tone alternations;
* ``clapping`` - hand claps: noise bursts of 3-15 ms with an exponential
  decay through one or two broad resonances, either a few people clapping
  in rhythm (2-7 claps/s each) or applause (15-60 claps/s at random);
* ``laughter`` - *synthesized* laughter, not recorded: bouts of 3-10 voiced
  "ha" bursts (70-150 ms, 4-6 per second) of a glottal pulse train at
  180-420 Hz falling through the bout, through /a/ formants, each burst
  opening with breathy "h" noise. It is what a laugh's rhythm and timbre
  look like on a mel patch, not a human laugh;
* ``speech`` - comes from espeak-ng (``actors.audio_events.train``); the tests use
  the shipped espeak recording ``actors/lib/audio/fixtures/demo.wav``;
* ``noise`` - white, pink, brown noise, mains hum with harmonics, fan-like
  low-passed noise, at -55..-15 dBFS;
* ``silence`` - digital silence or noise below -70 dBFS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

RATE_HZ = 16_000
EVENT_CLASSES = ("alarm", "clapping", "laughter", "speech")
BACKGROUND_CLASSES = ("noise", "silence")
CLASSES = EVENT_CLASSES + BACKGROUND_CLASSES
"""The shipped head's classes, in output order."""

Rng = np.random.Generator


def _norm(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return (x / rms).astype(np.float32) if rms > 0 else x.astype(np.float32)


def _ramp(gate: np.ndarray, ms: float = 5.0) -> np.ndarray:
    """Smooth a 0/1 gate with a moving average of ``ms`` (no clicks at the edges)."""
    k = max(int(RATE_HZ * ms / 1000), 1)
    return np.convolve(gate.astype(np.float32), np.ones(k, np.float32) / k, mode="same")


def _spectral(x: np.ndarray, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter ``x`` by a magnitude response ``gain(freq_hz)`` (zero phase, via one FFT)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / RATE_HZ)
    return np.fft.irfft(spec * gain(freqs), n=x.size).astype(np.float32)


def _resonance(centre: float, width: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda f: 1.0 / (1.0 + ((f - centre) / width) ** 2)


def alarm(rng: Rng, n: int) -> np.ndarray:
    t = np.arange(n) / RATE_HZ
    kind = rng.integers(4)
    if kind == 0:  # beeping
        f = rng.uniform(700, 3500)
        period, duty = rng.uniform(0.2, 1.0), rng.uniform(0.3, 0.7)
        phase = 2 * np.pi * f * t
        gate = _ramp(((t + rng.uniform(0, period)) % period) < duty * period)
    elif kind == 1:  # sinusoidal siren
        fc, dev, rate = rng.uniform(600, 1300), rng.uniform(150, 600), rng.uniform(0.3, 3.0)
        phase = 2 * np.pi * np.cumsum(fc + dev * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3))) / RATE_HZ
        gate = np.ones(n, np.float32)
    elif kind == 2:  # saw-tooth sweep siren
        lo, hi, period = rng.uniform(500, 1000), rng.uniform(1200, 2500), rng.uniform(0.15, 1.5)
        f = lo + (hi - lo) * (((t + rng.uniform(0, period)) % period) / period)
        phase = 2 * np.pi * np.cumsum(f) / RATE_HZ
        gate = np.ones(n, np.float32)
    else:  # two-tone
        f1, step, period = rng.uniform(500, 1500), rng.uniform(1.2, 1.6), rng.uniform(0.2, 0.7)
        f = np.where(((t + rng.uniform(0, 2 * period)) % (2 * period)) < period, f1, f1 * step)
        phase = 2 * np.pi * np.cumsum(f) / RATE_HZ
        gate = np.ones(n, np.float32)
    tone = np.sin(phase)
    if rng.random() < 0.5:  # a buzzer's odd harmonics
        tone = tone + np.sin(3 * phase) / 3 + np.sin(5 * phase) / 5 * (rng.random() < 0.5)
    return _norm(tone * gate)


def clapping(rng: Rng, n: int) -> np.ndarray:
    out = np.zeros(n + RATE_HZ // 10, np.float32)
    if rng.random() < 0.5:  # a few people clapping in rhythm
        times = []
        for _person in range(rng.integers(1, 4)):
            rate = rng.uniform(2, 7)
            t = rng.uniform(0, 1 / rate)
            while t < n / RATE_HZ:
                times.append(t)
                t += rng.normal(1 / rate, 0.08 / rate)
    else:  # applause
        rate = rng.uniform(15, 60)
        times = list(np.cumsum(rng.exponential(1 / rate, int(rate * n / RATE_HZ * 1.5) + 2)))
    for t0 in times:
        start = int(t0 * RATE_HZ)
        if start >= n:
            continue
        length = int(rng.uniform(0.003, 0.015) * RATE_HZ) + int(0.06 * RATE_HZ)
        k = np.arange(length) / RATE_HZ
        env = np.minimum(k / 0.0008, 1.0) * np.exp(-k / rng.uniform(0.005, 0.02))
        out[start:start + length] += rng.normal(0, 1, length).astype(np.float32) * env * rng.uniform(0.3, 1.0)
    out = out[:n]
    c1, c2 = rng.uniform(700, 2500), rng.uniform(1500, 4500)
    return _norm(_spectral(out, lambda f: _resonance(c1, rng.uniform(400, 1500))(f)
                           + 0.5 * _resonance(c2, 1500)(f) + 0.05))


def _voiced(rng: Rng, f0: np.ndarray, formants: list[tuple[float, float]]) -> np.ndarray:
    """A glottal pulse train following ``f0`` (Hz per sample) through vowel formants (centre, width)."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE_HZ
    src = np.zeros(f0.size, np.float64)
    for k in range(1, 30):
        audible = (k * f0) < 7000
        if not audible.any():
            break
        src += np.where(audible, np.sin(k * phase) / k ** 1.2, 0.0)
    return _spectral(src.astype(np.float32), lambda f: sum(g * _resonance(c, w)(f) for (c, w), g
                                                          in zip(formants, (1.0, 0.7, 0.3))) + 0.02)


def laughter(rng: Rng, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    pos = int(rng.uniform(0, 0.2) * RATE_HZ)
    while pos < n:
        formants = [(rng.uniform(650, 950), rng.uniform(80, 150)), (rng.uniform(1050, 1500), rng.uniform(100, 200)),
                    (rng.uniform(2300, 2900), rng.uniform(150, 300))]
        f0_start = rng.uniform(180, 420)
        bursts = int(rng.integers(3, 11))
        fall = rng.uniform(0.0, 0.3)
        interval = rng.uniform(0.16, 0.26)
        for b in range(bursts):
            dur = rng.uniform(0.07, 0.15)
            m = int(dur * RATE_HZ)
            if pos + m > n:
                break
            f0 = f0_start * (1 - fall * b / bursts) * (1 + rng.normal(0, 0.04))
            contour = f0 * np.linspace(1.05, 0.92, m)
            voiced = _voiced(rng, contour, formants)
            breath = _spectral(rng.normal(0, 1, m).astype(np.float32),
                               lambda f: _resonance(formants[1][0], 600)(f) + 0.2)
            k = np.arange(m) / m
            h = np.clip(rng.uniform(0.2, 0.45) - k, 0, None) * 3  # "h" before the vowel
            env = np.sin(np.pi * k) ** 0.7
            out[pos:pos + m] += (_norm(voiced) * env * (1 - np.minimum(h, 1)) + 0.4 * _norm(breath) * h) \
                * rng.uniform(0.6, 1.0)
            pos += int((interval + rng.normal(0, 0.02)) * RATE_HZ)
        pos += int(rng.uniform(0.1, 0.4) * RATE_HZ)
    return _norm(out)


def noise(rng: Rng, n: int) -> np.ndarray:
    kind = rng.integers(5)
    white = rng.normal(0, 1, n).astype(np.float32)
    if kind == 0:
        return _norm(white)
    if kind in (1, 2):  # pink (1/f) or brown (1/f^2) power
        beta = 1.0 if kind == 1 else 2.0
        return _norm(_spectral(white, lambda f: 1.0 / np.maximum(f, 20.0) ** (beta / 2)))
    if kind == 3:  # mains hum with harmonics, a little hiss
        t = np.arange(n) / RATE_HZ
        mains = 50.0 if rng.random() < 0.5 else 60.0
        hum = sum(np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 6.3)) / h ** rng.uniform(0.5, 1.5)
                  for h in range(1, 8))
        return _norm(_norm(hum) + 0.1 * white)
    cutoff = rng.uniform(200, 1500)  # fan: low-passed noise, slowly modulated
    fan = _norm(_spectral(white, lambda f: 1.0 / (1.0 + (f / cutoff) ** 4)))
    return _norm(fan * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 5) * np.arange(n) / RATE_HZ)))


def silence(rng: Rng, n: int) -> np.ndarray:
    if rng.random() < 0.5:
        return np.zeros(n, np.float32)
    return noise(rng, n)  # render() puts it below -70 dBFS


GENERATORS: dict[str, Callable[[Rng, int], np.ndarray]] = {
    "alarm": alarm, "clapping": clapping, "laughter": laughter, "noise": noise, "silence": silence,
}
"""Every class but speech (espeak-ng, or a recording)."""


def db(x: float) -> float:
    return float(10 ** (x / 20))


def to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def background(rng: Rng, n: int, level_dbfs: float) -> np.ndarray:
    return noise(rng, n) * db(level_dbfs)


def render(rng: Rng, label: str, n: int, source: np.ndarray | None = None) -> np.ndarray:
    """One training clip of class ``label``: the sound at a random level over a background; int16.

    Events at -35..-8 dBFS RMS over noise 6-35 dB below them (or silence);
    noise at -55..-15 dBFS; silence below -70 dBFS.
    """
    if label == "silence":
        return to_int16(silence(rng, n) * db(rng.uniform(-95, -72)))
    if label == "noise":
        return to_int16(noise(rng, n) * db(rng.uniform(-55, -15)))
    level = rng.uniform(-35, -8)
    sound = _norm(source) if source is not None else GENERATORS[label](rng, n)
    bg = background(rng, n, level - rng.uniform(6, 35)) if rng.random() < 0.85 else 0.0
    return to_int16(sound * db(level) + bg)


def make_mix(rng: Rng, speech: list[np.ndarray], per_class: int = 5, gap_s: tuple[float, float] = (1.5, 3.0),
             event_s: tuple[float, float] = (1.5, 3.0), background_dbfs: float = -50.0,
             ) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A recording with ``per_class`` events of each class apart in time, over continuous pink noise.

    ``speech``: float or int16 clips (at least ``per_class``), used at their own length.
    Returns (int16 pcm, [(label, t_start, t_end)]) with the true spans in seconds.
    """
    labels = [label for label in EVENT_CLASSES for _ in range(per_class)]
    rng.shuffle(labels)
    spans, pieces, pos, speech_i = [], [], 0, 0
    for label in labels:
        gap = int(rng.uniform(*gap_s) * RATE_HZ)
        pieces.append(np.zeros(gap, np.float32))
        pos += gap
        if label == "speech":
            sound = _norm(speech[speech_i % len(speech)].astype(np.float32))
            speech_i += 1
        else:
            sound = GENERATORS[label](rng, int(rng.uniform(*event_s) * RATE_HZ))
        sound = sound * db(rng.uniform(-30, -12))
        pieces.append(sound)
        spans.append((label, pos / RATE_HZ, (pos + sound.size) / RATE_HZ))
        pos += sound.size
    tail = int(gap_s[0] * RATE_HZ)
    pieces.append(np.zeros(tail, np.float32))
    mix = np.concatenate(pieces)
    mix += _norm(_spectral(rng.normal(0, 1, mix.size).astype(np.float32),
                           lambda f: 1.0 / np.sqrt(np.maximum(f, 20.0)))) * db(background_dbfs)
    return to_int16(mix), spans


@dataclass
class EventScore:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_events(truth: list[tuple[str, float, float]], found: list[tuple[str, float, float]],
                 min_overlap_s: float = 0.2) -> dict[str, EventScore]:
    """Event-level scores per label and ``"all"``: a found event is a hit when it overlaps a true event of its
    label by ``min_overlap_s``; each true event is hit at most once, so a second piece of one event counts as a
    false positive."""
    scores: dict[str, EventScore] = {}
    used: set[int] = set()
    for label in sorted({s[0] for s in truth} | {f[0] for f in found}):
        tp = fp = 0
        for lab, a, b in found:
            if lab != label:
                continue
            hit = next((i for i, (tl, ta, tb) in enumerate(truth)
                        if tl == label and i not in used and min(b, tb) - max(a, ta) >= min_overlap_s), None)
            if hit is None:
                fp += 1
            else:
                used.add(hit)
                tp += 1
        fn = sum(1 for i, t in enumerate(truth) if t[0] == label and i not in used)
        scores[label] = EventScore(tp, fp, fn)
    scores["all"] = EventScore(*(sum(getattr(s, k) for s in scores.values()) for k in ("tp", "fp", "fn")))
    return scores
