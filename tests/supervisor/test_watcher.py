"""One Watcher, driven through every transition with a fake clock and a fake process.

No processes, sockets or sleeps: time is the ``now`` each call is given, and
the fake process records the signals it receives.
"""

from __future__ import annotations

import random
import signal
from typing import Any

import pytest
import structlog

from bus.messages import ActorEvent, Alert, Heartbeat
from config import ActorSpec
from config.schema import BackoffSettings, IntensitySettings
from supervisor import ActorState, StopPhase, TransitionError, Watcher

TERM_WAIT_S = 3.0
BACKOFF = BackoffSettings(initial_s=0.5, factor=2.0, max_s=4.0, jitter=0.0, reset_after_s=10.0)
INTENSITY = IntensitySettings(max_restarts=3, window_s=60.0, recovery_s=30.0)


class FakeProcess:
    """Stands in for ActorProcess: exits when told to, and on SIGKILL (which no process can ignore)."""

    def __init__(self, pid: int, obeys_sigterm: bool = False) -> None:
        self.pid = pid
        self.code: int | None = None
        self.signals: list[str] = []
        self.obeys_sigterm = obeys_sigterm

    def poll(self) -> int | None:
        return self.code

    def exit(self, code: int) -> None:
        self.code = code

    def terminate(self) -> None:
        self.signals.append("SIGTERM")
        if self.obeys_sigterm and self.code is None:
            self.code = -signal.SIGTERM

    def kill_group(self) -> None:
        self.signals.append("SIGKILL group")
        if self.code is None:
            self.code = -signal.SIGKILL


class Rig:
    """A Watcher with its fake spawner, a record of its events and stop requests, and a clock."""

    def __init__(self, **spec: Any) -> None:
        spec.setdefault("backoff", BACKOFF)
        spec.setdefault("intensity", INTENSITY)
        spec.setdefault("start_timeout_s", 20.0)
        spec.setdefault("liveness_timeout_s", 5.0)
        spec.setdefault("shutdown_s", 2.0)
        self.now = 100.0
        self.procs: list[FakeProcess] = []
        self.spawn_error: OSError | None = None
        self.obeys_sigterm = False
        self.events: list[ActorEvent] = []
        self.asked_to_stop: list[str] = []
        self.alerts: list[Alert] = []
        self.w = Watcher("probe@t", ActorSpec(**spec), self._spawn, self.events.append, self.asked_to_stop.append,
                         TERM_WAIT_S, random.Random(0), self.alerts.append)

    def _spawn(self, watcher: Watcher) -> FakeProcess:
        assert watcher is self.w
        if self.spawn_error is not None:
            raise self.spawn_error
        proc = FakeProcess(1000 + len(self.procs), self.obeys_sigterm)
        self.procs.append(proc)
        return proc

    @property
    def proc(self) -> FakeProcess:
        """The latest process spawned."""
        return self.procs[-1]

    def after(self, dt: float) -> None:
        """Advance the clock by ``dt`` seconds and tick."""
        self.now += dt
        self.w.tick(self.now)

    def at_due(self) -> None:
        """Advance the clock to the watcher's scheduled start and tick."""
        assert self.w.due is not None and self.w.due >= self.now
        self.now = self.w.due
        self.w.tick(self.now)

    def heartbeat(self, state: str = "ready", pid: int | None = None, rss: int = 0) -> None:
        hb = Heartbeat(state=state, pid=self.proc.pid if pid is None else pid, uptime=1.0, counters={},
                       latency_ms={}, rss=rss)
        self.w.on_heartbeat(hb, self.now)

    def running(self) -> None:
        """Start the actor and bring it to RUNNING."""
        self.w.start(self.now)
        self.heartbeat()
        assert self.w.state is ActorState.RUNNING

    def names(self) -> list[str]:
        return [e.event for e in self.events]

    def last(self, event: str) -> ActorEvent:
        return [e for e in self.events if e.event == event][-1]


