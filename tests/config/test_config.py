"""Configuration: default, user file, environment, and errors that name the key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from actors.registry import load_config as load
from bus.endpoints import runtime_paths
from config import ConfigError, start_order
from tests.support import ROOT, clean_env, write_config


def test_embedded_default_is_valid_and_runs_anywhere():
    config = load(None, environ={})
    assert "monitor" in config.actors
    assert config.actors["probe@echo"].kind_for("probe@echo") == "probe"
    assert config.actors["monitor"].backoff.initial_s == 0.5
    assert runtime_paths(config).endpoints.frontend.startswith("ipc://")


DEFAULT_ACTORS = ["monitor", "recorder", "foxglove", "probe@echo", "camera", "detector", "tracker", "speech", "vad",
                  "audio_events", "audio_source@demo", "sensor", "gesture", "intent", "console"]


def user_file(tmp_path, text: str):
    f = tmp_path / "user.toml"
    f.write_text(text)
    return f


def test_the_default_pipeline_is_what_the_tests_expect():
    assert list(load(None, environ={}).actors) == DEFAULT_ACTORS


def test_a_user_actor_table_merges_over_the_default_actor_and_keeps_the_pipeline(tmp_path):
    f = user_file(tmp_path, "[actors.monitor.settings]\nprometheus_port = 9481\n")
    config = load(f, environ={})
    assert list(config.actors) == DEFAULT_ACTORS
    monitor = config.actors["monitor"]
    assert monitor.settings["prometheus_port"] == 9481
    assert monitor.settings["interval_s"] == 1.0  # the default's other setting survives
    assert config.actors["detector"].start_timeout_s == 60.0  # other actors untouched


def test_enabled_false_switches_one_default_actor_off_and_keeps_the_others(tmp_path):
    f = user_file(tmp_path, "[actors.speech]\nenabled = false\n[actors.audio_events]\nenabled = false\n")
    config = load(f, environ={})
    assert list(config.actors) == DEFAULT_ACTORS
    assert not config.actors["speech"].enabled and not config.actors["audio_events"].enabled
    assert config.actors["speech"].start_timeout_s == 120.0  # merged, not replaced
    assert "camera" in config.enabled_actors() and "speech" not in config.enabled_actors()


def test_a_user_actor_with_a_new_name_is_added(tmp_path):
    f = user_file(tmp_path, '[bus]\nhwm = 42\n[actors."probe@a"]\nrestart = "transient"\n'
                            "settings = { tick_hz = 2.0 }\n")
    config = load(f, environ={})
    assert config.bus.hwm == 42 and config.bus.max_message_bytes == 67108864
    assert list(config.actors) == DEFAULT_ACTORS + ["probe@a"]
    assert config.actors["probe@a"].settings["tick_hz"] == 2.0
    assert config.actors["probe@a"].intensity.max_restarts == 5  # from [actor_defaults]


def test_replace_default_actors_gives_exactly_the_files_actors(tmp_path):
    f = user_file(tmp_path, 'replace_default_actors = true\n[actors."probe@a"]\n[actors.monitor]\n'
                            "settings = { interval_s = 2.0 }\n")
    config = load(f, environ={})
    assert list(config.actors) == ["probe@a", "monitor"]
    assert config.actors["monitor"].settings["prometheus_port"] == -1  # the kind's default, not default.toml's
    assert config.actors["probe@a"].intensity.max_restarts == 5  # [actor_defaults] still applies


def test_a_test_config_runs_only_the_actors_it_names(tmp_path):
    """tests/support.write_config uses the replace switch: no test starts the default's Whisper or TensorFlow."""
    assert list(load(write_config(tmp_path, '[actors."probe@a"]\n'), environ={}).actors) == ["probe@a"]
    assert list(load(write_config(tmp_path, ""), environ={}).actors) == []


