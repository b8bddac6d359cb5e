"""Recordings: bus messages in MCAP files that survive a crash (docs/architecture.md, "Recordings").

* ``writer``: the file layout and ``RecordingWriter``, one file being written
  (on top of ``mcapwriter.McapStreamWriter``, the streaming MCAP writer);
* ``scanner``: ``scan`` (read a file up to its damage, ``ScanReport`` says what
  was lost) and ``recover`` (a ``NAME.mcap.active`` left by a crash into a closed ``NAME.mcap``);
* ``session``: ``RecordingSession`` (writes on its own thread, rotates, stops
  on a full disk) with its ``SessionSettings``, and retention;
* ``record``, ``info``, ``replay``: the ``sensorium`` commands.
"""

from bus.recording.scanner import (Damage, Record, RecordingError, Recovered, RecoveryError, ScanReport,
                                   recover, scan)
from bus.recording.session import (RecordingSession, SessionEvent, SessionSettings, SessionStats,
                                   apply_retention, recordings)
from bus.recording.writer import (ACTIVE_SUFFIX, COMPRESSIONS, DISK_FULL_ERRNOS, FRAMES_LAYOUT, GAP_LAYOUT,
                                  GAP_TOPIC, LIBRARY, PROFILE, RecordingWriter, WrittenFile)

__all__ = [
    "ACTIVE_SUFFIX", "COMPRESSIONS", "DISK_FULL_ERRNOS", "FRAMES_LAYOUT", "GAP_LAYOUT", "GAP_TOPIC", "LIBRARY",
    "PROFILE", "Damage", "Record", "RecordingError", "RecordingSession", "RecordingWriter", "Recovered",
    "RecoveryError", "ScanReport", "SessionEvent", "SessionSettings", "SessionStats", "WrittenFile",
    "apply_retention", "recordings", "recover", "scan",
]