def test_start_then_ready_heartbeat_is_running():
    rig = Rig()
    assert rig.w.state is ActorState.WAITING
    rig.w.start(rig.now)
    assert rig.w.state is ActorState.STARTING and rig.w.pid == 1000
    assert rig.last("starting").pid == 1000 and rig.last("starting").reason == ""
    rig.after(1.0)
    rig.heartbeat(state="starting")  # alive, still loading its model
    assert rig.w.state is ActorState.STARTING
    rig.heartbeat()
    assert rig.w.state is ActorState.RUNNING
    assert rig.names() == ["starting", "ready"]
    assert rig.last("ready").pid == 1000 and rig.last("ready").kind == "probe"
    status = rig.w.status(rig.now + 2.5)
    assert (status["state"], status["uptime"], status["pid"], status["restarts"]) == ("running", 2.5, 1000, 0)


def test_each_transition_logs_one_line_with_from_to_and_reason():
    rig = Rig()
    with structlog.testing.capture_logs() as logs:
        rig.running()
        rig.proc.exit(1)
        rig.after(1.0)
    moves = [x for x in logs if x["event"] == "actor_transition"]
    assert [(x["transition"], x["from"], x["to"]) for x in moves] == [
        ("start", "waiting", "starting"), ("on_ready", "starting", "running"),
        ("schedule_restart", "running", "backoff")]
    assert all(x["reason"] and x["name"] == "probe@t" for x in moves)
    assert moves[-1]["reason"] == "crashed (exit 1)" and moves[-1]["log_level"] == "warning"
    assert moves[-1]["delay_s"] == 0.5


def test_start_timeout_kills_counts_a_failure_and_schedules_a_restart():
    rig = Rig(start_timeout_s=20.0)
    rig.w.start(rig.now)
    rig.after(20.0)
    assert rig.proc.signals == []  # the timeout is "more than"
    rig.after(0.5)
    assert rig.proc.signals == ["SIGKILL group"]
    assert rig.w.state is ActorState.STARTING  # until the exit is seen
    rig.after(0.5)
    assert rig.proc.signals == ["SIGKILL group"]  # killed once
    assert rig.w.state is ActorState.BACKOFF
    exited = rig.last("exited")
    assert exited.reason.startswith("start timeout (20 s") and exited.exit == -signal.SIGKILL and exited.pid == 1000
    assert rig.last("restarting").delay == 0.5 and rig.w.attempt == 1 and rig.w.restarts == 1


def test_a_ready_heartbeat_after_the_start_timeout_kill_is_ignored():
    rig = Rig(start_timeout_s=20.0)
    rig.w.start(rig.now)
    rig.after(21.0)
    assert rig.proc.signals == ["SIGKILL group"]
    rig.proc.code = None  # the SIGKILL has not landed yet
    rig.heartbeat()
    assert rig.w.state is ActorState.STARTING and "ready" not in rig.names()
    rig.after(1.0)
    assert rig.proc.signals == ["SIGKILL group"]


def test_crash_restarts_after_the_delays_of_the_policy():
    rig = Rig()
    rig.running()
    for n, delay in enumerate([0.5, 1.0, 2.0], start=1):
        rig.after(1.0)
        rig.proc.exit(1)
        rig.after(0.5)
        assert rig.w.state is ActorState.BACKOFF and rig.w.due == rig.now + delay
        restarting = rig.last("restarting")
        assert (restarting.delay, restarting.exit, restarting.reason, restarting.attempt) == (
            delay, 1, "crashed (exit 1)", n)
        assert rig.w.status(rig.now)["next_start_in"] == delay
        rig.after(delay - 0.25)
        assert rig.w.state is ActorState.BACKOFF and len(rig.procs) == n
        rig.after(0.25)
        assert rig.w.state is ActorState.STARTING and len(rig.procs) == n + 1
        assert rig.last("starting").attempt == n
        rig.heartbeat()
    assert rig.names() == ["starting", "ready"] + ["exited", "restarting", "starting", "ready"] * 3
    assert rig.w.restarts == 3 and rig.w.attempt == 3


