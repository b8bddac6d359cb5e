"""Long work outside the web server: training runs as a ``sensorium models train`` process, followed.

A job is a process started in a session of its own (it outlives a console
restart) with its output in ``DATA_DIR/jobs/ID.log``; the console reads that
log as it grows, parses the progress lines (``parse_line``) and keeps the
job's state in ``DATA_DIR/jobs/ID.json``, written atomically after every
change. A console that starts again reloads every job and follows the ones
still running, so jobs and their progress survive a browser closing and a
console restart. The wrapper shell appends ``__exit__ CODE`` to the log when
the command ends; a job whose process is gone without it is ``lost``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil
import structlog

from config.paths import REPO_ROOT
from config.storage import write_atomic

EXIT_MARK = "__exit__"
PROGRESS_RE = re.compile(r"^train (?P<signal>\S+): (?P<n>\d+)/(?P<total>\d+) epoch \((?P<pct>\d+)%\), "
                         r"(?P<secs>[\d.]+) s(?:, loss=(?P<loss>[\d.]+))?(?:, val_f1=(?P<f1>[\d.]+))?")
DECISION_RE = re.compile(r"^(?P<signal>[a-z][a-z0-9_]*) (?P<version>v\d+|u\d+): (?P<reason>.+)$")
NEW_ROW_RE = re.compile(r"^new (?P<version>\S+)\s+(?P<p>[\d.]+)\s+(?P<r>[\d.]+)\s+(?P<f1>[\d.]+)$")
FINAL_STATES = ("done", "failed", "cancelled", "lost")
LOG_TAIL_LINES = 40
log = structlog.get_logger("console")


def parse_line(job: dict[str, Any], line: str) -> bool:
    """Fold one output line into ``job`` (progress, curve, result, exit); True when it changed the job."""
    line = line.rstrip()
    if not line:
        return False
    tail = job.setdefault("log_tail", [])
    tail.append(line[:300])
    del tail[:-LOG_TAIL_LINES]
    if line.startswith(EXIT_MARK):
        code = int(line.split()[1]) if len(line.split()) > 1 and line.split()[1].lstrip("-").isdigit() else -1
        job["exit_code"] = code
        if job.get("state") != "cancelled":
            job["state"] = "done" if code == 0 else "failed"
            if code != 0:
                job["error"] = next((t for t in reversed(tail[:-1]) if t.strip()), f"exit code {code}")
        job["ended"] = time.time()
        return True
    m = PROGRESS_RE.match(line)
    if m:
        point = {"epoch": int(m["n"]), "loss": float(m["loss"]) if m["loss"] else None,
                 "val_f1": float(m["f1"]) if m["f1"] else None}
        job["progress"] = {**point, "epochs": int(m["total"]), "percent": int(m["pct"]), "seconds": float(m["secs"])}
        job.setdefault("curve", []).append(point)
        return True
    m = NEW_ROW_RE.match(line)
    if m:
        job.setdefault("result", {}).update(version=m["version"], precision=float(m["p"]), recall=float(m["r"]),
                                            f1=float(m["f1"]))
        return True
    m = DECISION_RE.match(line)
    if m and m["signal"] == job.get("signal"):
        version = m["version"][1:] if m["version"].startswith("v") else m["version"]
        job.setdefault("result", {}).update(version=version, decision=m["reason"],
                                            promoted="promot" in m["reason"] and "waits" not in m["reason"])
        return True
    return True  # the tail changed


@dataclass
class _Follow:
    offset: int = 0
    partial: str = ""
    proc: subprocess.Popen | None = None


class JobManager:
    """Training jobs: start, follow, cancel, list; state persisted per job (atomically)."""

    def __init__(self, folder: Path, on_change: Callable[[dict[str, Any]], None],
                 config_path: Path | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.on_change = on_change
        self.config_path = config_path
        self.jobs: dict[str, dict[str, Any]] = {}
        self._follow: dict[str, _Follow] = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                job = json.loads(path.read_text())
                job["id"], job["state"]  # noqa: B018 - a job file has both
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Not torn (atomic writes): not a job file of ours. Left where it is, and said so.
                log.warning("job_file_skipped", path=str(path), error=repr(exc))
                continue
            self.jobs[job["id"]] = job
            if job.get("state") == "running":
                self._follow[job["id"]] = _Follow(offset=job.get("log_offset", 0))

    def list(self) -> list[dict[str, Any]]:
        return sorted(self.jobs.values(), key=lambda j: j.get("created", 0), reverse=True)

    def get(self, job_id: str) -> dict[str, Any]:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise LookupError(f"no job {job_id!r}") from None

    def _save(self, job: dict[str, Any]) -> None:
        write_atomic(self.folder / f"{job['id']}.json", json.dumps(job, indent=1).encode())

    def train_command(self, signal_name: str, data: str, epochs: int | None, extend: bool) -> list[str]:
        cmd = [sys.executable, str(REPO_ROOT / "supervisor.py")]
        if self.config_path is not None and self.config_path.exists():
            cmd += ["-c", str(self.config_path)]
        cmd += ["models", "train", signal_name, "--data", data]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        if extend:
            cmd.append("--extend")
        return cmd

    def start_train(self, signal_name: str, data: str, epochs: int | None = None, extend: bool = False) -> dict[str, Any]:
        if not Path(data).is_dir():
            raise ValueError(f"data folder {data!r} does not exist (a folder of NAME.png + NAME.json)")
        if any(j["state"] == "running" and j.get("signal") == signal_name for j in self.jobs.values()):
            raise ValueError(f"a training job for {signal_name!r} is already running")
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        command = self.train_command(signal_name, data, epochs, extend)
        log_path = self.folder / f"{job_id}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(["sh", "-c", f'"$@"; echo "{EXIT_MARK} $?"', "sh", *command], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=str(REPO_ROOT), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        job = {"id": job_id, "kind": "train", "signal": signal_name, "data": data, "epochs": epochs,
               "extend": extend, "state": "running", "created": time.time(), "pid": proc.pid,
               "pid_started": _started(proc.pid), "command": command, "log": str(log_path), "progress": {},
               "curve": [], "result": {}, "log_tail": []}
        self.jobs[job_id] = job
        self._follow[job_id] = _Follow(proc=proc)
        self._save(job)
        self.on_change(job)
        return job

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job["state"] != "running":
            raise ValueError(f"job {job_id} is {job['state']}, not running")
        job["state"] = "cancelled"
        if _alive(job):
            try:
                os.killpg(job["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._save(job)
        self.on_change(job)
        return job

    def poll(self) -> None:
        """Read what running jobs wrote since the last poll; save and announce each change."""
        for job_id, follow in list(self._follow.items()):
            job = self.jobs[job_id]
            changed = self._read(job, follow)
            if follow.proc is not None:
                follow.proc.poll()  # reap our child
            if EXIT_MARK not in "".join(job.get("log_tail", [])[-1:]) and job.get("exit_code") is None \
                    and not _alive(job):
                changed |= self._read(job, follow)  # the last lines written before it ended
                if job.get("exit_code") is None and job["state"] in ("running", "cancelled"):
                    if job["state"] == "running":
                        job["state"], job["error"] = "lost", "the job's process ended without an exit status"
                    job["ended"] = time.time()
                    changed = True
            if job.get("exit_code") is not None or job["state"] in FINAL_STATES:
                self._follow.pop(job_id, None)
            if changed:
                job["log_offset"] = follow.offset
                self._save(job)
                self.on_change(job)

    def _read(self, job: dict[str, Any], follow: _Follow) -> bool:
        try:
            with open(job["log"], "rb") as f:
                f.seek(follow.offset)
                data = f.read(1 << 20)
        except OSError:
            return False
        if not data:
            return False
        follow.offset += len(data)
        text = follow.partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        follow.partial = lines.pop()
        changed = False
        for line in lines:
            changed |= parse_line(job, line)
        return changed


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(job: dict[str, Any]) -> bool:
    """The job's process (not a later one with its pid) still runs."""
    try:
        proc = psutil.Process(job["pid"])
        if job.get("pid_started") is not None and abs(proc.create_time() - job["pid_started"]) > 0.5:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
