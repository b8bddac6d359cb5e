"""``sensorium service``: the units written for a config, checked by systemd itself where it exists. ~3 s."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from config.loader import load
from config.service import BATCH_SERVICE, BATCH_TIMER, SERVICE, stop_timeout_s, units
from tests.support import ROOT, clean_env, write_config


def test_stop_timeout_covers_each_dependency_level(ipc_dir):
    config = load(write_config(ipc_dir, '[supervisor]\nterm_wait_s = 1.5\n'
                                        '[actors.a]\nkind = "probe"\nshutdown_s = 4\n'
                                        '[actors.b]\nkind = "probe"\nshutdown_s = 2\nafter = ["a"]\n'
                                        '[actors.c]\nkind = "probe"\nshutdown_s = 7\n'))
    # levels: {a, c} (7 s) then {b} (2 s); 1.5 s after SIGTERM each; 10 s margin.
    assert stop_timeout_s(config) == (7 + 1.5) + (2 + 1.5) + 10


def test_units_run_the_supervisor_stop_with_sigint_and_time_the_batch(ipc_dir):
    path = write_config(ipc_dir, '[actors.p]\nkind = "probe"\n')
    written = units(load(path), path, user=True)
    service = written[SERVICE]
    assert f"supervisor.py run -c {path}" in service
    assert "Restart=on-failure" in service and "KillSignal=SIGINT" in service and "KillMode=mixed" in service
    assert "TimeoutStopSec=18" in service and "WantedBy=default.target" in service
    assert "batch events" in written[BATCH_SERVICE] and "--per-user" in written[BATCH_SERVICE]
    assert "OnCalendar=*-*-* 03:00:00" in written[BATCH_TIMER]
    assert "WantedBy=multi-user.target" in units(load(path), path, user=False)[SERVICE]


def test_install_writes_units_that_systemd_analyze_accepts_and_uninstall_removes_them(ipc_dir):
    path = write_config(ipc_dir, '[actors.p]\nkind = "probe"\n')
    out = ipc_dir / "units"

    def sensorium(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "service", *args, "-c", str(path)],
                              cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)

    done = sensorium("install", "--user", "--dir", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([SERVICE, BATCH_SERVICE, BATCH_TIMER])
    assert sensorium("status", "--user", "--dir", str(out)).returncode == 0
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here: the units were written but not verified by systemd")
    verify = subprocess.run(["systemd-analyze", "verify", *(str(out / n) for n in (SERVICE, BATCH_SERVICE,
                                                                                   BATCH_TIMER))],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in verify.stderr.splitlines() if str(out) in line]
    assert verify.returncode == 0 and not problems, verify.stderr
    assert sensorium("uninstall", "--user", "--dir", str(out)).returncode == 0
    assert not list(out.iterdir())
    assert sensorium("status", "--user", "--dir", str(out)).returncode == 3
