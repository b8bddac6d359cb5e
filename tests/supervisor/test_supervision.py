"""The supervisor with real actor processes, sockets and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from tests.support import ROOT, WAIT_S, actor_pids, clean_env, json_lines, wait_until

pytestmark = pytest.mark.slow

FAST = """
[actor_defaults]
liveness_timeout_s = 10.0
backoff = { initial_s = 0.2, factor = 2.0, max_s = 5.0, jitter = 0.0, reset_after_s = 60.0 }
intensity = { max_restarts = 10, window_s = 60.0, recovery_s = 2.0 }
"""


def gone(pids, timeout_s=WAIT_S):
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return not alive


def test_killed_actor_restarts_after_delays_that_follow_the_policy(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@k"]\n', FAST)
    status = sup.wait_running("probe@k")
    events = collector_factory(sup, ["sys.actor"])
    expected = [0.2, 0.4, 0.8]
    for n, delay in enumerate(expected, start=1):
        pid = actor_pids(status)["probe@k"]
        os.kill(pid, signal.SIGKILL)
        events.wait_event("probe@k", "ready", count=n)
        status = sup.wait_running("probe@k")
        assert actor_pids(status)["probe@k"] != pid
    log = events.events("probe@k")
    restarting = [e for e in log if e["event"] == "restarting"]
    assert [e["delay"] for e in restarting] == expected
    assert all(e["exit"] == -signal.SIGKILL for e in restarting)
    # The restart really waited: the next "starting" comes at least `delay` after "restarting".
    starts = [e for e in log if e["event"] == "starting"]
    for r in restarting:
        nxt = next(s for s in starts if s["ts"] > r["ts"])
        assert (nxt["ts"] - r["ts"]) / 1e9 >= r["delay"] - 0.01
    assert sup.actor("probe@k")["restarts"] == 3


def test_backoff_starts_again_from_the_first_delay_after_a_healthy_run(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@r"]\n'
                             'backoff = { initial_s = 0.3, factor = 3.0, jitter = 0.0, reset_after_s = 2.0 }\n', FAST)
    status = sup.wait_running("probe@r")
    events = collector_factory(sup, ["sys.actor"])
    os.kill(actor_pids(status)["probe@r"], signal.SIGKILL)   # restart 1: 0.3 s
    events.wait_event("probe@r", "ready")
    status = sup.wait_running("probe@r")
    os.kill(actor_pids(status)["probe@r"], signal.SIGKILL)   # restart 2, still in the streak: 0.9 s
    events.wait_event("probe@r", "ready", count=2)
    # healthy for reset_after_s: the streak ends (seen in status as attempt 0)
    wait_until(lambda: sup.actor("probe@r")["attempt"] == 0, what="backoff reset after a healthy run")
    os.kill(sup.actor("probe@r")["pid"], signal.SIGKILL)     # a new streak: 0.3 s again
    events.wait_event("probe@r", "ready", count=3)
    delays = [e["delay"] for e in events.events("probe@r") if e["event"] == "restarting"]
    assert delays == [0.3, 0.9, 0.3]


def test_actor_failing_at_start_opens_the_circuit_then_gets_a_half_open_try(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@f"]\nsettings = { fail_setup = true, setup_delay_s = 0.3 }\n'
                             'intensity = { max_restarts = 2, window_s = 60.0, recovery_s = 3.0 }\n', FAST)
    events = collector_factory(sup, ["sys.actor"])
    failed = events.wait_event("probe@f", "failed")[0]
    assert failed["delay"] == 3.0 and "2 restarts" in failed["reason"]
    assert sup.actor("probe@f")["state"] == "failed"
    # one half-open try after the recovery time, which fails and opens the circuit again
    events.wait_event("probe@f", "failed", count=2)
    log = events.events("probe@f")
    first_fail = log.index(failed)
    after = [e["event"] for e in log[first_fail + 1:]]
    assert after[:3] == ["starting", "exited", "failed"]
    half_open_start = log[first_fail + 1]
    assert half_open_start["reason"] == "half-open try"
    assert (half_open_start["ts"] - failed["ts"]) / 1e9 >= 3.0 - 0.01
    restarts_before_fail = [e for e in log[:first_fail] if e["event"] == "restarting"]
    assert len(restarts_before_fail) <= 2


def test_hung_actor_is_detected_killed_and_restarted(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@h"]\nliveness_timeout_s = 2.0\nsettings = { hang_after_s = 1.0 }\n',
                             FAST)
    first = sup.wait_running("probe@h")
    events = collector_factory(sup, ["sys.actor"])
    exited = events.wait_event("probe@h", "exited")[0]
    assert exited["reason"].startswith("hung")
    assert exited["exit"] == -signal.SIGKILL
    events.wait_event("probe@h", "ready")
    assert not psutil.pid_exists(actor_pids(first)["probe@h"]) or gone([actor_pids(first)["probe@h"]])


def test_another_hosts_heartbeats_under_the_same_name_keep_no_hung_actor_alive(supervisor_factory,
                                                                                collector_factory):
    """A bridge may import another host's ``sys.heartbeat``: an actor there with the same name (and, by chance,
    the same pid) must not feed this host's watcher."""
    import threading

    import zmq

    from bus.messages import Heartbeat
    from bus.pubsub import Publisher

    sup = supervisor_factory('[actors."probe@h"]\nliveness_timeout_s = 2.0\nsettings = { hang_after_s = 1.0 }\n',
                             FAST)
    pid = actor_pids(sup.wait_running("probe@h"))["probe@h"]
    events = collector_factory(sup, ["sys.actor"])
    stop = threading.Event()
    pub = Publisher(zmq.Context.instance(), sup.frontend, "probe@h", host="elsewhere")

    def beat() -> None:
        body = Heartbeat(state="ready", pid=pid, uptime=1.0, counters={}, latency_ms={}, rss=1).to_body()
        while not stop.wait(0.2):
            pub.publish(Heartbeat.TOPIC, body)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        exited = events.wait_event("probe@h", "exited")[0]
        assert exited["reason"].startswith("hung"), exited
        assert sup.status()["heartbeats"]["foreign"] > 0
    finally:
        stop.set()
        beater.join(5)
        pub.close()


