"""Generate the shipped speech recording from ``fixtures/sentences.txt``.

    python -m actors.lib.audio.make_fixtures [--out DIR]

Needs espeak-ng and sox (``apt-get install -y espeak-ng sox``) — only here:
the outputs are committed, so tests and the default pipeline never need them.

    python -m actors.lib.audio.make_fixtures --commands   # the assistant's spoken commands

Writes, into ``actors/lib/audio/fixtures/`` by default:

* ``demo.wav``: 16 kHz mono int16; ``LEAD_S`` of silence, then each sentence
  spoken by espeak-ng (its own leading/trailing silence trimmed by sox) with
  ``GAP_S`` of digital silence between sentences and ``TAIL_S`` at the end.
* ``demo.json``: the sentences and the exact speech span of each, in seconds
  from the start of the file (known by construction: sample counts), sealed
  with the wav's sha256 so a stale pair is noticed.

* with ``--commands``: ``commands.flac`` and ``commands.json`` from ``commands.txt``
  (sentence | intent | slots): each command in the next of ``COMMAND_VOICES``
  (voice and speed), with its expected intent and slots and its exact span.

The output is deterministic (no dither, fixed voice and speed), so running it
again reproduces the committed files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from config.storage import sha256_file, write_atomic

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
RATE_HZ = 16_000
LEAD_S = 0.5
GAP_S = 1.2
TAIL_S = 1.0
VOICE = "en-us"
WORDS_PER_MINUTE = 150


def read_sentences(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def speak(sentence: str, folder: Path, index: int, voice: str = VOICE, words_per_minute: int = WORDS_PER_MINUTE
          ) -> np.ndarray:
    """One sentence as 16 kHz mono int16, leading and trailing silence trimmed."""
    raw = folder / f"s{index}.wav"
    trimmed = folder / f"s{index}_16k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw), sentence], check=True)
    # silence 1 ... reverse silence 1 ... reverse: trim both ends (0.1% of full scale).
    subprocess.run(["sox", "-D", str(raw), "-r", str(RATE_HZ), "-c", "1", "-b", "16", str(trimmed),
                    "silence", "1", "0.01", "0.1%", "reverse", "silence", "1", "0.01", "0.1%", "reverse"],
                   check=True)
    with wave.open(str(trimmed), "rb") as w:
        assert w.getframerate() == RATE_HZ and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def build(sentences: list[str], out: Path) -> dict:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"make_fixtures: {tool} not found; apt-get install -y espeak-ng sox")
    parts: list[np.ndarray] = [np.zeros(int(LEAD_S * RATE_HZ), np.int16)]
    spans: list[list[float]] = []
    cursor = len(parts[0])
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(sentences):
            pcm = speak(sentence, Path(tmp), i)
            spans.append([round(cursor / RATE_HZ, 4), round((cursor + len(pcm)) / RATE_HZ, 4)])
            gap = np.zeros(int((GAP_S if i < len(sentences) - 1 else TAIL_S) * RATE_HZ), np.int16)
            parts += [pcm, gap]
            cursor += len(pcm) + len(gap)
    audio = np.concatenate(parts)
    out.mkdir(parents=True, exist_ok=True)
    wav_path = out / "demo.wav"
    tmp_wav = out / ".demo.wav.tmp"
    with wave.open(str(tmp_wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(audio.astype("<i2").tobytes())
    write_atomic(wav_path, tmp_wav.read_bytes())
    tmp_wav.unlink()
    meta = {"file": "demo.wav", "rate_hz": RATE_HZ, "duration_s": round(len(audio) / RATE_HZ, 4),
            "voice": VOICE, "words_per_minute": WORDS_PER_MINUTE,
            "sentences": sentences, "spans_s": spans, "wav_sha256": sha256_file(wav_path)}
    write_atomic(out / "demo.json", (json.dumps(meta, indent=2) + "\n").encode())
    return meta


COMMAND_VOICES = (("en-us", 160), ("en-us+m1", 150), ("en-us", 130), ("en-gb+m2", 145))
"""(voice, words per minute) the spoken commands rotate through."""
COMMAND_GAP_S = 1.0


def read_commands(path: Path) -> list[dict]:
    """``sentence | intent | slots JSON`` lines ('' intent: no intent) -> [{sentence, intent, slots}]."""
    commands = []
    for line in read_sentences(path):
        sentence, intent, slots = (part.strip() for part in line.split("|"))
        commands.append({"sentence": sentence, "intent": intent, "slots": json.loads(slots) if slots else {}})
    return commands


def build_commands(commands: list[dict], out: Path) -> dict:
    """``commands.flac`` (each command in the next voice and speed, COMMAND_GAP_S apart; FLAC keeps the file
    small) and ``commands.json`` (each command with its voice, speed and exact span)."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"make_fixtures: {tool} not found; apt-get install -y espeak-ng sox")
    gap = np.zeros(int(COMMAND_GAP_S * RATE_HZ), np.int16)
    parts, cursor = [np.zeros(int(LEAD_S * RATE_HZ), np.int16)], int(LEAD_S * RATE_HZ)
    spoken = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, command in enumerate(commands):
            voice, wpm = COMMAND_VOICES[i % len(COMMAND_VOICES)]
            pcm = speak(command["sentence"], Path(tmp), i, voice, wpm)
            spoken.append({**command, "voice": voice, "words_per_minute": wpm,
                           "span_s": [round(cursor / RATE_HZ, 4), round((cursor + len(pcm)) / RATE_HZ, 4)]})
            parts += [pcm, gap]
            cursor += len(pcm) + len(gap)
        audio = np.concatenate(parts)
        wav = Path(tmp) / "commands.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE_HZ)
            w.writeframes(audio.astype("<i2").tobytes())
        flac = Path(tmp) / "commands.flac"
        subprocess.run(["sox", "-D", str(wav), str(flac)], check=True)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "commands.flac", flac.read_bytes())
    meta = {"file": "commands.flac", "rate_hz": RATE_HZ, "duration_s": round(len(audio) / RATE_HZ, 4),
            "commands": spoken, "flac_sha256": sha256_file(out / "commands.flac")}
    write_atomic(out / "commands.json", (json.dumps(meta, indent=2) + "\n").encode())
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.lib.audio.make_fixtures", description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=Path, default=FIXTURES / "sentences.txt")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="output folder (default: %(default)s)")
    parser.add_argument("--commands", type=Path, nargs="?", const=FIXTURES / "commands.txt", default=None,
                        help="write the spoken commands (commands.flac/json) from this list instead "
                             "(default: %(const)s)")
    args = parser.parse_args(argv)
    if args.commands is not None:
        meta = build_commands(read_commands(args.commands), args.out)
        print(f"wrote {args.out / 'commands.flac'}: {meta['duration_s']} s, {len(meta['commands'])} commands",
              file=sys.stderr)
        return 0
    meta = build(read_sentences(args.sentences), args.out)
    print(f"wrote {args.out / 'demo.wav'}: {meta['duration_s']} s, {len(meta['spans_s'])} sentences", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
