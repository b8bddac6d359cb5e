"""``sensorium batch audio DIR [--out FILE]``: transcripts and VAD statistics for a folder of recordings.

The nightly job of a voice product, in one process, as fast as the machine
allows: each file is decoded in chunks (``decode_file``), segmented
(``SpeechSegmenter``, the vad actor's class) and each segment transcribed as
soon as it closes (``Transcriber``, the speech actor's class). Memory holds
one chunk, one open segment (at most ``max_segment_s``) and the file's
result line, whatever the length of the input.

Output: one JSON object per line and per file (``file``, ``status`` ok/error,
``error``, ``duration_s``, ``text``, ``segments``, ``vad``, ``transcribe_s``,
``rtf``). With ``--out FILE`` the run is resumable: files already in FILE are
skipped (``--retry-failed`` redoes those that failed), each line is fsynced
as soon as its file is done, a line torn by a crash is cut off on the next
run, a lock keeps two runs from writing the same FILE, and at the end FILE
holds one line per file (a retried file's newest). Progress goes to stderr
(a bar on a terminal, lines otherwise). Exit code 0 when every file has an ok
line, 1 otherwise (a file that failed in an earlier run and was skipped counts).

``--workers N`` / ``--scheduler ADDRESS`` run the files on a Dask cluster
(``actors.lib.executor``): the same lines, in the order files finish.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from actors.lib.audio.decode import RATE_HZ, AudioInputError, audio_files, decode_file
from actors.lib.audio.segmenter import SegmenterParams, SpeechSegmenter
from actors.speech.transcriber import Transcriber, TranscriberParams
from actors.lib.batch import Done, run_with_output, write_record
from actors.lib.executor import ClusterError, Deadline, Task, add_cluster_args, executor_from_args
from actors.lib.progress import progress as progress_bar
from bus.bodies.audio import SpeechSegment
from actors.speech.settings import SpeechSettings
from config.schema import Config

CHUNK_SAMPLES = RATE_HZ  # 1 s per decode step: fewer Python calls, still a bounded buffer


def parse_args(argv: list[str]) -> argparse.Namespace:
    d = SpeechSettings()
    v = SegmenterParams()
    parser = argparse.ArgumentParser(
        prog="sensorium batch audio",
        description="Transcripts and VAD statistics for a folder of recordings: one JSON line per file (file, "
        "status, error, duration_s, text, segments, vad, transcribe_s, rtf). With --out the run is resumable. "
        "Exit 0 when every file has an ok line, 1 when one failed (in this run or an earlier one).")
    parser.add_argument("dir", type=Path, help="folder of recordings (searched recursively), or one file")
    parser.add_argument("--out", default="-", help="JSON lines file (resumable); '-' (default): stdout")
    parser.add_argument("--retry-failed", action="store_true", help="redo files whose line in --out is an error")
    parser.add_argument("--model", default=d.model_path, help="CTranslate2 Whisper folder (default: tiny.en)")
    parser.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"],
                        help="where Whisper runs (default %(default)s)")
    parser.add_argument("--threads", type=int, default=d.threads, help="CPU threads for Whisper (default %(default)s)")
    parser.add_argument("--beam-size", type=int, default=d.beam_size,
                        help="Whisper's beam search width; 1: greedy, fastest (default %(default)s)")
    parser.add_argument("--language", default=d.language, help="spoken language code (default %(default)s)")
    parser.add_argument("--temperature-fallback", action="store_true",
                        help="re-decode bad-looking segments at higher temperatures (slower, more memory)")
    parser.add_argument("--aggressiveness", type=int, default=v.aggressiveness, choices=range(4),
                        help="VAD aggressiveness, 0 (keeps most) to 3 (strictest) (default %(default)s)")
    parser.add_argument("--max-segment-s", type=float, default=v.max_segment_s,
                        help="longest speech segment in seconds before it is cut (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_cluster_args(parser)
    return parser.parse_args(argv)


def process_file(path: Path, params: SegmenterParams, transcriber: Transcriber, progress: Any = None,
                 deadline: Deadline | None = None) -> dict[str, Any]:
    """One file's result line; an AudioInputError becomes status 'error' (with what was found before it).
    ``deadline`` is checked after each chunk (``FileTimeLimit`` goes to the executor)."""
    segmenter = SpeechSegmenter(params, stream=path.name)
    texts: list[str] = []
    segments: list[dict[str, Any]] = []
    decoded = 0
    transcribe_s = 0.0
    suspect = 0
    started = time.monotonic()

    def take(events: list) -> None:
        nonlocal transcribe_s, suspect
        for event in events:
            if isinstance(event, SpeechSegment):
                result = transcriber.transcribe(event.pcm, event.pcm_t_start)
                transcribe_s += result.transcribe_ms / 1000.0
                suspect += result.suspect
                if result.text:
                    texts.append(result.text)
                segments.append({"t_start": event.t_start, "t_end": event.t_end, "text": result.text,
                                 "suspect": result.suspect})

    record: dict[str, Any] = {"file": str(path.resolve()), "status": "ok", "error": ""}
    try:
        for pcm in decode_file(path, CHUNK_SAMPLES):
            decoded += pcm.size
            take(segmenter.feed(pcm))
            if deadline is not None:
                deadline.check()
            if progress is not None:
                progress.set_postfix_str(f"{path.name} {decoded / RATE_HZ:.0f} s", refresh=False)
    except AudioInputError as exc:
        record.update(status="error", error=str(exc))
    take(segmenter.flush())
    duration_s = decoded / RATE_HZ
    stats = segmenter.stats.to_dict()
    stats["speech_ratio"] = round(stats["speech_s"] / duration_s, 4) if duration_s else 0.0
    record.update(duration_s=round(duration_s, 3), text=" ".join(texts), segments=segments, vad=stats,
                  suspect_segments=suspect, transcribe_s=round(transcribe_s, 3),
                  wall_s=round(time.monotonic() - started, 3),
                  rtf=round(transcribe_s / duration_s, 4) if duration_s else None)
    return record


@dataclass(frozen=True)
class AudioJob:
    """The segmenter and Whisper settings of a run (picklable: on a cluster each worker loads Whisper once)."""

    params: SegmenterParams
    speech: SpeechSettings

    def setup(self) -> Transcriber:
        return Transcriber(TranscriberParams.from_settings(self.speech))

    def run(self, state: Transcriber, task: Task, deadline: Deadline, progress: Any = None) -> dict[str, Any]:
        return process_file(Path(task.path), self.params, state, progress, deadline)

    def failed(self, task: Task, error: str) -> dict[str, Any]:
        return {"file": task.path, "status": "error", "error": error, "duration_s": 0.0, "text": "",
                "segments": [], "vad": {}, "suspect_segments": 0, "transcribe_s": 0.0, "wall_s": 0.0, "rtf": None}


def run(args: argparse.Namespace, sink: TextIO, done: Done) -> int:
    files = audio_files(args.dir)
    if not files:
        print(f"batch audio: no audio files under {args.dir}", file=sys.stderr)
        return 1
    todo = [f for f in files if str(f.resolve()) not in done]
    if len(todo) < len(files):
        print(f"batch audio: {len(files) - len(todo)} of {len(files)} files already done, skipped", file=sys.stderr)
    failed_before = done.failed_among(str(f.resolve()) for f in files)
    if failed_before:
        print(f"batch audio: {failed_before} of them failed in an earlier run (their lines say why; "
              "--retry-failed redoes them)", file=sys.stderr)
    if not todo:
        return 1 if failed_before else 0
    params = SegmenterParams(aggressiveness=args.aggressiveness, max_segment_s=args.max_segment_s)
    speech = SpeechSettings(model_path=args.model, device=args.device, threads=args.threads,
                            beam_size=args.beam_size, language=args.language,
                            temperature_fallback=args.temperature_fallback)
    try:
        executor = executor_from_args(args, "batch audio")
    except ClusterError as exc:
        print(f"batch audio: {exc}", file=sys.stderr)
        return 2
    failed = 0
    try:
        executor.prepare(AudioJob(params, speech))
        with progress_bar(total=len(todo), unit="file", file=sys.stderr, disable=args.no_progress,
                          desc="batch audio") as progress:
            for outcome in executor.results((Task(str(f.resolve())) for f in todo), progress):
                record = outcome.record
                if record["status"] != "ok":
                    failed += 1
                    progress.write(f"batch audio: {record['error']}", file=sys.stderr)
                write_record(sink, record)
                progress.update(1)
    finally:
        executor.close()
    print(f"batch audio: {len(todo) - failed} ok, {failed} failed", file=sys.stderr)
    return 1 if failed or failed_before else 0


def main(argv: list[str], config: Config) -> int:
    args = parse_args(argv)
    return run_with_output(args.out, "batch audio", args.retry_failed, lambda sink, done: run(args, sink, done))