def test_slow_start_is_killed_after_the_start_timeout(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@s"]\nstart_timeout_s = 1.5\nsettings = { setup_delay_s = 30.0 }\n',
                             FAST)
    events = collector_factory(sup, ["sys.actor"])
    exited = events.wait_event("probe@s", "exited")[0]
    assert exited["reason"].startswith("start timeout")
    assert sup.proc.poll() is None


PIPELINE = """
[actors."probe@a"]
[actors."probe@b"]
after = ["probe@a"]
[actors."probe@c"]
after = ["probe@b"]
"""


def test_sigterm_stops_every_actor_in_reverse_order_leaving_no_process(supervisor_factory, collector_factory):
    sup = supervisor_factory(PIPELINE, FAST)
    status = sup.wait_running("probe@a", "probe@b", "probe@c")
    events = collector_factory(sup, ["sys.actor"])
    ready_order = [a["name"] for a in sorted(status["actors"], key=lambda a: -(a["uptime"] or 0))]
    assert ready_order == ["probe@a", "probe@b", "probe@c"]
    pids = list(actor_pids(status).values())
    children = sup.descendants()
    assert sup.terminate() == 0
    stopped = [e["actor"] for e in events.events() if e["event"] == "stopped"]
    assert stopped == ["probe@c", "probe@b", "probe@a"]
    assert gone(pids, 10)
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not (sup.folder / "control.sock").exists()


def test_sigkill_of_the_supervisor_makes_every_actor_exit_by_itself(supervisor_factory):
    sup = supervisor_factory(PIPELINE, FAST)
    pids = list(actor_pids(sup.wait_running("probe@a", "probe@b", "probe@c")).values())
    sup.proc.kill()
    sup.proc.wait()
    assert gone(pids, 15), "actors outlived their supervisor"


