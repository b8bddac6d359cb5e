"""Signals reach the supervisor at any bytecode: one that lands inside a log write still shuts it down in order."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT, WAIT_S, clean_env, json_lines, write_config

pytestmark = pytest.mark.slow


def test_a_sigint_while_the_supervisor_writes_a_log_line_shuts_it_down_in_order(ipc_dir):
    # A handler that logged itself waited forever for the log's lock, which the interrupted line held; one that
    # moved the watchers did so in the middle of a watcher's own move.
    config = write_config(ipc_dir, '[actors."probe@s"]\n')
    done = subprocess.run([sys.executable, "-m", "tests.supervisor.sigint_in_log", "run", "-c", str(config)],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=2 * WAIT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = json_lines((ipc_dir / "logs" / "supervisor.log").read_text())
    events = [x["event"] for x in lines]
    assert events.count("shutdown_requested") == 1 and "shutdown_forced" not in events, events
    moves = [(x["transition"], x["to"]) for x in lines if x["event"] == "actor_transition" and x["name"] == "probe@s"]
    assert moves[-1] == ("stopped", "stopped"), moves
    assert not [m for m in moves if m[0] in ("escalate_term", "escalate_kill")], moves
    assert events[-1] == "supervisor_stopped"
