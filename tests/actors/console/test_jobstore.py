"""The job store without training: reloading jobs, a job whose process died, a job file that is not ours. ~1 s."""

from __future__ import annotations

import json
import subprocess
import sys

from actors.console.jobs import EXIT_MARK, JobManager


def test_jobs_reload_and_a_dead_process_is_lost(tmp_path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "notes.json").write_text('{"hello": 1}')  # not a job: skipped, left alone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    log = folder / "j1.log"
    log.write_text("train cross: 2/8 epoch (25%), 1.0 s, loss=0.500, val_f1=0.300\n")
    (folder / "j1.json").write_text(json.dumps({"id": "j1", "signal": "cross", "state": "running", "created": 1.0,
                                                "pid": dead.pid, "pid_started": 0.0, "log": str(log),
                                                "progress": {}, "curve": [], "result": {}}))
    done_log = folder / "j2.log"
    done_log.write_text(f"cross u1: first version: promoted itself\n{EXIT_MARK} 0\n")
    (folder / "j2.json").write_text(json.dumps({"id": "j2", "signal": "cross", "state": "running", "created": 2.0,
                                                "pid": dead.pid, "pid_started": 0.0, "log": str(done_log),
                                                "progress": {}, "curve": [], "result": {}}))
    seen = []
    jobs = JobManager(folder, seen.append)
    assert [j["id"] for j in jobs.list()] == ["j2", "j1"]
    jobs.poll()
    j1, j2 = jobs.get("j1"), jobs.get("j2")
    assert j1["state"] == "lost" and j1["progress"]["epoch"] == 2  # what it wrote before it died is kept
    assert j2["state"] == "done" and j2["result"]["promoted"] and j2["result"]["version"] == "u1"
    assert {j["id"] for j in seen} == {"j1", "j2"}
    again = JobManager(folder, lambda _job: None)  # a console restart: the states were saved
    assert again.get("j1")["state"] == "lost" and again.get("j2")["state"] == "done"
    assert json.loads((folder / "notes.json").read_text()) == {"hello": 1}


def test_a_running_job_is_followed_and_cancelled(tmp_path) -> None:
    jobs = JobManager(tmp_path / "jobs", lambda _job: None)
    # start_train's process trains (torch); a long sleep under the same wrapper stands in for it.
    log = tmp_path / "jobs" / "j3.log"
    proc = subprocess.Popen(["sh", "-c", f'"$@"; echo "{EXIT_MARK} $?"', "sh", "sleep", "60"],
                            stdout=open(log, "wb"), start_new_session=True)
    import psutil

    jobs.jobs["j3"] = {"id": "j3", "signal": "x", "state": "running", "created": 3.0, "pid": proc.pid,
                       "pid_started": psutil.Process(proc.pid).create_time(), "log": str(log)}
    from actors.console.jobs import _Follow

    jobs._follow["j3"] = _Follow(proc=proc)
    jobs.poll()
    assert jobs.get("j3")["state"] == "running"
    jobs.cancel("j3")
    proc.wait(timeout=10)
    jobs.poll()
    assert jobs.get("j3")["state"] == "cancelled"
    assert json.loads((tmp_path / "jobs" / "j3.json").read_text())["state"] == "cancelled"