def test_a_clean_exit_of_a_permanent_actor_is_restarted_too():
    rig = Rig()
    rig.running()
    rig.proc.exit(0)
    rig.after(1.0)
    assert rig.w.state is ActorState.BACKOFF
    assert rig.last("exited").reason == "exited normally"


def test_clean_exits_never_open_the_circuit():
    rig = Rig()  # max_restarts = 3: a fourth crash would open it
    rig.running()
    for n in range(1, 7):  # six `ctl stop` from someone other than the supervisor
        rig.proc.exit(0)
        rig.after(0.1)
        assert rig.w.state is ActorState.BACKOFF, f"clean exit {n}"
        rig.at_due()
        rig.heartbeat()
        assert rig.w.state is ActorState.RUNNING
    assert "failed" not in rig.names() and rig.w.restarts == 6 and rig.w.restart_times == ()
    assert rig.w.attempt == 6  # the backoff still grows: a clean-exit loop is slowed down


def test_backoff_streak_resets_after_a_healthy_run():
    rig = Rig()  # reset_after_s = 10, liveness_timeout_s = 5
    rig.running()
    rig.proc.exit(1)
    rig.after(1.0)
    rig.at_due()
    rig.heartbeat()
    rig.proc.exit(1)
    rig.after(1.0)
    assert rig.last("restarting").delay == 1.0 and rig.w.attempt == 2
    rig.at_due()
    rig.heartbeat()  # ready again: healthy from here
    for _ in range(9):
        rig.after(1.0)
        rig.heartbeat()
    assert rig.w.attempt == 2
    rig.after(1.0)
    assert rig.w.attempt == 0 and rig.w.state is ActorState.RUNNING
    assert len(rig.w.restart_times) == 2  # the intensity window still counts them
    assert rig.w.status(rig.now)["attempt"] == 0
    rig.proc.exit(1)
    rig.after(0.5)
    assert rig.last("restarting").delay == 0.5  # a new streak


def fail_into_the_circuit(rig: Rig) -> None:
    """Crash right after every start until the circuit opens (max_restarts = 3)."""
    rig.running()
    while rig.w.state is not ActorState.FAILED:
        rig.proc.exit(1)
        rig.after(0.25)
        if rig.w.state is ActorState.BACKOFF:
            rig.at_due()


def test_intensity_exceeded_opens_the_circuit():
    rig = Rig()
    fail_into_the_circuit(rig)
    failed = rig.last("failed")
    assert failed.delay == 30.0 and failed.reason == "3 restarts within 60 s (max 3)" and failed.exit == 1
    assert rig.names().count("restarting") == 3
    assert rig.w.due == rig.now + 30.0 and not rig.w.has_process
    assert rig.w.status(rig.now)["state"] == "failed" and rig.w.status(rig.now)["next_start_in"] == 30.0


def test_half_open_try_that_stays_healthy_closes_the_circuit():
    rig = Rig()
    fail_into_the_circuit(rig)
    rig.after(29.5)
    assert rig.w.state is ActorState.FAILED and len(rig.procs) == 4
    rig.after(0.5)
    assert rig.w.state is ActorState.STARTING and rig.w.half_open
    assert rig.last("starting").reason == "half-open try"
    rig.heartbeat()
    for _ in range(9):
        rig.after(1.0)
        rig.heartbeat()
    assert rig.w.half_open and len(rig.w.restart_times) == 3
    rig.after(1.0)  # healthy for reset_after_s
    assert rig.w.state is ActorState.RUNNING and not rig.w.half_open
    assert rig.w.restart_times == () and rig.w.attempt == 0  # the circuit is closed
    rig.proc.exit(1)
    rig.after(0.5)
    assert rig.w.state is ActorState.BACKOFF and rig.last("restarting").delay == 0.5


