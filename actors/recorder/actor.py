"""The recorder: configured topics into crash-safe MCAP files.

Every message under the configured prefixes (and the supervisor's
``sys.actor`` events) goes, as its exact wire frames, into
``DIR/PREFIX-<UTC time>-<n>.mcap`` (layout: ``bus/recording``). Writing
happens on a thread of ``RecordingSession``, so the receive loop only
queues; the recording socket's high-water mark is raised so that bursts wait
in its queue instead of being dropped.

* Flush bound: the open chunk is closed and fsynced every ``flush_s``, so a
  crash loses at most that much.
* At start, a ``.active`` file left by a crash is recovered into a closed
  recording (messages up to its last complete chunk).
* Rotation by size and age; retention by total size and age.
* Disk full (or less than ``min_free_bytes`` free): the file is closed
  cleanly, a critical ``monitor.alert`` (``recorder.disk_full``) goes out,
  and the recorder stops recording but keeps running, so nothing else is
  harmed; the ``resume`` command (on ``ctl.NAME``) starts a new file once
  there is room.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from actors.base import Actor
from actors.recorder.settings import RecorderSettings
from bus.envelope import Message, now_ns
from bus.messages import Alert
from bus.recording import ACTIVE_SUFFIX, RecordingSession, SessionSettings, apply_retention, recover
from config.paths import default_runtime_dir


class RecorderActor(Actor[RecorderSettings]):
    kind = "recorder"

    def __init__(self, name: str, settings: Any, endpoints: Any, *, hwm: int = 10_000, **kwargs: Any) -> None:
        super().__init__(name, settings, endpoints, hwm=max(hwm, settings.rcv_hwm), **kwargs)

    def setup(self) -> None:
        s = self.settings
        self.folder = Path(s.dir) if s.dir else self._runtime_dir() / "recordings"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.recovered = [self._recover(p) for p in sorted(self.folder.glob(f"{s.name_prefix}-*.mcap{ACTIVE_SUFFIX}"))]
        self._retain(None)
        self._file_no = 0
        self.sub.keep_frames = True
        for topic in [*s.prefixes, *(["sys.actor"] if s.include_sys_actor else [])]:
            self.subscribe(topic, self.on_recorded_topic)
        self.session = self._start_session()
        self.every(0.2, self.report_session_events)

    def _runtime_dir(self) -> Path:
        """bus.runtime_dir, where the ipc sockets live (the actor is given endpoints, not the config)."""
        backend = self.endpoints.backend
        if backend.startswith("ipc://"):
            return Path(backend.removeprefix("ipc://")).parent
        return default_runtime_dir()

    def _start_session(self) -> RecordingSession:
        s = self.settings
        settings = SessionSettings(flush_s=s.flush_s, max_file_bytes=s.max_file_bytes, max_file_s=s.max_file_s,
                                   compression=s.compression, fsync=s.fsync, queue_bytes=s.queue_bytes,
                                   min_free_bytes=s.min_free_bytes)
        return RecordingSession(self._next_path, settings,
                                meta={"recorder": self.name, "prefixes": " ".join(s.prefixes)},
                                retention=self._retain)

    def _next_path(self) -> Path:
        while True:
            self._file_no += 1
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            path = self.folder / f"{self.settings.name_prefix}-{stamp}-{self._file_no:04d}.mcap"
            if not path.exists() and not path.with_name(path.name + ACTIVE_SUFFIX).exists():
                return path

    def _recover(self, active: Path) -> dict[str, Any]:
        done = recover(active)
        lost = done.report.describe()
        self.log.warning("recording_recovered", source=str(active), path=str(done.path), messages=done.messages,
                         bytes_lost=done.report.bytes_lost, damage=lost)
        return {"path": str(done.path), "messages": done.messages, "bytes_lost": done.report.bytes_lost}

    def _retain(self, keep: Path | None) -> list[Path]:
        s = self.settings
        removed = apply_retention(self.folder, f"{s.name_prefix}-", max_age_s=s.max_age_s,
                                  max_total_bytes=s.max_total_bytes, keep=keep)
        for p in removed:
            self.log.info("recording_removed", path=str(p), reason="retention")
        return removed

    def on_recorded_topic(self, msg: Message) -> None:
        if not self.session.submit(msg, now_ns()):
            self.counters.dropped += 1

    def report_session_events(self) -> None:
        for ev in self.session.events():
            if ev.event == "stopped":
                self.log.error("recording_stopped", path=ev.path, **ev.detail)
                metric = "recorder.disk_full" if ev.detail.get("disk_full") else "recorder.write_error"
                self.publish(Alert(level="critical", metric=metric, value=float(ev.detail.get("errno") or 0),
                                   threshold=float(self.settings.min_free_bytes), actor=self.name,
                                   message=f"recording stopped: {ev.detail.get('reason')}; kept {ev.path}"))
            elif ev.event != "removed":
                self.log.info(f"recording_{ev.event}", path=ev.path, **ev.detail)

    def ctl_resume(self) -> str:
        """Start a new recording after a stop (disk full), once there is room again."""
        if self.session.stats.state == "recording":
            return "already recording"
        self.session.close()
        self.session = self._start_session()
        self.publish(Alert(level="critical", metric="recorder.disk_full", value=0.0,
                           threshold=float(self.settings.min_free_bytes), actor=self.name, state="cleared",
                           message="recording resumed"))
        return "recording"

    def heartbeat_extra(self) -> dict[str, Any]:
        st = self.session.stats
        current = self.session.current_path
        return {"recording": st.state, "reason": st.reason, "file": str(current) if current else "",
                "messages": st.messages, "bytes": st.bytes, "gaps": st.gaps, "dropped": st.dropped,
                "unstorable": st.unstorable,
                "queued_bytes": st.queued_bytes, "files": st.files, "recovered": len(self.recovered)}

    def teardown(self) -> None:
        self.session.close()
        self.report_session_events()