def test_transient_actor_that_exits_normally_is_not_restarted(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@t"]\nrestart = "transient"\n[actors."probe@p"]\n', FAST)
    sup.wait_running("probe@t", "probe@p")
    events = collector_factory(sup, ["sys.actor"])
    for name in ("probe@t", "probe@p"):  # each is told to stop by someone other than the supervisor
        done = sup.cli("inject", f"ctl.{name}", '{"cmd": "stop"}', "--wait", "20")
        assert done.returncode == 0, done.stderr
    events.wait_event("probe@p", "ready")
    stopped = events.wait_event("probe@t", "stopped")[0]
    assert stopped["exit"] == 0
    assert sup.actor("probe@t")["state"] == "exited"
    assert [e["event"] for e in events.events("probe@p")][:3] == ["exited", "restarting", "starting"]


def test_control_commands_from_the_cli(supervisor_factory):
    sup = supervisor_factory('[actors."probe@x"]\n[actors.monitor]\n', FAST)
    sup.wait_running("probe@x", "monitor")
    status = json.loads(sup.cli("status", "--json", check=True).stdout)
    row = next(a for a in status["actors"] if a["name"] == "probe@x")
    assert status["broker"]["frontend_frames_in"] > 0  # heartbeats have gone through it
    assert {"name", "kind", "state", "pid", "restarts", "uptime"} <= set(row)
    table = sup.cli("status", check=True).stdout
    assert "probe@x" in table and "running" in table and "RESTARTS" in table
    old_pid = row["pid"]
    assert "stopped" in sup.cli("stop", "probe@x", check=True).stdout
    assert sup.actor("probe@x")["state"] == "stopped" and gone([old_pid], 10)
    assert "running" in sup.cli("start", "probe@x", check=True).stdout
    pid = sup.actor("probe@x")["pid"]
    assert "running" in sup.cli("restart", "probe@x", check=True).stdout
    assert sup.actor("probe@x")["pid"] != pid
    bad = sup.cli("stop", "ghost")
    assert bad.returncode == 1 and "no actor named 'ghost'" in bad.stderr


def test_tap_and_inject_round_trip_across_processes(supervisor_factory):
    sup = supervisor_factory('[actors."probe@echo"]\nsettings = { echo = ["test."] }\n', FAST)
    sup.wait_running("probe@echo")
    cmd = [sys.executable, str(ROOT / "supervisor.py"), "tap", "test.", "probe.", "--count", "2", "--timeout",
           str(WAIT_S), "-c", str(sup.config_path)]
    tap = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "tap: listening to test. probe." in tap.stderr.readline()
        done = sup.cli("inject", "test.hello", '{"n": 1}', "--wait", str(WAIT_S))
        assert done.returncode == 0, done.stderr
        out, err = tap.communicate(timeout=WAIT_S)
    finally:
        tap.kill()
    lines = json_lines(out)
    by_topic = {line["topic"]: line for line in lines}
    assert by_topic["test.hello"]["body"] == {"n": 1} and by_topic["test.hello"]["src"].startswith("inject@")
    assert by_topic["probe.echo"]["body"]["body"] == {"n": 1} and by_topic["probe.echo"]["src"] == "probe@echo"
    assert {"topic", "src", "seq", "ts", "body"} <= set(lines[0])


def test_tap_direct_reads_inject_and_an_actor_without_the_broker(supervisor_factory):
    sup = supervisor_factory('[actors."probe@echo"]\nsettings = { echo = ["test."] }\n', FAST)
    sup.wait_running("probe@echo")
    cmd = [sys.executable, str(ROOT / "supervisor.py"), "tap", "test.", "probe.", "--direct", "--count", "10",
           "--timeout", str(WAIT_S), "-c", str(sup.config_path)]
    tap = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "tap: listening to test. probe." in tap.stderr.readline()
        # inject's publisher listens for direct readers too; the tap finds it within 0.1 s of its start (the
        # probe's subscription alone lets inject start at once), so it sends for a while
        done = sup.cli("inject", "test.hello", '{"n": 2}', "--repeat", "100", "--rate", "20", "--wait", str(WAIT_S))
        assert done.returncode == 0, done.stderr
        out, err = tap.communicate(timeout=WAIT_S)
    finally:
        tap.kill()
    by_topic = {line["topic"]: line for line in json_lines(out)}
    assert by_topic["test.hello"]["body"] == {"n": 2} and by_topic["test.hello"]["src"].startswith("inject@")
    assert by_topic["probe.echo"]["body"]["body"] == {"n": 2} and by_topic["probe.echo"]["src"] == "probe@echo"


def test_inject_without_subscribers_says_so(supervisor_factory):
    sup = supervisor_factory('[actors."probe@q"]\n', FAST)
    sup.wait_running("probe@q")
    done = sup.cli("inject", "nobody.listens", "{}", "--wait", "0.5")
    assert done.returncode == 1 and "nobody subscribes" in done.stderr
    bad = sup.cli("inject", "test.x", "[1, 2]")
    assert bad.returncode == 1 and "JSON object" in bad.stderr


def test_actor_logs_are_json_lines_in_rotating_files(supervisor_factory):
    sup = supervisor_factory('[actors."probe@l"]\n', '[log]\nmax_bytes = 20000\nbackups = 2\n' + FAST)
    sup.wait_running("probe@l")
    sup.terminate()
    lines = json_lines((sup.folder / "logs" / "probe@l.log").read_text())
    events = [line["event"] for line in lines]
    assert "ready" in events and "stopped" in events
    assert all({"ts", "level", "actor", "event"} <= set(line) for line in lines)
    assert all(line["actor"] == "probe@l" for line in lines)
    own = json_lines((sup.folder / "logs" / "supervisor.log").read_text())
    assert {"supervisor_started", "actor_ready", "actor_stopped", "supervisor_stopped"} <= {x["event"] for x in own}


def test_second_supervisor_on_the_same_runtime_dir_is_refused(supervisor_factory):
    sup = supervisor_factory('[actors."probe@one"]\n', FAST)
    sup.wait_running("probe@one")
    done = sup.cli("run", timeout=60)
    assert done.returncode == 1 and "already running" in done.stderr
    assert sup.actor("probe@one")["state"] == "running"


def test_validate_reports_a_checklist(supervisor_factory, ipc_dir):
    from tests.support import write_config

    # The detector's own preflight (from its spec) verifies the model store it is configured with.
    good = write_config(ipc_dir, '[actors."probe@v"]\n[actors.monitor]\n[actors.detector]\n')
    done = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "validate", "-c", str(good)], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("config", "runtime folder", "endpoint frontend", "log folder", "actor kind probe", "gpu",
                  "detector models", "extra [vision]"):
        assert check in done.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "validate", "-c", str(good)], cwd=ROOT,
                         env=clean_env(SENSORIUM__BUS__BACKEND='"tcp://0.0.0.0:45998"'), capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 1 and "FAIL" in bad.stdout and "CURVE" in bad.stdout


