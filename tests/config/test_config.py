"""Configuration: default, user file, environment, and errors that name the key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from actors.registry import load_config as load
from bus.endpoints import runtime_paths
from config import ConfigError, start_order
from tests.support import ROOT, clean_env


def test_embedded_default_is_valid_and_runs_anywhere():
    config = load(None, environ={})
    assert "monitor" in config.actors
    assert config.actors["probe@echo"].kind_for("probe@echo") == "probe"
    assert config.actors["monitor"].backoff.initial_s == 0.5
    assert runtime_paths(config).endpoints.frontend.startswith("ipc://")


def test_user_file_overrides_and_replaces_the_pipeline(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[bus]\nhwm = 42\n[actors."probe@a"]\nrestart = "transient"\nsettings = { tick_hz = 2.0 }\n')
    config = load(f, environ={})
    assert config.bus.hwm == 42
    assert list(config.actors) == ["probe@a"]
    assert config.actors["probe@a"].settings["tick_hz"] == 2.0
    assert config.actors["probe@a"].intensity.max_restarts == 5  # from [actor_defaults]


def test_environment_overrides_file_and_default(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[bus]\nhwm = 42\n")
    env = {"SENSORIUM__BUS__HWM": "7", "SENSORIUM__ACTORS__MONITOR__RESTART": "transient",
           "SENSORIUM__ACTORS__MONITOR__BACKOFF__INITIAL_S": "0.25", "SENSORIUM__LOG__DIR": "/tmp/some where"}
    config = load(f, environ=env)
    assert config.bus.hwm == 7
    assert config.actors["monitor"].restart == "transient"
    assert config.actors["monitor"].backoff.initial_s == 0.25
    assert config.log.dir == "/tmp/some where"


def problems(text: str, env=None, tmp_path=None) -> str:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(f, environ=env or {})
    return str(info.value)


def test_unknown_key_is_named_with_what_was_expected(tmp_path):
    msg = problems("[bus]\nhwmm = 5\n", tmp_path=tmp_path)
    assert "bus.hwmm" in msg and "unknown key" in msg and "hwm" in msg and "bad.toml" in msg


def test_bad_value_names_key_value_and_expectation(tmp_path):
    msg = problems('[actors.monitor]\nrestart = "sometimes"\n', tmp_path=tmp_path)
    assert "actors.monitor.restart" in msg and "'sometimes'" in msg and "permanent" in msg


def test_bad_environment_value_names_the_variable(tmp_path):
    msg = problems("", env={"SENSORIUM__BUS__HWM": "lots"}, tmp_path=tmp_path)
    assert "bus.hwm" in msg and "'lots'" in msg and "SENSORIUM__BUS__HWM" in msg


def test_kind_settings_are_validated(tmp_path):
    msg = problems('[actors.monitor]\nsettings = { interval_s = -1, colour = "red" }\n', tmp_path=tmp_path)
    assert "actors.monitor.settings.interval_s" in msg and "greater than 0" in msg
    assert "actors.monitor.settings.colour" in msg and "interval_s" in msg


def test_unknown_kind_bad_dependency_and_cycle(tmp_path):
    assert "expected one of" in problems("[actors.teleporter]\n", tmp_path=tmp_path)
    msg = problems('[actors.monitor]\nafter = ["ghost"]\n', tmp_path=tmp_path)
    assert "actors.monitor.after" in msg and "ghost" in msg
    msg = problems('[actors."probe@a"]\nafter = ["probe@b"]\n[actors."probe@b"]\nafter = ["probe@a"]\n',
                   tmp_path=tmp_path)
    assert "cycle" in msg


def test_bad_actor_name(tmp_path):
    assert "actor name" in problems('[actors."Bad Name"]\nkind = "probe"\n', tmp_path=tmp_path)
    assert "reserved" in problems('[actors.supervisor]\nkind = "probe"\n', tmp_path=tmp_path)


def test_start_order_follows_dependencies(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[actors."probe@c"]\nafter = ["probe@b"]\n[actors."probe@b"]\nafter = ["probe@a"]\n'
                 '[actors."probe@a"]\n')
    assert start_order(load(f, environ={}).actors) == ["probe@a", "probe@b", "probe@c"]


def sensorium(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "supervisor.py"), *args], cwd=ROOT,
                          env=clean_env(**(env or {})), capture_output=True, text=True, timeout=120)


def test_cli_config_error_prints_the_key_and_exits_2(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[actors.monitor]\nrestart = "sometimes"\n')
    done = sensorium("run", "-c", str(f))
    assert done.returncode == 2
    assert "actors.monitor.restart" in done.stderr and "sometimes" in done.stderr
    done = sensorium("status", env={"SENSORIUM__BUS__NOPE": "1"})
    assert done.returncode == 2 and "bus.nope" in done.stderr


def test_cli_config_show_prints_the_resolved_config(tmp_path):
    done = sensorium("config", "show", env={"SENSORIUM__BUS__HWM": "123"})
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["bus"]["hwm"] == 123 and "monitor" in shown["actors"]


def test_cli_refuses_to_bind_a_public_address(tmp_path):
    done = sensorium("run", env={"SENSORIUM__BUS__FRONTEND": '"tcp://0.0.0.0:45999"',
                                 "SENSORIUM__BUS__RUNTIME_DIR": str(tmp_path)})
    assert done.returncode == 1 and "CURVE" in done.stderr