def test_the_resolved_config_json_loads_back_to_the_same_pipeline(tmp_path):
    """Actors read the supervisor's resolved config as JSON (tuples as arrays, ints for floats)."""
    for text in ("[actors.speech]\nenabled = false\n", 'replace_default_actors = true\n[actors."probe@a"]\n'):
        config = load(user_file(tmp_path, text), environ={})
        resolved = tmp_path / "config.json"
        resolved.write_text(config.model_copy(update={"replace_default_actors": True}).model_dump_json())
        again = load(resolved, environ={})
        assert again.actors == config.actors
    data = json.loads(resolved.read_text())
    data["actors"]["sensor"] = {"settings": {"synthetic": {"pause_s": [1, 2.5]}, "rate_hz": 50}}
    resolved.write_text(json.dumps(data))
    assert load(resolved, environ={}).actors["sensor"].settings["synthetic"]["pause_s"] == (1.0, 2.5)


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


def lines_of(msg: str) -> list[str]:
    """The problem lines of a ConfigError's text (after its header line)."""
    return [line.strip() for line in msg.splitlines()[1:]]


def test_unknown_key_is_named_with_what_was_expected(tmp_path):
    msg = problems("[bus]\nhwmm = 5\n", tmp_path=tmp_path)
    assert "bus.hwmm" in msg and "unknown key" in msg and "hwm" in msg and "bad.toml" in msg


def test_bad_value_names_key_value_and_expectation(tmp_path):
    msg = problems('[actors.monitor]\nrestart = "sometimes"\n', tmp_path=tmp_path)
    assert "actors.monitor.restart" in msg and '"sometimes"' in msg and "permanent" in msg


def test_bad_environment_value_names_the_variable(tmp_path):
    msg = problems("", env={"SENSORIUM__BUS__HWM": "lots"}, tmp_path=tmp_path)
    assert "bus.hwm" in msg and '"lots"' in msg and "SENSORIUM__BUS__HWM" in msg


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


def test_bad_actor_name_is_one_short_line_naming_the_name_and_the_rule(tmp_path):
    msg = problems('[actors."Bad Name"]\nkind = "probe"\n', tmp_path=tmp_path)
    lines = lines_of(msg)
    assert len(lines) == 1, msg
    assert '"Bad Name"' in lines[0] and "kind@instance" in lines[0] and "bad.toml" in lines[0]
    assert "monitor" not in msg and len(lines[0]) < 250  # no dump of the merged actors table
    assert "reserved" in problems('[actors.supervisor]\nkind = "probe"\n', tmp_path=tmp_path)


@pytest.mark.parametrize("text, key", [("[bus]\nhwm = true\n", "bus.hwm"),
                                       ("[actors.monitor]\nshutdown_s = true\n", "actors.monitor.shutdown_s"),
                                       ("[actors.monitor.settings]\nprometheus_port = true\n",
                                        "actors.monitor.settings.prometheus_port"),
                                       ("[actors.sensor.settings.synthetic]\npause_s = [true, 2.0]\n",
                                        "actors.sensor.settings.synthetic.pause_s.0"),
                                       ("[actors.monitor]\nenabled = 1\n", "actors.monitor.enabled")])
def test_a_boolean_is_not_a_number_nor_a_number_a_boolean_in_a_file(tmp_path, text, key):
    msg = problems(text, tmp_path=tmp_path)
    assert f"{key} = " in msg and str(tmp_path / "bad.toml") in msg, msg
    assert len(lines_of(msg)) == 1, msg


@pytest.mark.parametrize("var, key", [("SENSORIUM__BUS__HWM", "bus.hwm"),
                                      ("SENSORIUM__ACTORS__MONITOR__SHUTDOWN_S", "actors.monitor.shutdown_s")])
def test_a_boolean_is_not_a_number_from_the_environment(tmp_path, var, key):
    msg = problems("", env={var: "true"}, tmp_path=tmp_path)
    assert f"{key} = true (from environment {var})" in msg and "not a boolean" in msg, msg


def test_actor_defaults_from_the_environment_are_reported_once_at_their_own_key(tmp_path):
    var = "SENSORIUM__ACTOR_DEFAULTS__SHUTDOWN_S"
    msg = problems("", env={var: "true"}, tmp_path=tmp_path)
    assert lines_of(msg) == [f"actor_defaults.shutdown_s = true (from environment {var}): "
                                    "expected a valid number, not a boolean"], msg