def test_shutdown_stops_independent_actors_together_and_dependents_first(supervisor_factory):
    # b depends on nothing, c on a: c and b are asked to stop at once, a only once c is down.
    sup = supervisor_factory('[actors."probe@a"]\n[actors."probe@b"]\n[actors."probe@c"]\nafter = ["probe@a"]\n',
                             FAST)
    sup.wait_running("probe@a", "probe@b", "probe@c")
    assert sup.terminate() == 0
    lines = [x for x in json_lines((sup.folder / "logs" / "supervisor.log").read_text())
             if x["event"] == "actor_transition" and x["transition"] in ("request_stop", "stopped")]
    steps = [(x["transition"], x["name"]) for x in lines]
    first_stopped = next(i for i, s in enumerate(steps) if s[0] == "stopped")
    assert set(steps[:first_stopped]) == {("request_stop", "probe@b"), ("request_stop", "probe@c")}, steps
    assert steps.index(("request_stop", "probe@a")) > steps.index(("stopped", "probe@c")), steps


def test_six_clean_ctl_stops_do_not_open_the_circuit(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@x"]\nbackoff = { initial_s = 0.1, factor = 1.0, jitter = 0.0 }\n'
                             'intensity = { max_restarts = 3, window_s = 60.0, recovery_s = 60.0 }\n', FAST)
    sup.wait_running("probe@x")
    events = collector_factory(sup, ["sys.actor"])
    for n in range(1, 7):  # what anyone on the bus can do: `sensorium inject ctl.probe@x '{"cmd":"stop"}'`
        done = sup.cli("inject", "ctl.probe@x", '{"cmd": "stop"}', "--wait", "20")
        assert done.returncode == 0, done.stderr
        events.wait_event("probe@x", "ready", count=n)
    assert not [e for e in events.events("probe@x") if e["event"] == "failed"]
    assert sup.wait_running("probe@x") and sup.actor("probe@x")["restarts"] == 6


def test_an_actor_over_its_memory_limit_is_restarted_with_an_alert(supervisor_factory, collector_factory):
    sup = supervisor_factory('[actors."probe@m"]\nmax_rss_bytes = 1000000\n', FAST)  # any Python is over 1 MB
    events = collector_factory(sup, ["sys.actor", "monitor.alert"])
    exited = events.wait_event("probe@m", "exited")[0]
    assert exited["reason"].startswith("memory limit (RSS ") and exited["reason"].endswith(" > 1000000 bytes)")
    assert exited["exit"] == -signal.SIGKILL
    alert = events.wait_for(lambda m: m.topic == "monitor.alert", what="the memory alert").body
    assert (alert["metric"], alert["actor"], alert["threshold"]) == ("actor.memory_limit", "probe@m", 1000000.0)
    assert alert["value"] > 1000000
    events.wait_event("probe@m", "restarting")
