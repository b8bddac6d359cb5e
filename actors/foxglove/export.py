"""``sensorium export IN.mcap OUT.mcap``: a recording as an MCAP file Foxglove decodes channel by channel.

A recording (``bus/recording``) stores each message as its exact wire frames
(message encoding ``msgpack``, no schema): that is what lets ``sensorium
replay`` send bodies and arrays back bit-identically, and Foxglove cannot
decode it. ``export`` writes a second file through the same mapping as the
live view (``mapping.Converter``): camera frames as ``foxglove.RawImage``
(and ``foxglove.CompressedImage`` JPEG with ``--jpeg``), detections as JSON
plus ``foxglove.ImageAnnotations``, IMU batches as JSON plus one sample per
message, supervisor events and alerts as JSON plus ``foxglove.Log``, every
other body as JSON with its JSON Schema. Gap records become JSON on
``sensorium.gap``. The source file is only read.

Times: each message keeps its recorded receive time (``log_time``); the
derived IMU samples sit before it by their distance to the batch's last
sample. ``publish_time`` is the sender's envelope ``ts``.

A message that no longer decodes, or whose body does not fit its topic, is
skipped and counted; damage of the source (a torn end, a bad chunk) is
reported as ``sensorium info`` reports it, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from actors.foxglove.mapping import GAP_SCHEMA, ChannelDef, Converter, ConverterOptions
from bus.envelope import EnvelopeError
from bus.recording import GAP_TOPIC, RecordingError, ScanReport, scan
from config.schema import Config


@dataclass
class ExportReport:
    messages_in: int = 0
    messages_out: int = 0
    channels: int = 0
    gap_records: int = 0
    skipped: Counter = field(default_factory=Counter)
    """Messages not exported, by reason."""
    damage: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"export: {self.messages_in} recorded message(s) -> {self.messages_out} message(s) on "
               f"{self.channels} channel(s), {self.gap_records} gap record(s)"]
        out += [f"export: skipped {n} message(s): {why}" for why, n in sorted(self.skipped.items())]
        return out + [f"export: {line}" for line in self.damage]


def export(source: Path, target: Path, options: ConverterOptions | None = None,
           topics: list[str] | None = None) -> ExportReport:
    """Write ``target`` (which must not exist) from the recording ``source``; raises RecordingError
    (not a recording), FileExistsError, or ImportError (the foxglove extra is missing)."""
    from mcap.writer import CompressionType, Writer  # noqa: PLC0415

    import foxglove.messages  # noqa: F401,PLC0415 - fail before writing anything when the extra is missing

    wanted = _selection(topics)
    converter = Converter(options)
    report = ExportReport()
    scan_report = ScanReport(source)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.exporting")
    if target.exists():
        raise FileExistsError(f"{target} exists, not overwriting it")
    schemas: dict[tuple[str, str, bytes], int] = {}
    channel_ids: dict[str, int] = {}
    try:
        with open(tmp, "wb") as f:
            out = Writer(f, compression=CompressionType.ZSTD)
            out.start(profile="", library="sensorium export")

            def channel_id(ch: ChannelDef) -> int:
                cid = channel_ids.get(ch.topic)
                if cid is None:
                    sid = 0
                    if ch.schema_encoding:
                        key = (ch.schema_name, ch.schema_encoding, ch.schema_data)
                        sid = schemas.get(key) or schemas.setdefault(
                            key, out.register_schema(ch.schema_name, ch.schema_encoding, ch.schema_data))
                    cid = channel_ids[ch.topic] = out.register_channel(ch.topic, ch.message_encoding, sid)
                return cid

            gap_channel = ChannelDef(GAP_TOPIC, "json", GAP_SCHEMA["title"], "jsonschema", json.dumps(GAP_SCHEMA).encode())
            for rec in scan(source, scan_report):
                report.messages_in += 1
                if rec.kind == "gap":
                    report.gap_records += 1
                    out.add_message(channel_id(gap_channel), rec.log_time_ns, json.dumps(rec.gap()).encode(),
                                    rec.publish_time_ns, rec.sequence)
                    report.messages_out += 1
                    continue
                if not wanted(rec.topic):
                    report.skipped["not selected"] += 1
                    continue
                try:
                    msg = rec.decode()
                    outputs = converter.convert(msg)
                except EnvelopeError as exc:
                    report.skipped[f"does not decode ({type(exc).__name__})"] += 1
                    continue
                except ValueError as exc:
                    report.skipped[f"{rec.topic}: {str(exc).split(':', 1)[-1].strip()}"] += 1
                    continue
                shift = rec.log_time_ns - msg.header.ts  # receive time - send time
                for o in outputs:
                    out.add_message(channel_id(o.channel), o.log_time_ns + shift, o.data, msg.header.ts,
                                    msg.header.seq)
                    report.messages_out += 1
            for name, meta in scan_report.metadata.items():
                out.add_metadata(name, meta)
            report.damage = scan_report.describe()
            out.add_metadata("sensorium.export", {"source": source.name, "messages_in": str(report.messages_in),
                                                  "messages_out": str(report.messages_out),
                                                  "damage": "\n".join(report.damage) or "none"})
            out.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    report.channels = len(channel_ids)
    return report


def _selection(topics: list[str] | None):
    if not topics:
        return lambda t: True
    exact = {t for t in topics if not t.endswith(".")}
    prefixes = tuple(t for t in topics if t.endswith("."))
    return lambda t: t in exact or t.startswith(prefixes)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sensorium export",
        description="Convert a recording into an MCAP file Foxglove decodes (every channel with a schema, camera "
                    "frames as foxglove.RawImage). The recording itself stays the input of 'sensorium replay'.")
    p.add_argument("source", type=Path, help="the recording (MCAP written by the recorder or 'sensorium record')")
    p.add_argument("target", type=Path, help="the file to write (must not exist)")
    p.add_argument("--jpeg", action="store_true",
                   help="also write camera frames as JPEG foxglove.CompressedImage (TOPIC/compressed)")
    p.add_argument("--jpeg-quality", type=int, default=80, help="JPEG quality 10..100 (default 80)")
    p.add_argument("--max-array", type=int, default=4096, metavar="N",
                   help="arrays of more elements are summarized in JSON channels (default 4096)")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="topics (exact) or prefixes ending in '.' (default: all)")
    return p


def main(argv: list[str], config: Config) -> int:
    args = build_parser().parse_args(argv)
    if not 10 <= args.jpeg_quality <= 100:
        print("sensorium export: --jpeg-quality must be 10..100", file=sys.stderr)
        return 2
    options = ConverterOptions(compressed_images=args.jpeg, jpeg_quality=args.jpeg_quality,
                               max_array_elements=max(0, args.max_array))
    try:
        report = export(args.source, args.target, options, args.topics)
    except (RecordingError, FileExistsError, ImportError, OSError) as exc:
        print(f"sensorium export: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line, file=sys.stderr)
    print(f"export: wrote {args.target}", file=sys.stderr)
    return 1 if report.damage else 0
