"""Speech segmentation: webrtcvad on 30 ms frames, smoothed, cut into segments.

``SpeechSegmenter`` is the one implementation, used by the ``vad`` actor and
by ``sensorium batch audio``; it knows nothing of the bus. Feed it 16 kHz
mono int16 of one stream in pieces of any length; it returns ``VadState``
changes and finished ``SpeechSegment``s.

Smoothing follows py-webrtcvad's ``vad_collector``: speech starts when at
least ``ratio`` of the frames in the last ``start_window_ms`` are voiced, and
ends when at least ``ratio`` of the frames in the last ``hangover_ms`` are
unvoiced. Reported boundaries are the first and last *voiced* frames (not the
edges of the windows), and the segment's audio carries ``pad_ms`` more on
each side (pre-roll kept from before the trigger, hangover audio after), so
Whisper hears the onset and the decay. A segment longer than
``max_segment_s`` is cut there and the next one starts at once; one shorter
than ``min_segment_ms`` of speech is dropped (counted).

The per-frame work is kept to webrtcvad's C call on a bytes slice and a few
integer operations (the last frames' flags are bits of one int; a window's
voiced count is a masked ``bit_count``, taken only on frames that can flip the
state); audio is kept as the bytes of the fed chunks and joined once when a
segment closes. Per chunk there is one copy out of the caller's array and a
little bookkeeping, so the segmenter runs at ~0.95x a bare
``Vad.is_speech`` loop with 1 s chunks and ~0.84x with 100 ms ones
(``bench/audio.py``).
"""

from __future__ import annotations

import itertools
from collections import deque
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import _webrtcvad  # the C extension: webrtcvad.Vad.is_speech adds a Python call per frame
import webrtcvad

from bus.bodies.audio import SPEECH_RATE_HZ, SpeechSegment, SpeechSoFar, VadState

FRAME_MS = 30
FRAME_SAMPLES = SPEECH_RATE_HZ * FRAME_MS // 1000
FRAME_S = FRAME_MS / 1000
FRAME_BYTES = FRAME_SAMPLES * 2
_INT16 = np.dtype(np.int16)