def test_half_open_try_that_fails_opens_the_circuit_again():
    rig = Rig()
    fail_into_the_circuit(rig)
    rig.at_due()
    assert rig.w.half_open and rig.w.state is ActorState.STARTING
    rig.proc.exit(3)
    rig.after(0.25)
    assert rig.w.state is ActorState.FAILED and not rig.w.half_open
    failed = rig.last("failed")
    assert failed.reason == "half-open try failed" and failed.delay == 30.0 and failed.exit == 3
    assert rig.w.due == rig.now + 30.0
    assert rig.names()[-4:] == ["failed", "starting", "exited", "failed"]


def test_hung_actor_is_killed_and_restarted():
    rig = Rig(liveness_timeout_s=5.0)
    rig.running()
    rig.after(4.0)
    rig.heartbeat()
    rig.after(5.0)
    assert rig.proc.signals == []
    rig.after(0.5)
    assert rig.proc.signals == ["SIGKILL group"] and rig.w.state is ActorState.RUNNING
    rig.after(0.5)
    assert rig.w.state is ActorState.BACKOFF and rig.proc.signals == ["SIGKILL group"]
    exited = rig.last("exited")
    assert exited.reason == "hung (no heartbeat for 5.5 s)" and exited.exit == -signal.SIGKILL
    rig.at_due()
    assert rig.w.state is ActorState.STARTING


def test_an_actor_over_its_memory_limit_is_killed_restarted_and_alerted():
    rig = Rig(max_rss_bytes=1000)
    rig.running()
    rig.heartbeat(rss=1000)  # at the limit is fine
    assert rig.proc.signals == [] and not rig.alerts
    with structlog.testing.capture_logs() as logs:
        rig.heartbeat(rss=1001)
    assert rig.proc.signals == ["SIGKILL group"]
    move = next(x for x in logs if x["event"] == "actor_transition")
    assert move["transition"] == "kill_over_memory" and move["reason"] == "memory limit (RSS 1001 > 1000 bytes)"
    (alert,) = rig.alerts
    assert (alert.metric, alert.value, alert.threshold, alert.actor) == ("actor.memory_limit", 1001.0, 1000.0,
                                                                         "probe@t")
    rig.heartbeat(rss=5000)  # a heartbeat still on its way from the killed process: no second kill or alert
    assert rig.proc.signals == ["SIGKILL group"] and len(rig.alerts) == 1
    rig.after(0.1)
    assert rig.w.state is ActorState.BACKOFF
    assert rig.last("exited").reason == "memory limit (RSS 1001 > 1000 bytes)"
    rig.at_due()
    rig.heartbeat(rss=10)
    assert rig.w.state is ActorState.RUNNING and rig.w.restarts == 1


def test_a_starting_actor_over_its_memory_limit_is_killed_too():
    rig = Rig(max_rss_bytes=1000)
    rig.w.start(rig.now)
    rig.heartbeat(state="ready", rss=2000)  # its very first heartbeat is already over
    assert rig.w.state is ActorState.STARTING and rig.proc.signals == ["SIGKILL group"]
    rig.after(0.1)
    assert rig.w.state is ActorState.BACKOFF


def test_no_memory_limit_by_default():
    rig = Rig()
    rig.running()
    rig.heartbeat(rss=1 << 40)
    assert rig.proc.signals == [] and not rig.alerts


def test_a_killed_actor_keeps_its_streak_until_its_exit_is_seen():
    rig = Rig(liveness_timeout_s=5.0)
    rig.running()
    rig.proc.exit(1)
    rig.after(0.25)
    rig.at_due()
    rig.heartbeat()
    rig.after(20.0)  # hung, and past reset_after_s
    assert rig.proc.signals == ["SIGKILL group"]
    rig.proc.code = None  # the SIGKILL has not landed yet
    rig.after(0.5)
    assert rig.w.attempt == 1
    rig.proc.exit(-signal.SIGKILL)
    rig.after(0.5)
    assert rig.last("restarting").delay == 1.0  # the second of the streak