def test_an_environment_path_through_a_value_names_the_variable(tmp_path):
    msg = problems("", env={"SENSORIUM__BUS__HWM__LIMIT": "5"}, tmp_path=tmp_path)
    assert "SENSORIUM__BUS__HWM__LIMIT" in msg and "bus.hwm is a value" in msg and "default.toml" not in msg


def test_an_inherited_bad_value_names_actor_defaults_and_the_file(tmp_path):
    msg = problems("[actor_defaults]\nstart_timeout_s = -1\n", tmp_path=tmp_path)
    assert lines_of(msg) == [f"actor_defaults.start_timeout_s = -1 (from {tmp_path / 'bad.toml'}): "
                                    "expected greater than 0"], msg


def test_an_unknown_table_in_the_user_file_is_named_with_the_files_path(tmp_path):
    msg = problems("[foo]\nbar = 1\n", tmp_path=tmp_path)
    assert f"foo: unknown key (from {tmp_path / 'bad.toml'})" in msg and "default.toml" not in msg, msg
    msg = problems("[foo]\n", tmp_path=tmp_path)
    assert f"foo: unknown key (from {tmp_path / 'bad.toml'})" in msg, msg


def test_an_error_in_an_added_actors_table_names_the_file(tmp_path):
    msg = problems('[actors."probe@a"]\nrestart = "often"\n', tmp_path=tmp_path)
    assert lines_of(msg)[0].startswith(f'actors."probe@a".restart = "often" (from {tmp_path / "bad.toml"})')


def test_start_order_follows_dependencies(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('replace_default_actors = true\n[actors."probe@c"]\nafter = ["probe@b"]\n'
                 '[actors."probe@b"]\nafter = ["probe@a"]\n[actors."probe@a"]\n')
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


def test_cli_config_show_resolves_the_default_locations(tmp_path):
    runtime = tmp_path / "rt"
    done = sensorium("config", "show", env={"SENSORIUM__BUS__RUNTIME_DIR": str(runtime)})
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["bus"]["runtime_dir"] == str(runtime)
    assert shown["bus"]["frontend"] == f"ipc://{runtime}/pub.sock"
    assert shown["log"]["dir"] == str(runtime / "logs")
    assert shown["actors"]["recorder"]["settings"]["dir"] == str(runtime / "recordings")
    assert shown["actors"]["detector"]["settings"]["models_dir"] == str(ROOT / "models")
    assert shown["actors"]["gesture"]["settings"]["store"]["seed_path"] == str(ROOT / "models/gestures/synthetic.gst")
    done = sensorium("config", "show")  # no runtime_dir configured: still a real folder, never ""
    assert json.loads(done.stdout)["bus"]["runtime_dir"] not in ("", None)


def test_cli_config_show_sources_names_default_file_and_environment(tmp_path):
    f = user_file(tmp_path, "[actors.monitor.settings]\nprometheus_port = 9481\n")
    done = sensorium("-c", str(f), "config", "show", "--sources", env={"SENSORIUM__BUS__HWM": "123"})
    assert done.returncode == 0, done.stderr
    lines = {line.split(" = ")[0]: line for line in done.stdout.splitlines()}
    assert lines["bus.hwm"].endswith("# environment SENSORIUM__BUS__HWM")
    assert lines["actors.monitor.settings.prometheus_port"].endswith(f"# {f}")
    assert lines["actors.monitor.settings.interval_s"].endswith("# default")
    assert 'actors."probe@echo".restart' in lines


def test_cli_refuses_to_bind_a_public_address(tmp_path):
    done = sensorium("run", env={"SENSORIUM__BUS__FRONTEND": '"tcp://0.0.0.0:45999"',
                                 "SENSORIUM__BUS__RUNTIME_DIR": str(tmp_path)})
    assert done.returncode == 1 and "CURVE" in done.stderr
