"""Commands that answer: ``ctl`` waits for its reply, start/restart fail unless RUNNING, ``tap``'s stdout
is JSON only, ``validate`` changes nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import zmq

from bus.pubsub import Publisher
from tests.support import ROOT, WAIT_S, clean_env, write_config

FAST = """
[actor_defaults]
liveness_timeout_s = 10.0
backoff = { initial_s = 0.2, factor = 2.0, max_s = 5.0, jitter = 0.0, reset_after_s = 60.0 }
"""


def sensorium(config, *args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "supervisor.py"), *args, "-c", str(config)], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=timeout)


def test_ctl_prints_the_reply_with_its_corr_and_exits_by_its_outcome(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@x"]\n', FAST)
    sup.wait_running("probe@x")
    replies = collector_factory(sup, ["ctl.reply"])
    pong = sup.cli("ctl", "probe@x", "ping")
    assert pong.returncode == 0, pong.stderr
    [line] = pong.stdout.splitlines()
    assert json.loads(line) == {"actor": "probe@x", "cmd": "ping", "ok": True, "result": "pong", "error": ""}
    sent = replies.wait_for(lambda m: m.body["cmd"] == "ping", what="the ping's reply on ctl.reply")
    assert sent.header.corr  # the reply carries the command's corr; the CLI matched on it

    stats = sup.cli("ctl", "probe@x", "stats", "{}")
    assert stats.returncode == 0 and json.loads(stats.stdout)["result"]["pid"] == sup.actor("probe@x")["pid"]

    unknown = sup.cli("ctl", "probe@x", "fly", '{"to": "moon"}')
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["ok"] is False and "unknown command 'fly'" in unknown.stderr

    nobody = sup.cli("ctl", "ghost", "ping", "--timeout", "1")
    assert nobody.returncode == 2 and nobody.stdout == ""
    assert "nobody subscribes to ctl.ghost" in nobody.stderr

    bad_args = sup.cli("ctl", "probe@x", "ping", "[1]")
    assert bad_args.returncode == 2 and "JSON object" in bad_args.stderr


def test_ctl_times_out_when_the_subscriber_never_answers(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@x"]\n', FAST)
    sup.wait_running("probe@x")
    silent = collector_factory(sup, ["ctl.mute"])  # subscribes to ctl.mute and never answers
    done = sup.cli("ctl", "mute", "ping", "--timeout", "3")
    assert done.returncode == 2 and "mute did not answer 'ping' within 3 s" in done.stderr
    assert silent.wait_for(lambda m: m.body == {"cmd": "ping", "args": {}}).header.corr  # it was sent


def test_start_and_restart_fail_unless_the_actor_reaches_running(supervisor_factory):
    sup = supervisor_factory('[actors."probe@ok"]\n'
                             '[actors."probe@bad"]\nenabled = false\nsettings = { fail_setup = true }\n'
                             'intensity = { max_restarts = 1, window_s = 60.0, recovery_s = 600.0 }\n'
                             '[actors."probe@slow"]\nenabled = false\nsettings = { setup_delay_s = 120.0 }\n'
                             'start_timeout_s = 300.0\n', FAST)
    sup.wait_running("probe@ok")
    start = sup.cli("start", "probe@bad")
    assert start.returncode == 1, start.stdout
    assert "probe@bad" in start.stderr and "instead of running" in start.stderr
    assert "exit code 1" in start.stderr and "probe@bad.log" in start.stderr
    restart = sup.cli("restart", "probe@bad")
    assert restart.returncode == 1 and "instead of running" in restart.stderr

    slow = sup.cli("start", "probe@slow", "--timeout", "2")
    assert slow.returncode == 1 and "still starting at the deadline" in slow.stderr

    ok = sup.cli("restart", "probe@ok")
    assert ok.returncode == 0 and "probe@ok: running" in ok.stdout


def test_tap_stdout_holds_json_lines_only_while_the_bus_logs(broker, ipc_dir):
    config = write_config(ipc_dir, "")
    tap = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "tap", "test.", "--count", "1",
                            "--timeout", str(WAIT_S), "-c", str(config)], cwd=ROOT, env=clean_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = Publisher(zmq.Context.instance(), broker.frontend, "test", linger_ms=1000)
    try:
        assert pub.wait_for_subscriber("test.x", WAIT_S), "tap never subscribed"
        pub.sock.send_multipart([b"test.x", b"\xc1not msgpack", b"\x80"])  # malformed: the bus logs it
        pub.publish("test.x", {"n": 1})
        out, err = tap.communicate(timeout=WAIT_S)
    finally:
        pub.close()
        tap.kill()
    assert tap.returncode == 0, err
    assert "malformed_message_dropped" in err  # the log line went to stderr...
    records = [json.loads(line) for line in out.splitlines()]  # ...and stdout is JSON, line by line
    assert [(r["topic"], r["body"]) for r in records] == [("test.x", {"n": 1})]


def test_validate_reports_a_shared_runtime_dir_and_changes_nothing(tmp_path):
    target = tmp_path / "shared"
    target.mkdir()
    target.chmod(0o755)
    link = tmp_path / "rt"
    link.symlink_to(target)
    config = write_config(link, '[actors."probe@x"]\n')
    done = sensorium(config, "validate")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # not chmod-ed through the symlink
    assert link.is_symlink() and os.readlink(link) == str(target)
    row = next(line for line in done.stdout.splitlines() if "runtime folder" in line)
    assert row.startswith("WARN") and "not private" in row and f"a symlink to {target}" in row, done.stdout

    missing = tmp_path / "not-yet"
    config = tmp_path / "missing.toml"
    config.write_text(f'[bus]\nruntime_dir = "{missing}"\n[actors."probe@x"]\n')
    done = sensorium(config, "validate")
    assert not missing.exists()  # neither it nor its logs folder is made
    row = next(line for line in done.stdout.splitlines() if "runtime folder" in line)
    assert "does not exist yet" in row and done.returncode == 0, done.stdout


def test_a_topic_that_is_no_topic_is_one_line_and_a_closed_pipe_ends_a_command_quietly(ipc_dir):
    config = write_config(ipc_dir, "")
    for args in (("tap", "Sensor.IMU", "--timeout", "1"), ("record", str(ipc_dir / "x.mcap"), "Camera."),
                 ("topic", "hz", "Bad.Topic")):
        done = sensorium(config, *args)
        assert done.returncode == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == "", (args, done.stderr)
        assert f"sensorium {args[0]}: invalid topic" in done.stderr, (args, done.stderr)
    # `sensorium config show | head -1`, the reader gone before the first write: the command must not complain
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        shown = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "config", "show", "-c", str(config)],
                               cwd=ROOT, env=clean_env(), stdout=write_end, stderr=subprocess.PIPE, text=True,
                               timeout=WAIT_S)
    finally:
        os.close(write_end)
    assert shown.returncode == 0 and "BrokenPipeError" not in shown.stderr, shown.stderr


def test_tap_into_a_closed_pipe_ends_quietly(broker, ipc_dir):
    """``sensorium tap | head -1`` after head has gone: the first line's write fails, and tap ends with 0."""
    config = write_config(ipc_dir, "")
    read_end, write_end = os.pipe()
    os.close(read_end)
    tap = subprocess.Popen([sys.executable, str(ROOT / "supervisor.py"), "tap", "test.", "--timeout", str(WAIT_S),
                            "-c", str(config)], cwd=ROOT, env=clean_env(), stdout=write_end, stderr=subprocess.PIPE,
                           text=True)
    os.close(write_end)
    pub = Publisher(zmq.Context.instance(), broker.frontend, "test", linger_ms=1000)
    try:
        assert pub.wait_for_subscriber("test.x", WAIT_S), "tap never subscribed"
        pub.publish("test.x", {"n": 1})
        _, err = tap.communicate(timeout=WAIT_S)
    finally:
        pub.close()
        tap.kill()
    assert tap.returncode == 0 and "BrokenPipeError" not in err and "Traceback" not in err, err