def test_late_heartbeat_of_an_earlier_process_is_ignored():
    rig = Rig(liveness_timeout_s=5.0)
    rig.running()
    old_pid = rig.proc.pid
    rig.proc.exit(1)
    rig.after(1.0)
    rig.at_due()
    assert rig.w.state is ActorState.STARTING and rig.w.pid != old_pid
    rig.heartbeat(pid=old_pid)
    assert rig.w.state is ActorState.STARTING  # not ready on the word of the old one
    rig.heartbeat()
    for _ in range(5):
        rig.after(1.0)
        rig.heartbeat(pid=old_pid)  # keeps nothing alive
    assert rig.w.state is ActorState.RUNNING and rig.proc.signals == []
    rig.after(0.5)
    assert rig.proc.signals == ["SIGKILL group"]


@pytest.mark.parametrize("restart,code,reason", [
    ("transient", 0, "transient actor exited normally"),
    ("temporary", 0, "temporary actors are never restarted"),
    ("temporary", 1, "temporary actors are never restarted"),
])
def test_transient_and_temporary_actors_rest(restart, code, reason):
    rig = Rig(restart=restart)
    rig.running()
    rig.proc.exit(code)
    rig.after(1.0)
    assert rig.w.state is ActorState.EXITED and rig.w.due is None
    assert rig.names()[-2:] == ["exited", "stopped"]
    assert rig.last("stopped").reason == reason and rig.last("stopped").exit == code
    assert rig.w.status(rig.now)["last_exit"] == code
    rig.after(1000.0)
    assert len(rig.procs) == 1


def test_a_transient_actor_that_crashes_is_restarted():
    rig = Rig(restart="transient")
    rig.running()
    rig.proc.exit(2)
    rig.after(1.0)
    assert rig.w.state is ActorState.BACKOFF


def test_stop_ends_stopped_when_the_actor_obeys_the_request():
    rig = Rig()
    rig.running()
    rig.w.request_stop(rig.now)
    assert rig.w.state is ActorState.STOPPING and rig.w.stop_phase is StopPhase.ASKED
    assert rig.asked_to_stop == ["probe@t"]
    rig.w.request_stop(rig.now)
    assert rig.asked_to_stop == ["probe@t"]  # asked once
    rig.after(1.0)
    rig.proc.exit(0)
    rig.after(0.5)
    assert rig.w.state is ActorState.STOPPED and rig.w.stop_phase is None and rig.proc.signals == []
    stopped = rig.last("stopped")
    assert (stopped.reason, stopped.exit, stopped.pid) == ("requested", 0, 1000)
    rig.after(1000.0)
    assert len(rig.procs) == 1  # a stopped actor stays stopped


def test_a_crash_while_stopping_ends_stopped():
    rig = Rig()
    rig.running()
    rig.w.request_stop(rig.now)
    rig.proc.exit(1)
    rig.after(0.5)
    assert rig.w.state is ActorState.STOPPED and rig.names()[-1] == "stopped" and "exited" not in rig.names()


def test_stop_escalates_to_sigterm_after_the_grace_period():
    rig = Rig(shutdown_s=2.0)
    rig.obeys_sigterm = True
    rig.running()
    rig.w.request_stop(rig.now)
    rig.after(2.0)
    assert rig.proc.signals == [] and rig.w.stop_phase is StopPhase.ASKED
    rig.after(0.5)
    assert rig.proc.signals == ["SIGTERM"] and rig.w.stop_phase is StopPhase.TERM
    rig.after(0.5)
    assert rig.w.state is ActorState.STOPPED and rig.last("stopped").exit == -signal.SIGTERM
    assert rig.proc.signals == ["SIGTERM"]


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored():
    rig = Rig(shutdown_s=2.0)  # term_wait_s = 3
    rig.running()
    rig.w.request_stop(rig.now)
    rig.after(2.5)
    rig.after(3.0)
    assert rig.proc.signals == ["SIGTERM"] and rig.w.stop_phase is StopPhase.TERM
    rig.after(0.5)
    assert rig.proc.signals == ["SIGTERM", "SIGKILL group"] and rig.w.stop_phase is StopPhase.KILL
    rig.proc.code = None  # stuck in uninterruptible sleep: there is nothing more to send
    rig.after(30.0)
    assert rig.proc.signals == ["SIGTERM", "SIGKILL group"] and rig.w.state is ActorState.STOPPING
    rig.proc.exit(-signal.SIGKILL)
    rig.after(0.5)
    assert rig.w.state is ActorState.STOPPED and rig.last("stopped").reason == "requested"
    assert "exited" not in rig.names() and "restarting" not in rig.names()