@dataclass(frozen=True)
class SegmenterParams:
    aggressiveness: int = 3
    """webrtcvad mode 0..3; 3 filters non-speech hardest."""
    start_window_ms: int = 300
    """Window of the start decision, ms (vad_collector's padding)."""
    hangover_ms: int = 450
    """Window of the end decision, ms: speech ends after about this much silence."""
    ratio: float = 0.9
    """Fraction of voiced (start) or unvoiced (end) frames in the window that flips the state."""
    pad_ms: int = 210
    """Audio kept before the first and after the last voiced frame, ms (at most the windows' length)."""
    min_segment_ms: int = 250
    """Speech shorter than this (first to last voiced frame) is dropped, ms."""
    max_segment_s: float = 20.0
    """Longer speech is cut into segments of this length, seconds."""

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"aggressiveness {self.aggressiveness} not in 0..3")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio {self.ratio} not in (0, 1]")

    @property
    def start_frames(self) -> int:
        return max(1, self.start_window_ms // FRAME_MS)

    @property
    def end_frames(self) -> int:
        return max(1, self.hangover_ms // FRAME_MS)

    @property
    def pad_frames(self) -> int:
        return min(self.pad_ms // FRAME_MS, self.end_frames)

    @property
    def max_frames(self) -> int:
        return max(1, int(self.max_segment_s * 1000) // FRAME_MS)


@dataclass
class SegmenterStats:
    frames: int = 0
    voiced_frames: int = 0
    segments: int = 0
    """Segments emitted."""
    speech_s: float = 0.0
    """Total speech in emitted segments (first to last voiced frame), seconds."""
    too_short: int = 0
    """Segments dropped under min_segment_ms."""
    splits: int = 0
    """Cuts at max_segment_s."""

    def to_dict(self) -> dict[str, float]:
        return {"frames": self.frames, "voiced_frames": self.voiced_frames, "segments": self.segments,
                "speech_s": round(self.speech_s, 3), "too_short": self.too_short, "splits": self.splits}


@dataclass
class _Open:
    """The segment being collected."""

    pcm_first: int
    """Frame index of the first frame of audio held."""
    speech_first: int
    """Frame index of the first voiced frame."""
    last_voiced: int
    segment_id: int
    continued: bool = False
    """Opened by a cut at max_segment_s: speech was already going on (no minimum length)."""
    partial_mark: int = -1
    """Frame index at which ``so_far`` last gave this segment's audio (-1: never)."""


class SpeechSegmenter:
    """Segments one 16 kHz mono stream. Not thread-safe; one per stream."""

    def __init__(self, params: SegmenterParams = SegmenterParams(), *, stream: str = "", t0: float = 0.0,
                 ids: Iterator[int] | None = None) -> None:
        self.params = params
        self.stream = stream
        self.t0 = t0
        self.stats = SegmenterStats()
        self._vad = webrtcvad.Vad(params.aggressiveness)
        self._ids = ids if ids is not None else itertools.count()
        p = params
        self._start_mask = (1 << p.start_frames) - 1
        self._end_mask = (1 << p.end_frames) - 1
        self._start_needed = math.ceil(p.ratio * p.start_frames - 1e-9)
        """Voiced frames in the start window that open a segment."""
        self._end_voiced_max = p.end_frames - math.ceil(p.ratio * p.end_frames - 1e-9)
        """At most this many voiced frames in the end window close it."""
        # feed() checks the start window only on voiced frames and the end window only on unvoiced ones: the
        # counts cannot cross the other way. That holds from the first frame after a state change too as long
        # as the window that just closed a segment could not also open one (and vice versa), as with the
        # defaults; other settings check every frame.
        slack = max(0, p.start_frames - p.end_frames)
        check_all = not (1 <= self._start_needed and self._end_voiced_max + slack < self._start_needed)
        self._consts = (self._start_mask, self._end_mask, self._start_mask | self._end_mask, self._start_needed,
                        self._end_voiced_max, p.max_frames, check_all)
        """What feed()'s loop reads, fetched in one attribute load."""
        self._handle = self._vad._vad
        self._hist = 0
        """Bit i: frame (current - i) was voiced."""
        self._keep_frames = p.start_frames + p.pad_frames
        self._pending = b""
        """Bytes of a partial frame, waiting for the next feed."""
        self._frame_index = 0
        """Frames processed so far; the next frame's index."""
        self._blocks: deque[bytes] = deque()
        """The stream's recent bytes as fed, in order: the open segment's audio, or the next pre-roll's."""
        self._held_from = 0
        """Stream byte offset of the first held block."""
        self._open: _Open | None = None
        self._last_pcm_stop = 0
        """Pre-roll never reaches back into audio an earlier segment already carried."""

    @property
    def in_speech(self) -> bool:
        return self._open is not None

    def _t(self, frame_index: int) -> float:
        return round(self.t0 + frame_index * FRAME_S, 4)

    def feed(self, pcm: np.ndarray) -> list[VadState | SpeechSegment]:
        """Take the next samples (int16) of the stream; return state changes and finished segments, in order."""
        if pcm.dtype is not _INT16 and pcm.dtype != _INT16:
            raise TypeError(f"SpeechSegmenter takes int16 samples, got {pcm.dtype}")
        # Bytes all the way: one copy out of the caller's array (joined to a partial frame left over), and
        # frames are sliced from it as bytes, which webrtcvad reads faster than memoryview slices.
        new = pcm.tobytes()
        self._blocks.append(new)
        pending = self._pending
        data = pending + new if pending else new
        usable = len(data) // FRAME_BYTES * FRAME_BYTES
        self._pending = data[usable:] if usable else data
        if not usable:
            return []
        base = self._frame_index
        out: list[VadState | SpeechSegment] = []
        start_mask, end_mask, hist_mask, start_needed, end_voiced_max, max_frames, check_all = self._consts
        process, handle, rate, frame_samples, frame_bytes = _webrtcvad.process, self._handle, SPEECH_RATE_HZ, \
            FRAME_SAMPLES, FRAME_BYTES
        hist, seg, voiced_total, j = self._hist, self._open, 0, base - 1
        if seg is not None:
            last_voiced, split_at = seg.last_voiced, seg.speech_first + max_frames - 1
        for k in range(0, usable, frame_bytes):
            j += 1
            voiced = process(handle, rate, data[k:k + frame_bytes], frame_samples)
            hist = ((hist << 1) | voiced) & hist_mask
            if seg is None:
                if voiced:
                    voiced_total += 1
                elif not check_all:
                    continue  # an unvoiced frame cannot raise the start window's count (see __init__)
                window = hist & start_mask
                if window.bit_count() >= start_needed:
                    seg = self._start(j, window, out)
                    last_voiced, split_at = seg.last_voiced, seg.speech_first + max_frames - 1
            else:
                if voiced:
                    voiced_total += 1
                    last_voiced = j
                    if j < split_at and not check_all:
                        continue  # nor can a voiced one lower the end window's count
                if (hist & end_mask).bit_count() <= end_voiced_max:
                    seg.last_voiced = last_voiced
                    out += self._close(last_voiced + 1, held_until=j + 1, split=False)
                    seg = None
                elif j >= split_at:
                    seg.last_voiced = last_voiced
                    out += self._close(j + 1, held_until=j + 1, split=True)
                    # Speech goes on: the next segment starts right after the cut, no vad state change.
                    seg = self._open = _Open(pcm_first=j + 1, speech_first=j + 1, last_voiced=j + 1,
                                             segment_id=next(self._ids), continued=True)
                    last_voiced, split_at = j + 1, j + max_frames
        j += 1
        if seg is not None:
            seg.last_voiced = last_voiced
        self._hist = hist
        self._frame_index = j
        stats = self.stats
        stats.frames += j - base
        stats.voiced_frames += voiced_total
        # Keep the open segment's audio, or else just enough for the next pre-roll.
        keep_from = (seg.pcm_first if seg is not None else j - self._keep_frames) * FRAME_BYTES
        blocks, held_from = self._blocks, self._held_from
        while blocks and held_from + len(blocks[0]) <= keep_from:
            held_from += len(blocks.popleft())
        self._held_from = held_from
        return out

    def _start(self, j: int, window: int, out: list) -> _Open:
        """Open a segment at frame ``j``; ``window``'s bit i is frame j - i."""
        first_voiced = j - (window.bit_length() - 1)
        last_voiced = j - ((window & -window).bit_length() - 1)
        seg = _Open(pcm_first=max(first_voiced - self.params.pad_frames, self._last_pcm_stop, 0),
                    speech_first=first_voiced, last_voiced=last_voiced, segment_id=next(self._ids))
        self._open = seg
        out.append(VadState(state="speech_start", t=self._t(first_voiced), stream=self.stream,
                            segment_id=seg.segment_id))
        return seg

    def so_far(self, every_s: float, first_s: float | None = None) -> SpeechSoFar | None:
        """The open segment's audio up to now, when at least ``first_s`` (default ``every_s``) of speech came
        since its start, or ``every_s`` since the last call that returned audio; else None (also outside
        speech). For ``audio.partial``."""
        seg = self._open
        if seg is None or every_s <= 0:
            return None
        since, wait_s = (seg.speech_first, every_s if first_s is None else first_s) if seg.partial_mark < 0 else \
            (seg.partial_mark, every_s)
        if (self._frame_index - since) * FRAME_S < wait_s - 1e-9:
            return None
        seg.partial_mark = self._frame_index
        return SpeechSoFar(pcm=self._audio(seg.pcm_first, self._frame_index), t_start=self._t(seg.speech_first),
                           segment_id=seg.segment_id, pcm_t_start=self._t(seg.pcm_first), stream=self.stream)

    def flush(self) -> list[VadState | SpeechSegment]:
        """End of stream: close an open segment at its last voiced frame."""
        if self._pending:
            # The partial frame is dropped from the held audio too, so that what is fed next (if anything)
            # is held at its own frame's place.
            held = b"".join(self._blocks)[:-len(self._pending)]
            self._blocks = deque([held] if held else [])
            self._pending = b""
        if self._open is None:
            return []
        return self._close(self._open.last_voiced + 1, held_until=self._frame_index, split=False)

    def _audio(self, first: int, stop: int) -> np.ndarray:
        """Samples of frames [first, stop) from the blocks held, as a new (writable) array."""
        # One join in C whatever the number of blocks (a long segment fed in 10 ms chunks holds thousands),
        # then trimmed in place: the segment's audio is copied once.
        held = bytearray().join(self._blocks)
        del held[stop * FRAME_BYTES - self._held_from:]
        del held[:first * FRAME_BYTES - self._held_from]
        return np.frombuffer(held, dtype=np.int16)

    def _close(self, speech_stop: int, *, held_until: int, split: bool) -> list[VadState | SpeechSegment]:
        """Finish the open segment; its speech ends before frame ``speech_stop``."""
        seg = self._open
        assert seg is not None
        self._open = None
        p = self.params
        pcm_stop = speech_stop if split else min(speech_stop + p.pad_frames, held_until)
        self._last_pcm_stop = pcm_stop
        out: list[VadState | SpeechSegment] = []
        if not split:
            out.append(VadState(state="speech_end", t=self._t(speech_stop), stream=self.stream,
                                segment_id=seg.segment_id))
        speech_frames = speech_stop - seg.speech_first
        if speech_frames * FRAME_MS < p.min_segment_ms and not (split or seg.continued):
            self.stats.too_short += 1
            return out
        self.stats.segments += 1
        self.stats.splits += int(split)
        self.stats.speech_s += speech_frames * FRAME_S
        out.append(SpeechSegment(pcm=self._audio(seg.pcm_first, pcm_stop), t_start=self._t(seg.speech_first),
                                 t_end=self._t(speech_stop), segment_id=seg.segment_id, stream=self.stream,
                                 split=split, pcm_t_start=self._t(seg.pcm_first)))
        return out