def test_stop_logs_its_phases():
    rig = Rig(shutdown_s=2.0)
    rig.running()
    with structlog.testing.capture_logs() as logs:
        rig.w.request_stop(rig.now)
        rig.after(2.5)
        rig.after(3.5)
        rig.after(0.5)
    moves = [(x["transition"], x["to"], x.get("phase")) for x in logs if x["event"] == "actor_transition"]
    assert moves == [("request_stop", "stopping", "asked"), ("escalate_term", "stopping", "term"),
                     ("escalate_kill", "stopping", "kill"), ("stopped", "stopped", None)]


def test_stop_of_an_actor_without_a_process_drops_its_scheduled_start():
    rig = Rig()
    rig.running()
    rig.proc.exit(1)
    rig.after(0.25)
    assert rig.w.state is ActorState.BACKOFF
    rig.w.request_stop(rig.now)
    assert rig.w.state is ActorState.STOPPED and rig.w.due is None and rig.asked_to_stop == []
    rig.after(100.0)
    assert len(rig.procs) == 1


def test_restart_request_stops_then_starts_with_a_clean_history():
    rig = Rig()
    rig.running()
    rig.proc.exit(1)
    rig.after(0.25)
    rig.at_due()
    rig.heartbeat()
    assert rig.w.attempt == 1 and len(rig.w.restart_times) == 1
    first = rig.proc
    rig.w.manual_restart(rig.now)
    assert rig.w.state is ActorState.STOPPING and rig.asked_to_stop == ["probe@t"]
    first.exit(0)
    rig.after(0.5)
    assert rig.w.state is ActorState.STARTING and rig.proc is not first
    assert rig.w.attempt == 0 and rig.w.restart_times == ()
    assert rig.names()[-2:] == ["stopped", "starting"]
    assert rig.last("starting").attempt == 0 and rig.last("starting").reason == ""


def test_restart_request_of_an_actor_without_a_process_starts_it_at_once():
    rig = Rig()
    fail_into_the_circuit(rig)
    rig.w.manual_restart(rig.now)
    assert rig.w.state is ActorState.STARTING and not rig.w.half_open and rig.w.due is None
    assert rig.last("starting").reason == "" and rig.w.restart_times == ()


def test_manual_start_of_a_failed_actor_resets_the_streak():
    rig = Rig()
    fail_into_the_circuit(rig)
    assert rig.w.attempt == 3
    rig.w.manual_start(rig.now)
    assert rig.w.state is ActorState.STARTING and rig.w.due is None
    assert rig.w.attempt == 0 and rig.w.restart_times == () and not rig.w.half_open
    rig.heartbeat()
    rig.proc.exit(1)
    rig.after(0.25)
    assert rig.w.state is ActorState.BACKOFF and rig.last("restarting").delay == 0.5


def test_manual_start_of_an_actor_with_a_process_is_refused():
    rig = Rig()
    rig.running()
    with pytest.raises(TransitionError, match="no manual_start from running with a process"):
        rig.w.manual_start(rig.now)


def test_disabled_actor_stays_stopped_until_started_on_request():
    rig = Rig(enabled=False)
    rig.w.disable()
    assert rig.w.state is ActorState.STOPPED and rig.w.status(rig.now)["state"] == "stopped"
    rig.after(1000.0)
    assert rig.procs == [] and rig.events == []
    with pytest.raises(TransitionError):
        rig.w.start(rig.now)  # the first start is for actors waiting on their dependencies
    rig.w.manual_start(rig.now)
    rig.heartbeat()
    assert rig.w.state is ActorState.RUNNING


def test_shutdown_stops_without_restarting():
    rig = Rig()
    rig.running()
    rig.w.begin_shutdown()
    rig.proc.exit(1)  # a crash during shutdown, before its stop request
    rig.after(1.0)
    assert rig.w.state is ActorState.STOPPED and rig.names()[-1] == "stopped"
    assert "restarting" not in rig.names()
    rig.after(1000.0)
    assert len(rig.procs) == 1


def test_shutdown_leaves_a_scheduled_start_unstarted():
    rig = Rig()
    rig.running()
    rig.proc.exit(1)
    rig.after(0.25)
    rig.w.begin_shutdown()
    rig.after(10.0)
    assert rig.w.state is ActorState.BACKOFF and len(rig.procs) == 1
    rig.w.request_stop(rig.now)
    assert rig.w.state is ActorState.STOPPED and rig.w.due is None


def test_a_restart_in_flight_when_shutdown_begins_does_not_start():
    rig = Rig()
    rig.running()
    rig.w.manual_restart(rig.now)
    rig.w.begin_shutdown()
    rig.proc.exit(0)
    rig.after(1.0)
    assert rig.w.state is ActorState.STOPPED and len(rig.procs) == 1


def test_force_kill_sigkills_the_group():
    rig = Rig()
    rig.running()
    rig.w.begin_shutdown()
    rig.w.force_kill()
    assert rig.proc.signals == ["SIGKILL group"]
    rig.after(0.25)
    assert rig.w.state is ActorState.STOPPED and rig.last("stopped").exit == -signal.SIGKILL


def test_spawn_failure_counts_as_a_failed_start():
    rig = Rig()
    rig.spawn_error = OSError(24, "Too many open files")
    rig.w.start(rig.now)
    assert rig.w.state is ActorState.BACKOFF and not rig.w.has_process
    assert rig.names() == ["exited", "restarting"]
    exited = rig.last("exited")
    assert exited.reason == "spawn failed: Too many open files" and exited.exit == -1 and exited.pid is None
    rig.spawn_error = None
    rig.at_due()
    assert rig.w.state is ActorState.STARTING and rig.w.pid == 1000


def test_spawn_failures_open_the_circuit_like_crashes():
    rig = Rig()
    rig.spawn_error = OSError(12, "Cannot allocate memory")
    rig.w.start(rig.now)
    while rig.w.state is ActorState.BACKOFF:
        rig.at_due()
    assert rig.w.state is ActorState.FAILED and rig.names().count("restarting") == 3


@pytest.mark.parametrize("transition", [
    "on_ready", "kill_hung", "start_timed_out", "escalate_term", "escalate_kill", "restart_after_backoff",
    "half_open_try", "reset_after_healthy_run",
])
def test_transitions_from_the_wrong_state_are_refused(transition):
    rig = Rig()
    with pytest.raises(TransitionError, match=f"probe@t: no {transition} from waiting without a process"):
        getattr(rig.w, transition)(rig.now)
    assert rig.w.state is ActorState.WAITING


def test_an_exit_without_a_process_is_refused():
    rig = Rig()
    with pytest.raises(TransitionError, match="no on_exit from waiting"):
        rig.w.on_exit(0, rig.now)


def test_a_signal_death_while_asked_to_stop_is_reported_as_a_crash_not_a_clean_stop():
    rig = Rig()
    rig.running()
    rig.w.request_stop(rig.now)
    rig.proc.exit(-signal.SIGSEGV)                 # before any SIGTERM of ours
    rig.after(0.5)
    stopped = rig.last("stopped")
    assert rig.w.state is ActorState.STOPPED and stopped.exit == -signal.SIGSEGV
    assert stopped.reason == "crashed while stopping (signal SIGSEGV)"
