#!/usr/bin/env python3
"""Process supervision for Sensorium, and the ``sensorium`` command.

Modelled on Erlang/OTP and circus, split the same way:

* ``RestartPolicy.decide`` - the one place that decides what happens when an
  actor exits: restart after a backoff delay, open the circuit (FAILED), or
  let it rest. Pure and small, so it is tested on its own.
* ``Watcher`` - one per actor: an explicit state machine over
  ``ActorState`` whose transitions are methods (``start``, ``on_ready``,
  ``on_exit``, ``kill_hung``, ``request_stop``, ``escalate_term``...), each
  logged as one ``actor_transition`` line. It holds the policy state
  (attempts, restart times, half-open flag), the liveness clock and the stop
  escalation (``StopPhase``); nothing else writes them. Time comes in as
  ``now`` and OS actions go through its ``Process``, so it is tested with a
  fake clock and a fake process.
* ``ActorProcess`` - one running OS process (poll, SIGTERM, SIGKILL of its
  group) and the thread copying its output into the actor's rotating log
  file.
* ``Supervisor`` - the arbiter: hosts the broker, starts actors in dependency
  order, feeds each actor's own heartbeats to its watcher (bounded work per
  loop turn: a flood costs dropped messages, never liveness), serves the
  control socket (requests checked against a schema; a token on tcp), and
  on shutdown stops every actor whose dependents are down, in parallel.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import logging.handlers
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

import structlog
import zmq

from actors.registry import Registry, load_config
from bus import control, direct, shm
from bus import tools as bus_tools
from bus.broker import Broker
from bus.cli import BUS_COMMANDS, CliCommand
from bus.endpoints import EndpointError, RuntimePaths, check_endpoint, ensure_private_dir, ipc_path, runtime_paths
from bus.burstlog import BurstLog
from bus.envelope import EnvelopeError, Limits, decode, decode_header
from bus.messages import ActorEvent, Alert, BodyError, Command, Heartbeat
from bus.pubsub import Publisher
from bus.senders import from_this_host, set_origin_host
from bus.topics import TopicError, ctl_topic
from config import ActorSpec, Config, ConfigError, start_order
from config.backoff import BackoffPolicy
from config.logging import configure_logging
from config.storage import write_atomic

ROOT = Path(__file__).resolve().parent
SUPERVISOR_PID_ENV = "SENSORIUM_SUPERVISOR_PID"
SUPERVISOR_SRC = "supervisor"
HEARTBEAT_BUDGET = 2000
"""Heartbeat messages read per loop turn at most: a flood costs dropped messages, never a stalled loop."""
HEARTBEAT_RCVHWM = 1000
"""Queue of the heartbeat socket, messages: under a flood the excess drops in libzmq, not in Python."""
CONTROL_BUDGET = 32
"""Control requests served per loop turn at most."""
_HEARTBEAT_TOPIC = Heartbeat.TOPIC.encode()

log = structlog.get_logger("supervisor")


# --------------------------------------------------------------------------
# The restart decision
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    action: Literal["restart", "fail", "rest"]
    """restart after delay_s; fail: open the circuit, retry after delay_s; rest: leave it exited."""
    delay_s: float
    reason: str
    counts: bool = True
    """Whether this restart counts toward the intensity limit (a clean exit's does not)."""


@dataclass(frozen=True)
class RestartPolicy:
    restart: Literal["permanent", "transient", "temporary"]
    backoff: BackoffPolicy
    max_restarts: int
    window_s: float
    recovery_s: float

    @classmethod
    def from_spec(cls, spec: ActorSpec) -> "RestartPolicy":
        return cls(spec.restart, BackoffPolicy.from_settings(spec.backoff), spec.intensity.max_restarts,
                   spec.intensity.window_s, spec.intensity.recovery_s)

    def decide(self, *, failed: bool, attempt: int, restart_times: Sequence[float], half_open: bool,
               now: float, rng: random.Random) -> Decision:
        """What to do after an exit the supervisor did not ask for.

        ``attempt``: restarts in the current streak (0 after a healthy run);
        ``restart_times``: monotonic times of earlier restarts (those that counted).

        A clean exit (code 0) of a permanent actor is restarted after the
        backoff of its streak but does not count toward the intensity limit,
        so it never opens the circuit: OTP counts every restart, but there a
        clean exit is the child's own decision; here a clean exit is what any
        bus client gets with ``ctl.NAME stop``, and six of them must not put
        a healthy actor in FAILED for ``recovery_s``. The growing backoff
        still bounds an actor that keeps exiting cleanly.
        """
        if self.restart == "temporary":
            return Decision("rest", 0.0, "temporary actors are never restarted")
        if self.restart == "transient" and not failed:
            return Decision("rest", 0.0, "transient actor exited normally")
        if not failed:
            return Decision("restart", self.backoff.delay_s(attempt + 1, rng),
                            "exited normally: restarted, not counted toward the intensity", counts=False)
        if half_open:
            return Decision("fail", self.recovery_s, "half-open try failed")
        recent = sum(1 for t in restart_times if now - t <= self.window_s)
        if recent >= self.max_restarts:
            return Decision("fail", self.recovery_s,
                            f"{recent} restarts within {self.window_s:g} s (max {self.max_restarts})")
        return Decision("restart", self.backoff.delay_s(attempt + 1, rng), "crashed")


# --------------------------------------------------------------------------
# One OS process
# --------------------------------------------------------------------------

class ActorLog:
    """An actor's rotating log file; lines that are not JSON are wrapped into JSON."""

    def __init__(self, name: str, log_dir: Path, max_bytes: int, backups: int) -> None:
        self.name = name
        self._logger = logging.Logger(f"sensorium.{name}")
        self._logger.propagate = False
        handler = logging.handlers.RotatingFileHandler(log_dir / f"{name}.log", maxBytes=max_bytes,
                                                       backupCount=backups, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(handler)

    def write_line(self, line: str) -> None:
        line = line.rstrip("\n")
        if not line:
            return
        if not line.startswith("{"):
            line = json.dumps({"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "info",
                               "actor": self.name, "event": "output", "line": line})
        self._logger.info(line)

    def close(self) -> None:
        for handler in self._logger.handlers:
            handler.close()


class Process(Protocol):
    """What a Watcher needs of a running actor. Every OS-level action goes
    through it, so a fake process can stand in for a real one in tests."""

    pid: int

    def poll(self) -> int | None:
        """The exit code once the process has ended (minus the signal number if killed), else None."""

    def terminate(self) -> None:
        """SIGTERM to the process itself."""

    def kill_group(self) -> None:
        """SIGKILL to the process and everything in its process group."""


class ActorProcess:
    """A running actor process, in its own process group so that a Ctrl-C in
    the supervisor's terminal reaches only the supervisor, which then stops
    the actors in order."""

    def __init__(self, argv: list[str], env: dict[str, str], actor_log: ActorLog,
                 direct_dir: Path | None = None) -> None:
        self.direct_dir = direct_dir
        """The bus' direct-link folder, where the actor's publishers listened (bus/direct.py)."""
        self.popen = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, process_group=0, text=True, errors="replace")
        self.pid = self.popen.pid
        self._segments_removed = False
        self._reader = threading.Thread(target=self._copy_output, args=(actor_log,), daemon=True,
                                        name=f"log-{self.pid}")
        self._reader.start()

    def _copy_output(self, actor_log: ActorLog) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            actor_log.write_line(line)

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is not None:
            self._reader.join(timeout=1.0)
            if not self._segments_removed:
                self._segments_removed = True
                remove_shared_memory(self.pid, self.direct_dir)
        return code

    def terminate(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill_group(self) -> None:
        # A hung process may ignore SIGTERM; its process group goes too, so
        # nothing it spawned outlives it.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_shared_memory(pid: int, direct_dir: Path | None = None) -> None:
    """An exited actor's shared-memory segments (bus/shm.py) and direct-link endpoints (bus/direct.py) go
    with it: nobody else uses them, and after a SIGKILL nobody else would remove them."""
    try:
        removed = shm.remove_segments_of(pid)
    except OSError as exc:
        log.error("shm_cleanup_failed", pid=pid, error=str(exc))
    else:
        if removed:
            log.info("shm_segments_removed", pid=pid, segments=removed)
    if direct_dir is None:
        return
    try:
        endpoints = direct.remove_endpoints_of(pid, direct_dir)
    except OSError as exc:
        log.error("direct_cleanup_failed", pid=pid, folder=str(direct_dir), error=str(exc))
        return
    if endpoints:
        log.info("direct_endpoints_removed", pid=pid, endpoints=endpoints)


# --------------------------------------------------------------------------
# One watcher per actor
# --------------------------------------------------------------------------

class ActorState(str, enum.Enum):
    WAITING = "waiting"      # for its dependencies
    STARTING = "starting"    # spawned, no ready heartbeat yet
    RUNNING = "running"
    BACKOFF = "backoff"      # exited, restart scheduled
    FAILED = "failed"        # circuit open, half-open try scheduled
    STOPPING = "stopping"
    STOPPED = "stopped"      # stopped on request
    EXITED = "exited"        # ended and not restarted (transient/temporary)


ALIVE = (ActorState.STARTING, ActorState.RUNNING, ActorState.STOPPING)


def exit_description(code: int) -> str:
    """``exit 1``, or ``signal SIGSEGV`` for a process killed by a signal (a negative code)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


class StopPhase(str, enum.Enum):
    """How far a stop has escalated (state STOPPING)."""

    ASKED = "asked"  # ctl stop published; SIGTERM after the actor's shutdown_s
    TERM = "term"    # SIGTERM sent; SIGKILL after term_wait_s
    KILL = "kill"    # SIGKILL sent to the process group


class TransitionError(RuntimeError):
    """A transition asked of a Watcher in a state it does not leave that way: a bug in the caller."""


_NO_PROCESS = (ActorState.WAITING, ActorState.BACKOFF, ActorState.FAILED, ActorState.STOPPED, ActorState.EXITED)


class Watcher:
    """The supervision of one actor: an explicit state machine over ActorState.

    Each transition is a method that logs one ``actor_transition`` line (from,
    to, reason) and emits the actor's ``sys.actor`` events; nothing outside
    the Watcher writes its fields. ``tick`` and ``on_heartbeat`` fire the
    transitions that time and the actor bring about; the Supervisor calls
    the others. What follows an exit is ``RestartPolicy.decide``'s. Time
    comes in as ``now`` (monotonic seconds) and every OS action goes through
    the ``Process`` that ``spawn`` returns, so tests drive a Watcher with a
    fake clock and a fake process.
    """

    def __init__(self, name: str, spec: ActorSpec, spawn: Callable[["Watcher"], Process],
                 emit: Callable[[ActorEvent], None], ask_stop: Callable[[str], None], term_wait_s: float,
                 rng: random.Random, alert: Callable[[Alert], None] | None = None) -> None:
        self.name = name
        self.spec = spec
        self.kind = spec.kind_for(name)
        self.policy = RestartPolicy.from_spec(spec)
        self._spawn = spawn
        self._emit = emit
        self._ask_stop = ask_stop
        self._alert = alert or (lambda _alert: None)
        self._term_wait_s = term_wait_s
        self._rng = rng
        self._state = ActorState.WAITING
        self._proc: Process | None = None
        self._attempt = 0
        self._restarts = 0
        self._restart_times: deque[float] = deque(maxlen=max(self.policy.max_restarts, 1) * 4)
        self._half_open = False
        self._due: float | None = None
        self._started_at = 0.0
        self._ready_at: float | None = None
        self._last_heartbeat = 0.0
        self._kill_reason: str | None = None
        self._last_exit: int | None = None
        self._stop_phase: StopPhase | None = None
        self._stop_at = 0.0
        self._then_start = False
        self._shutting_down = False

    # -- what others may read -------------------------------------------

    @property
    def state(self) -> ActorState:
        return self._state

    @property
    def has_process(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def attempt(self) -> int:
        """Restarts in the current streak (0 after a healthy run)."""
        return self._attempt

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def restart_times(self) -> tuple[float, ...]:
        return tuple(self._restart_times)

    @property
    def half_open(self) -> bool:
        return self._half_open

    @property
    def due(self) -> float | None:
        """When the scheduled start (BACKOFF) or half-open try (FAILED) is due."""
        return self._due

    @property
    def stop_phase(self) -> StopPhase | None:
        return self._stop_phase

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def status(self, now: float) -> dict[str, Any]:
        since = self._ready_at if self._state is ActorState.RUNNING else None
        return {
            "name": self.name, "kind": self.kind, "state": self._state.value,
            "pid": self.pid, "restarts": self._restarts, "attempt": self._attempt,
            "uptime": round(now - since, 1) if since is not None else None,
            "last_exit": self._last_exit,
            "next_start_in": round(max(self._due - now, 0.0), 1) if self._due is not None else None,
        }

    # -- plumbing ---------------------------------------------------------

    def _move(self, to: ActorState, transition: str, reason: str, level: str = "info", **fields: Any) -> None:
        """Enter ``to``: the one place the state changes, logged as one line."""
        old = self._state
        self._state = to
        if to is ActorState.STOPPING and self._stop_phase is not None:
            fields["phase"] = self._stop_phase.value
        getattr(log, level)("actor_transition", name=self.name, transition=transition,
                            **{"from": old.value, "to": to.value}, reason=reason, **fields)

    def _require(self, transition: str, states: Sequence[ActorState], process: bool) -> None:
        if self._state not in states or (self._proc is not None) != process:
            raise TransitionError(
                f"{self.name}: no {transition} from {self._state.value} "
                f"{'with' if self._proc is not None else 'without'} a process; it needs "
                f"{' or '.join(s.value for s in states)} {'with' if process else 'without'} one")

    def _event(self, event: str, **fields: Any) -> None:
        fields.setdefault("pid", self.pid)
        self._emit(ActorEvent(actor=self.name, event=event, kind=self.kind, attempt=self._attempt, **fields))

    def _launch(self, now: float, transition: str, reason: str) -> None:
        """Enter STARTING with a new process; a spawn that fails is a failed start like any other."""
        self._kill_reason = None
        self._ready_at = None
        self._started_at = self._last_heartbeat = now
        self._due = None
        self._move(ActorState.STARTING, transition, reason)
        try:
            self._proc = self._spawn(self)
        except OSError as exc:  # no process at all (EMFILE, ENOMEM...)
            log.error("actor_spawn_failed", name=self.name, error=repr(exc))
            self._kill_reason = f"spawn failed: {exc.strerror or exc}"
            self._ended(-1, None, now)
            return
        self._event("starting", reason="half-open try" if self._half_open else "")

    # -- starting ---------------------------------------------------------

    def disable(self) -> None:
        """``enabled = false``: configured, but started only on request."""
        self._require("disable", (ActorState.WAITING,), process=False)
        self._move(ActorState.STOPPED, "disable", "enabled = false: started only on request")

    def start(self, now: float) -> None:
        """The first start; the Supervisor calls it once the dependencies are up."""
        self._require("start", (ActorState.WAITING,), process=False)
        self._launch(now, "start", "first start")

    def manual_start(self, now: float) -> None:
        """``sensorium start``: a fresh streak and restart history, so a FAILED actor's circuit closes."""
        self._require("manual_start", _NO_PROCESS, process=False)
        self._attempt = 0
        self._half_open = False
        self._restart_times.clear()
        self._launch(now, "manual_start", "start requested")

    def restart_after_backoff(self, now: float) -> None:
        self._require("restart_after_backoff", (ActorState.BACKOFF,), process=False)
        self._half_open = False
        self._launch(now, "restart_after_backoff", f"backoff over (restart {self._attempt} of the streak)")

    def half_open_try(self, now: float) -> None:
        """The one try after the circuit has been open for recovery_s: a failure opens it again at once."""
        self._require("half_open_try", (ActorState.FAILED,), process=False)
        self._half_open = True
        self._launch(now, "half_open_try", f"circuit open for {self.policy.recovery_s:g} s: one half-open try")

    def on_heartbeat(self, hb: Heartbeat, now: float) -> None:
        if self._proc is None or hb.pid != self._proc.pid:
            return  # a late heartbeat of an earlier incarnation
        self._last_heartbeat = now
        if self._kill_reason is not None or self._state is ActorState.STOPPING:
            return  # a process already SIGKILLed (or being stopped) is on its way out, ready or not
        limit = self.spec.max_rss_bytes
        if limit and hb.rss > limit:
            self.kill_over_memory(now, hb.rss)
        elif self._state is ActorState.STARTING and hb.state == "ready":
            self.on_ready(now)

    def on_ready(self, now: float) -> None:
        self._require("on_ready", (ActorState.STARTING,), process=True)
        self._ready_at = now
        self._move(ActorState.RUNNING, "on_ready", f"ready heartbeat {now - self._started_at:.1f} s after spawn")
        self._event("ready")

    # -- the clock --------------------------------------------------------

    def tick(self, now: float) -> None:
        """Fire what time and the process have brought: an exit, a timeout, a due start, a stop escalation."""
        if self._proc is not None:
            code = self._proc.poll()
            if code is not None:
                self.on_exit(code, now)
            elif self._state is ActorState.STOPPING:
                if self._stop_phase is StopPhase.ASKED and now - self._stop_at > self.spec.shutdown_s:
                    self.escalate_term(now)
                elif self._stop_phase is StopPhase.TERM and now - self._stop_at > self._term_wait_s:
                    self.escalate_kill(now)
            elif self._kill_reason is not None:
                pass  # SIGKILLed: the exit shows on a later tick, and counts as a failure then
            elif self._state is ActorState.STARTING and now - self._started_at > self.spec.start_timeout_s:
                self.start_timed_out(now)
            elif self._state is ActorState.RUNNING and now - self._last_heartbeat > self.spec.liveness_timeout_s:
                self.kill_hung(now)
            elif self._state is ActorState.RUNNING and self._healthy_long_enough(now):
                self.reset_after_healthy_run(now)
        elif self._due is not None and now >= self._due and not self._shutting_down:
            if self._state is ActorState.BACKOFF:
                self.restart_after_backoff(now)
            elif self._state is ActorState.FAILED:
                self.half_open_try(now)

    def _healthy_long_enough(self, now: float) -> bool:
        assert self._ready_at is not None
        return bool(self._attempt or self._half_open) and now - self._ready_at >= self.policy.backoff.reset_after_s

    def reset_after_healthy_run(self, now: float) -> None:
        """Healthy for reset_after_s: the streak ends, and a half-open try closes the circuit."""
        self._require("reset_after_healthy_run", (ActorState.RUNNING,), process=True)
        assert self._ready_at is not None
        healthy = f"healthy for {now - self._ready_at:.1f} s"
        if self._half_open:
            self._restart_times.clear()
            reason = f"half-open try {healthy}: circuit closed, backoff reset"
        else:
            reason = f"{healthy}: backoff reset"
        self._attempt = 0
        self._half_open = False
        self._move(ActorState.RUNNING, "reset_after_healthy_run", reason)

    def start_timed_out(self, now: float) -> None:
        self._require("start_timed_out", (ActorState.STARTING,), process=True)
        self._kill("start_timed_out", f"start timeout ({self.spec.start_timeout_s:g} s without a ready heartbeat)")

    def kill_hung(self, now: float) -> None:
        self._require("kill_hung", (ActorState.RUNNING,), process=True)
        self._kill("kill_hung", f"hung (no heartbeat for {now - self._last_heartbeat:.1f} s)")

    def kill_over_memory(self, now: float, rss: int) -> None:
        """A heartbeat reported more resident memory than ``max_rss_bytes``: kill it (then the restart
        policy decides, as after any failure) and raise an alert, since a leak outlives the restart."""
        self._require("kill_over_memory", (ActorState.STARTING, ActorState.RUNNING), process=True)
        limit = self.spec.max_rss_bytes
        reason = f"memory limit (RSS {rss} > {limit} bytes)"
        self._kill("kill_over_memory", reason)
        self._alert(Alert(level="critical", metric="actor.memory_limit", value=float(rss), threshold=float(limit),
                          actor=self.name, message=f"{self.name}: {reason}; killed and restarted"))

    def _kill(self, transition: str, reason: str) -> None:
        """SIGKILL the group; the state changes when the exit is seen, which then counts as a failure."""
        assert self._proc is not None
        self._kill_reason = reason
        self._move(self._state, transition, reason, "warning", pid=self._proc.pid)
        self._proc.kill_group()

    # -- exits ------------------------------------------------------------

    def on_exit(self, code: int, now: float) -> None:
        """The process ended: STOPPED if it was asked to stop, else what the restart policy decides."""
        self._require("on_exit", (ActorState.STARTING, ActorState.RUNNING, ActorState.STOPPING), process=True)
        assert self._proc is not None
        pid = self._proc.pid
        self._proc = None
        self._ended(code, pid, now)

    def _ended(self, code: int, pid: int | None, now: float) -> None:
        self._last_exit = code
        if self._state is ActorState.STOPPING or self._shutting_down:
            # A failure exit before any escalation of ours (a signal we did not send) is a crash during
            # the stop, and says so: it must not read like a clean stop.
            crashed = code != 0 and self._stop_phase in (StopPhase.ASKED, None)
            self._stop_phase = None
            why = "shutdown" if self._shutting_down else "stop requested"
            reason = f"crashed while stopping ({exit_description(code)})" if crashed else "requested"
            self._move(ActorState.STOPPED, "stopped", f"{why}; {reason}" if crashed else why,
                       "warning" if crashed else "info", exit=code, pid=pid)
            self._event("stopped", exit=code, reason=reason, pid=pid)
            if self._then_start and not self._shutting_down:
                self._start_again(now)
            return
        failed = code != 0 or self._kill_reason is not None
        reason = self._kill_reason or (f"crashed (exit {code})" if failed else "exited normally")
        self._event("exited", exit=code, reason=reason, pid=pid)
        decision = self.policy.decide(failed=failed, attempt=self._attempt, restart_times=self._restart_times,
                                      half_open=self._half_open, now=now, rng=self._rng)
        level = "warning" if failed else "info"
        if decision.action == "restart":
            self._schedule_restart(code, pid, reason, decision, now, level)
        elif decision.action == "fail":
            self._open_circuit(code, pid, reason, decision, now)
        else:
            self._rest(code, pid, reason, decision, level)

    def _schedule_restart(self, code: int, pid: int | None, reason: str, decision: Decision, now: float,
                          level: str) -> None:
        self._attempt += 1
        self._restarts += 1
        if decision.counts:
            self._restart_times.append(now)
        self._due = now + decision.delay_s
        self._move(ActorState.BACKOFF, "schedule_restart", reason, level, exit=code, pid=pid,
                   delay_s=round(decision.delay_s, 3), attempt=self._attempt)
        self._event("restarting", delay=round(decision.delay_s, 3), exit=code, reason=reason)

    def _open_circuit(self, code: int, pid: int | None, reason: str, decision: Decision, now: float) -> None:
        self._half_open = False
        self._due = now + decision.delay_s
        self._move(ActorState.FAILED, "open_circuit", decision.reason, "error", exit=code, pid=pid,
                   exit_reason=reason, retry_in_s=decision.delay_s)
        self._event("failed", delay=decision.delay_s, exit=code, reason=decision.reason)

    def _rest(self, code: int, pid: int | None, reason: str, decision: Decision, level: str) -> None:
        self._due = None
        self._move(ActorState.EXITED, "rest", decision.reason, level, exit=code, pid=pid, exit_reason=reason)
        self._event("stopped", exit=code, reason=decision.reason)

    # -- stopping ---------------------------------------------------------

    def request_stop(self, now: float, *, then_start: bool = False) -> None:
        """Stop on request: ask the actor (``ctl stop``), SIGTERM after its shutdown_s, SIGKILL to its
        group term_wait_s later. Without a process it is STOPPED at once (a scheduled start is dropped)."""
        self._due = None
        self._then_start = then_start
        why = "shutdown" if self._shutting_down else "restart requested" if then_start else "stop requested"
        if self._proc is None:
            self._half_open = False
            self._move(ActorState.STOPPED, "request_stop", why)
            if then_start:
                self._start_again(now)
            return
        if self._state is not ActorState.STOPPING:
            self._stop_phase, self._stop_at = StopPhase.ASKED, now
            self._move(ActorState.STOPPING, "request_stop", why, grace_s=self.spec.shutdown_s)
            self._ask_stop(self.name)

    def manual_restart(self, now: float) -> None:
        """``sensorium restart``: stop as request_stop does, then a fresh start with a clean restart history."""
        self._restart_times.clear()
        self.request_stop(now, then_start=True)

    def _start_again(self, now: float) -> None:
        self._then_start = False
        self._attempt = 0
        self._half_open = False
        self._launch(now, "manual_restart", "restart requested: stopped, starting again")

    def escalate_term(self, now: float) -> None:
        self._require("escalate_term", (ActorState.STOPPING,), process=True)
        if self._stop_phase is not StopPhase.ASKED:
            raise TransitionError(f"{self.name}: no escalate_term in stop phase {self._stop_phase}; it needs asked")
        assert self._proc is not None
        self._stop_phase, self._stop_at = StopPhase.TERM, now
        self._move(ActorState.STOPPING, "escalate_term",
                   f"still running {self.spec.shutdown_s:g} s after the stop request: SIGTERM", "warning")
        self._proc.terminate()

    def escalate_kill(self, now: float) -> None:
        self._require("escalate_kill", (ActorState.STOPPING,), process=True)
        if self._stop_phase is not StopPhase.TERM:
            raise TransitionError(f"{self.name}: no escalate_kill in stop phase {self._stop_phase}; it needs term")
        assert self._proc is not None
        self._stop_phase, self._stop_at = StopPhase.KILL, now
        self._move(ActorState.STOPPING, "escalate_kill",
                   f"still running {self._term_wait_s:g} s after SIGTERM: SIGKILL to its process group", "warning")
        self._proc.kill_group()

    def begin_shutdown(self) -> None:
        """From now on every exit ends STOPPED and nothing starts. Not a state change and it logs
        nothing, so that the signal handler may call it."""
        self._shutting_down = True

    def force_kill(self) -> None:
        """SIGKILL the process group now (second signal, or the supervisor closing). An OS action,
        not a transition: the exit it causes is seen by ``tick`` like any other."""
        if self._proc is not None:
            self._proc.kill_group()


# --------------------------------------------------------------------------
# The arbiter
# --------------------------------------------------------------------------

@dataclass
class _Pending:
    envelope: list[bytes]
    """The ROUTER routing frames up to the empty delimiter: where the reply goes."""
    actor: str
    cmd: str
    deadline: float


class Supervisor:
    def __init__(self, config: Config, paths: RuntimePaths, config_path: Path, *, seed: int | None = None) -> None:
        self.config = config
        self.paths = paths
        self.config_path = config_path
        self.ctx = zmq.Context.instance()
        self.rng = random.Random(seed)
        self.actors = config.actors
        self.order = start_order(config.actors)
        self.watchers: dict[str, Watcher] = {}
        self.logs: dict[str, ActorLog] = {}
        self.pending: list[_Pending] = []
        self._signals = 0
        """SIGINT/SIGTERM acted on: the first shuts down in order, a second kills what is left."""
        self._caught: list[int] = []
        """Signals caught and not yet acted on; only the handler appends (see _on_signal)."""
        self._started = time.monotonic()
        self.broker: Broker | None = None
        self.dependents = {name: [n for n in self.order if name in config.actors[n].after] for name in self.order}
        """Who must be down before each actor stops (the reverse of ``after``)."""
        self.token: str | None = None
        """The control token (tcp control endpoint only)."""
        self.hb_counts = {"accepted": 0, "foreign": 0, "malformed": 0, "budget_hits": 0}
        """Heartbeats read: of supervised actors; from senders that are not (dropped); undecodable; and
        loop turns that ended with heartbeats still queued (a flood)."""
        self.ctl_counts = {"requests": 0, "invalid": 0, "refused": 0, "errors": 0}
        self._burst = BurstLog(log)

    # -- wiring ------------------------------------------------------------

    def _spawn(self, watcher: Watcher) -> ActorProcess:
        argv = [sys.executable, "-m", "actors", watcher.kind, "--name", watcher.name, "-c", str(self.config_path)]
        env = dict(os.environ)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return ActorProcess(argv, env, self.logs[watcher.name], self.paths.endpoints.direct_dir)

    def _emit(self, event: ActorEvent) -> None:
        # "actor" in a log line is the one writing it (the supervisor): the subject goes under "name".
        fields = {("name" if k == "actor" else k): v for k, v in event.to_body().items()
                  if k != "event" and v not in (None, "")}
        log.info(f"actor_{event.event}", **fields)
        self.pub.publish(ActorEvent.TOPIC, event.to_body())

    def _ask_stop(self, name: str) -> None:
        self.pub.publish(ctl_topic(name), Command(cmd="stop").to_body())

    def _alert(self, alert: Alert) -> None:
        log.error("actor_alert", metric=alert.metric, name=alert.actor, value=alert.value,
                  threshold=alert.threshold, message=alert.message)
        self.pub.publish(Alert.TOPIC, alert.to_body())

    # -- main loop --------------------------------------------------------

    def run(self) -> int:
        """Host the broker and supervise until SIGINT/SIGTERM; returns the exit code."""
        bus = self.config.bus
        # Segments of processes that no longer exist (a session that was
        # SIGKILLed with its actors) would hold /dev/shm memory forever.
        stale = shm.sweep_dead()
        if stale:
            log.warning("shm_stale_segments_removed", segments=stale)
        direct_dir = self.paths.endpoints.direct_dir
        try:
            stale = direct.sweep_dead(direct_dir) if direct_dir is not None else []
        except OSError as exc:
            log.error("direct_cleanup_failed", folder=str(direct_dir), error=str(exc))
            stale = []
        if stale:
            log.warning("direct_stale_endpoints_removed", endpoints=stale)
        self.broker = Broker(self.paths.endpoints.frontend, self.paths.endpoints.backend, hwm=bus.hwm,
                             max_message_bytes=bus.max_message_bytes, ctx=self.ctx).start()
        self.pub = Publisher(self.ctx, self.paths.endpoints.frontend, SUPERVISOR_SRC, hwm=bus.hwm, linger_ms=500,
                             direct_dir=direct_dir)
        self.limits = Limits(max_message_bytes=bus.max_message_bytes)
        # A raw SUB: the reader filters by sender on the header alone (see _read_heartbeats).
        self.heartbeats = self.ctx.socket(zmq.SUB)
        self.heartbeats.setsockopt(zmq.RCVHWM, HEARTBEAT_RCVHWM)
        self.heartbeats.setsockopt(zmq.LINGER, 0)
        self.heartbeats.setsockopt(zmq.MAXMSGSIZE, bus.max_message_bytes)
        self.heartbeats.setsockopt(zmq.SUBSCRIBE, _HEARTBEAT_TOPIC)
        self.heartbeats.connect(self.paths.endpoints.backend)
        self.ctl = self.ctx.socket(zmq.ROUTER)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.setsockopt(zmq.MAXMSGSIZE, control.MAX_REQUEST_BYTES)
        if control.needs_token(self.paths.endpoints.control):
            self.token = control.write_token(self.paths.runtime_dir)
        self.ctl.bind(self.paths.endpoints.control)
        for name in self.order:
            self.logs[name] = ActorLog(name, self.paths.log_dir, self.config.log.max_bytes, self.config.log.backups)
            self.watchers[name] = Watcher(name, self.actors[name], self._spawn, self._emit, self._ask_stop,
                                          self.config.supervisor.term_wait_s, self.rng, self._alert)
            if not self.actors[name].enabled:
                self.watchers[name].disable()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        # Subscriptions need a moment to reach the broker; the publisher sees
        # them arrive, so wait for our own heartbeat subscription before the
        # first actor could send one, and for the broker's latched-topic cache
        # before the first sys.actor event.
        self.pub.wait_for_subscriber(Heartbeat.TOPIC, 2.0)
        self.pub.wait_for_subscriber(ActorEvent.TOPIC, 2.0)
        log.info("supervisor_started", pid=os.getpid(), actors=self.order, runtime_dir=str(self.paths.runtime_dir),
                 log_dir=str(self.paths.log_dir))
        poller = zmq.Poller()
        poller.register(self.heartbeats, zmq.POLLIN)
        poller.register(self.ctl, zmq.POLLIN)
        tick_ms = int(self.config.supervisor.tick_s * 1000)
        next_heartbeat = 0.0
        try:
            while True:
                events = dict(poller.poll(tick_ms))
                now = time.monotonic()
                if self.heartbeats in events:
                    self._read_heartbeats(now)
                if self.ctl in events:
                    self._serve_control(now)
                self.pub.drain_subscriptions()  # not polled: the publisher's flusher thread may send on it
                self._act_on_signals()
                if self._signals:
                    if self._shutdown_step(now):
                        break
                elif not self._caught:  # a signal that came during this tick: no start before it is acted on
                    self._start_ready_actors(now)
                for watcher in self.watchers.values():
                    watcher.tick(now)
                self._answer_pending(now)
                if now >= next_heartbeat:
                    self._publish_heartbeat(now)
                    next_heartbeat = now + 1.0
        finally:
            self._close()
        log.info("supervisor_stopped")
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Python runs this between two bytecodes of the main thread, which may be inside a log write
        # (structlog prints under a lock: logging here would wait for it forever) or halfway through a
        # watcher's tick. So it only records; the loop acts within a tick.
        self._caught.append(signum)

    def _act_on_signals(self) -> None:
        while self._caught:
            signum = self._caught.pop(0)
            self._signals += 1
            if self._signals == 1:
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                for watcher in self.watchers.values():
                    watcher.begin_shutdown()
            else:
                log.warning("shutdown_forced", signal=signal.Signals(signum).name)
                for watcher in self.watchers.values():
                    watcher.force_kill()

    def _start_ready_actors(self, now: float) -> None:
        for name in self.order:
            watcher = self.watchers[name]
            if watcher.state is not ActorState.WAITING:
                continue
            deps = [self.watchers[d] for d in watcher.spec.after if d in self.watchers]
            if all(d.state not in (ActorState.WAITING, ActorState.STARTING, ActorState.BACKOFF) for d in deps):
                watcher.start(now)

    def _shutdown_step(self, now: float) -> bool:
        """Stop every actor whose dependents are down, all of them at once (reverse dependency levels,
        in parallel); True when all are down."""
        all_down = True
        for name in self.order:
            watcher = self.watchers[name]
            if not watcher.has_process:
                if watcher.state not in (ActorState.STOPPED, ActorState.EXITED):
                    watcher.request_stop(now)  # drops a scheduled restart or half-open try
                continue
            all_down = False
            if watcher.state is ActorState.STOPPING:
                continue
            if not any(self.watchers[d].has_process for d in self.dependents[name]):
                watcher.request_stop(now)
        return all_down

    def _read_heartbeats(self, now: float) -> None:
        """At most HEARTBEAT_BUDGET heartbeats per turn. Liveness is judged on each actor's own
        heartbeats: the sender is read from the header alone, and a heartbeat from anyone but a
        supervised actor is dropped there (counted) without decoding its body."""
        recv = self.heartbeats.recv_multipart
        counts = self.hb_counts
        for _ in range(HEARTBEAT_BUDGET):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 3 or frames[0] != _HEARTBEAT_TOPIC:
                counts["malformed"] += 1  # an array frame, or a topic that only starts with sys.heartbeat
                continue
            try:
                header = decode_header(frames[1], Heartbeat.TOPIC, self.limits)
            except EnvelopeError as exc:
                counts["malformed"] += 1
                self._burst.error("hb", "bad_heartbeat", error=str(exc), malformed=counts["malformed"])
                continue
            src = header.src
            local = from_this_host(header.host)
            # Another host's actor of the same name (imported by a bridge) never feeds a local watcher.
            watcher = self.watchers.get(src) if local else None
            if watcher is None:
                if src != SUPERVISOR_SRC or not local:
                    counts["foreign"] += 1
                continue
            try:
                msg = decode(frames, self.limits)
                heartbeat = Heartbeat.from_body(msg.body)
            except (EnvelopeError, BodyError, ValueError, TypeError) as exc:
                counts["malformed"] += 1
                self._burst.error(f"hb:{src}", "bad_heartbeat", src=src, error=str(exc), malformed=counts["malformed"])
                continue
            counts["accepted"] += 1
            was = watcher.state
            watcher.on_heartbeat(heartbeat, now)
            url = heartbeat.extra.get("url")
            if was is not watcher.state and watcher.state is ActorState.RUNNING and isinstance(url, str):
                log.info("actor_url", name=src, url=url[:200])  # where to open it (the console's page)
        counts["budget_hits"] += 1

    def _publish_heartbeat(self, now: float) -> None:
        stats = self.broker.stats(timeout_ms=200) if self.broker else {}
        import psutil  # noqa: PLC0415 - psutil is cheap, but only the heartbeat needs it

        self.pub.publish(Heartbeat.TOPIC, Heartbeat(
            state="ready", pid=os.getpid(), uptime=round(now - self._started, 3),
            counters={"in": self.hb_counts["accepted"], "out": self.pub.sent,
                      "dropped": self.hb_counts["foreign"] + self.hb_counts["malformed"] + self.ctl_counts["invalid"],
                      "gaps": 0, "errors": self.ctl_counts["errors"]},
            latency_ms={"n": 0}, rss=psutil.Process().memory_info().rss, kind="supervisor",
            extra={"broker": stats, "heartbeats": dict(self.hb_counts), "control": dict(self.ctl_counts)},
            topics=self.pub.topic_counts(), subscriptions=[_HEARTBEAT_TOPIC.decode()]).to_body())

    # -- control socket -------------------------------------------------

    def _serve_control(self, now: float) -> None:
        """At most CONTROL_BUDGET requests per turn; whatever a request holds, it gets an answer and the
        supervisor goes on (a request that is not [routing..., b"", payload] has nowhere to be answered:
        counted and dropped)."""
        for _ in range(CONTROL_BUDGET):
            try:
                frames = self.ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.ctl_counts["requests"] += 1
            try:
                split = frames.index(b"", 1)
            except ValueError:
                self.ctl_counts["invalid"] += 1
                self._burst.error("ctl-frames", "bad_control_frames", frames=len(frames),
                                  invalid=self.ctl_counts["invalid"])
                continue
            envelope, payload = frames[:split + 1], frames[split + 1:]
            try:
                if len(payload) != 1:
                    raise control.ControlError(f"malformed control message: {len(payload)} frames, expected 1")
                reply = self._handle_control(envelope, control.unpack(payload[0]), now)
            except control.ControlError as exc:
                self.ctl_counts["refused" if str(exc).startswith("refused") else "invalid"] += 1
                self._burst.error("ctl-invalid", "control_request_refused", error=str(exc)[:300])
                reply = {"ok": False, "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - a bug in one request must not end the supervision
                self.ctl_counts["errors"] += 1
                log.error("control_request_failed", error=repr(exc), exc_info=exc)
                reply = {"ok": False, "error": f"internal error: {exc!r}"}
            if reply is not None:
                self.ctl.send_multipart([*envelope, control.pack(reply)])

    def _handle_control(self, envelope: list[bytes], request: dict[str, Any], now: float) -> dict[str, Any] | None:
        """Answer a request now (the reply), or later (None: kept in ``pending``); ControlError if invalid."""
        control.check_token(request, self.token)
        req = control.parse_request(request, self.order)
        if req.cmd == "status":
            return {"ok": True, "pid": os.getpid(), "uptime": round(now - self._started, 1),
                    "runtime_dir": str(self.paths.runtime_dir), "log_dir": str(self.paths.log_dir),
                    "broker": self.broker.stats(timeout_ms=200) if self.broker else {},
                    "heartbeats": dict(self.hb_counts), "control": dict(self.ctl_counts),
                    "actors": [self.watchers[n].status(now) for n in self.order]}
        assert req.actor is not None
        watcher = self.watchers[req.actor]
        if self._signals or self._caught:
            return {"ok": False, "error": "the supervisor is shutting down"}
        log.info("control_command", cmd=req.cmd, actor=req.actor)
        if req.cmd == "start":
            if watcher.has_process:
                return {"ok": True, "actor": watcher.status(now), "note": "already running"}
            watcher.manual_start(now)
        elif req.cmd == "stop":
            watcher.request_stop(now)
        else:
            watcher.manual_restart(now)
        spec = watcher.spec
        deadline = now + spec.shutdown_s + self.config.supervisor.term_wait_s + spec.start_timeout_s + 2.0
        if req.wait_s is not None:  # the caller's --timeout: answer before it gives up
            deadline = min(deadline, now + req.wait_s)
        self.pending.append(_Pending(envelope, watcher.name, req.cmd, deadline))
        return None

    def _answer_pending(self, now: float) -> None:
        for p in list(self.pending):
            watcher = self.watchers[p.actor]
            if p.cmd == "stop":
                done = not watcher.has_process
            else:
                done = watcher.state in (ActorState.RUNNING, ActorState.FAILED, ActorState.EXITED,
                                         ActorState.BACKOFF)
            if done or now >= p.deadline:
                # start/restart succeed only when the actor is RUNNING; FAILED, EXITED or BACKOFF is an error.
                status = watcher.status(now)
                reached = done and (p.cmd == "stop" or watcher.state is ActorState.RUNNING)
                reply = {"ok": reached, "actor": status, "running": watcher.state is ActorState.RUNNING}
                if not done:
                    reply["error"] = f"{p.cmd} {p.actor}: still {watcher.state.value} at the deadline"
                elif not reached:
                    why = f"exit code {status['last_exit']}" if status.get("last_exit") is not None else "no exit"
                    retry = (f", next try in {status['next_start_in']:g} s"
                             if status.get("next_start_in") is not None else "")
                    reply["error"] = (f"{p.cmd} {p.actor}: {watcher.state.value} instead of running ({why}{retry}; "
                                      f"see {self.paths.log_dir / (p.actor + '.log')})")
                self.ctl.send_multipart([*p.envelope, control.pack(reply)])
                self.pending.remove(p)

    def _close(self) -> None:
        for watcher in self.watchers.values():
            watcher.force_kill()
        self.ctl.close()
        path = ipc_path(self.paths.endpoints.control)
        if path is not None and path.is_socket():
            path.unlink()
        if self.token is not None:
            control.remove_token(self.paths.runtime_dir)
        self.heartbeats.close()
        self.pub.close()
        if self.broker:
            self.broker.stop()
        for actor_log in self.logs.values():
            actor_log.close()


# --------------------------------------------------------------------------
# Preparing a run
# --------------------------------------------------------------------------

def run(config: Config, *, seed: int | None = None) -> int:
    paths = runtime_paths(config)
    for endpoint in paths.endpoints.all():
        check_endpoint(endpoint, binding=True)
    ensure_private_dir(paths.runtime_dir)
    set_origin_host(config.bus.host)  # the supervisor's headers and, through the environment, its actors'
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    own_log = ActorLog(SUPERVISOR_SRC, paths.log_dir, config.log.max_bytes, config.log.backups)
    configure_logging(SUPERVISOR_SRC, config.log.level, also=own_log.write_line)
    other = control.running_supervisor(paths.endpoints.control, paths.runtime_dir)
    if other is not None:
        print(f"sensorium: a supervisor is already running (pid {other.get('pid')}) on {paths.runtime_dir}; "
              "stop it first or set bus.runtime_dir", file=sys.stderr)
        return 1
    resolved = paths.runtime_dir / "config.json"
    # The whole pipeline, resolved: an actor loading it must not merge the default's actors in again.
    whole = config.model_copy(update={"replace_default_actors": True})
    write_atomic(resolved, whole.model_dump_json(indent=2).encode())
    return Supervisor(config, paths, resolved, seed=seed).run()


# --------------------------------------------------------------------------
# The command line: supervision commands here, the rest assembled
# --------------------------------------------------------------------------

def _format_status(reply: dict[str, Any]) -> str:
    rows = [("NAME", "KIND", "STATE", "PID", "RESTARTS", "UPTIME")]
    for a in reply["actors"]:
        uptime = f"{a['uptime']:.0f}s" if a.get("uptime") is not None else "-"
        state = a["state"] + (f" (next try in {a['next_start_in']:g}s)" if a.get("next_start_in") is not None else "")
        rows.append((a["name"], a["kind"], state, str(a["pid"] or "-"), str(a["restarts"]), uptime))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    head = f"supervisor pid {reply['pid']}, up {reply['uptime']:.0f}s"
    broker = reply.get("broker") or {}
    if broker:
        head += (f"; broker forwarded {broker['backend_frames_out']:,} frames, "
                 f"{broker['backend_bytes_out'] / 1e6:,.1f} MB")
    return head + "\n" + "\n".join(lines)


def _hosts(paths: RuntimePaths, reply: dict[str, Any]) -> dict[str, Any]:
    """Every host the running bridges know (``ctl hosts`` of each): host -> {actors, link}."""
    hosts: dict[str, Any] = {}
    for a in reply["actors"]:
        if a.get("kind") != "bridge" or a.get("state") != "running":
            continue
        try:
            msg = bus_tools.ctl(zmq.Context.instance(), paths.endpoints.frontend, paths.endpoints.backend,
                                a["name"], "hosts", timeout_s=5.0)
        except bus_tools.NoReply as exc:
            hosts.setdefault("?", {"error": str(exc)})
            continue
        for host, entry in (msg.body.get("result") or {}).items():
            if entry.get("link") is not None or host not in hosts:
                hosts[host] = dict(entry, via=a["name"])
    return hosts


def _format_hosts(hosts: dict[str, Any]) -> str:
    rows = [("HOST", "ACTOR", "KIND", "STATE", "PID")]
    links = []
    for host, entry in sorted(hosts.items()):
        for actor, info in sorted((entry.get("actors") or {}).items()):
            rows.append((host, actor, str(info.get("kind", "")), str(info.get("state", "")), str(info.get("pid") or "-")))
        link = entry.get("link")
        if link:
            rtt = f"{link['rtt_ms']:.2f} ms" if link.get("rtt_ms") is not None else "-"
            offset = f"{link['clock_offset_ms']:+.2f} ms" if link.get("clock_offset_ms") is not None else "-"
            links.append(f"link {link['host']} -> {host} ({link['role']}): {link['state']}, rtt {rtt}, "
                         f"clock offset {offset}, in {link['msgs_in']:,} / out {link['msgs_out']:,} messages, "
                         f"drops in {link['drops_in']:,} / out {link['drops_out']:,}, refused "
                         f"{link['refused_handshakes']}")
        if entry.get("error"):
            links.append(f"bridge: {entry['error']}")
    if len(rows) == 1 and not links:
        return "no bridges running: no other hosts"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows] + links)


OWN_COMMANDS = {
    "run": "start the broker and every enabled actor (Ctrl-C stops them all)",
    "status": "list the actors: name, kind, state, pid, restarts, uptime (--hosts: other hosts' too)",
    "start": "start one actor (also one configured with enabled = false)",
    "stop": "stop one actor (it stays stopped until started)",
    "restart": "stop one actor and start it again",
}
"""The supervision commands, answered by a running supervisor's control socket."""


def delegated_commands(registry: Registry) -> list[CliCommand]:
    """Every other command: the bus tools, validate and config, and each kind's own."""
    return [*BUS_COMMANDS,
            CliCommand("validate", "preflight checks before a run (exit 0 or 1)", "actors.preflight:main"),
            CliCommand("config", "configuration tools: config show", "config.cli:main"),
            CliCommand("service", "run on boot under systemd: service install [--user], uninstall, status",
                       "config.service:main"),
            *registry.commands()]


def _split_global(argv: list[str]) -> tuple[str | None, list[str]]:
    """(-c FILE wherever it stands, the rest): a command's own parser never sees sensorium's -c."""
    config: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("-c", "--config") and i + 1 < len(argv):
            config, i = argv[i + 1], i + 2
        elif argv[i].startswith("--config="):
            config, i = argv[i].split("=", 1)[1], i + 1
        else:
            rest.append(argv[i])
            i += 1
    return config, rest


def _load_or_exit(path: str | None) -> tuple[Config, list[CliCommand]]:
    """The config and every command it makes known; exit 2 naming the key when either cannot be had."""
    try:
        config = load_config(path)
        return config, delegated_commands(Registry.for_config(config))
    except ConfigError as exc:
        print(f"sensorium: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _parser(commands: list[CliCommand]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sensorium", description="Sensorium: supervised perception actors on a "
                                     "ZeroMQ bus. 'sensorium COMMAND --help' describes each command.")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="config file (TOML) merged over the embedded default; env SENSORIUM_CONFIG")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in OWN_COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    groups: dict[str, list[str]] = {}
    for command in commands:
        if command.group:
            groups.setdefault(command.group, []).append(command.name)
        else:
            sub.add_parser(command.name, help=command.help, description=command.help)
    for group, names in groups.items():
        text = f"{' / '.join(names)} (sensorium {group} KIND --help)"
        sub.add_parser(group, help=text, description=text)
    return parser


def _own_command(name: str, argv: list[str], config: Config) -> int:
    p = argparse.ArgumentParser(prog=f"sensorium {name}", description=OWN_COMMANDS[name])
    if name == "status":
        p.add_argument("--json", action="store_true", help="print the supervisor's whole status reply as JSON")
        p.add_argument("--hosts", action="store_true",
                       help="also the hosts linked by this host's bridges: their actors and the links")
    if name in ("start", "stop", "restart"):
        p.add_argument("actor", help="the actor's name, as in the config (e.g. detector, probe@echo)")
        p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="seconds to wait for the outcome (default 60)")
    args = p.parse_args(argv)
    if name == "run":
        return run(config)
    paths = runtime_paths(config)
    try:
        token = control.read_token(paths.endpoints.control, paths.runtime_dir)
        if name == "status":
            reply = control.request(paths.endpoints.control, "status", token=token)
            if args.hosts:
                reply["hosts"] = _hosts(paths, reply)
            text = _format_status(reply) + ("\n" + _format_hosts(reply["hosts"]) if args.hosts else "")
            print(json.dumps(reply, indent=2) if args.json else text)
            return 0
        # The supervisor answers at --timeout with the state then; the socket waits a little longer for it.
        reply = control.request(paths.endpoints.control, name, timeout_s=args.timeout + 5.0, token=token,
                                actor=args.actor, wait_s=args.timeout)
    except (control.ControlError, EndpointError) as exc:
        print(f"sensorium: {exc}", file=sys.stderr)
        return 1
    a = reply["actor"]
    print(f"{a['name']}: {a['state']}" + (f" (pid {a['pid']})" if a.get("pid") else ""))
    return 0


def _group_command(group: str, members: dict[str, CliCommand], argv: list[str], config: Config) -> int:
    p = argparse.ArgumentParser(prog=f"sensorium {group}", description=f"sensorium {group} KIND ...")
    p.add_argument("kind", choices=sorted(members), metavar="KIND",
                   help="; ".join(f"{n}: {c.help}" for n, c in sorted(members.items())))
    p.add_argument("rest", nargs=argparse.REMAINDER, help=f"see 'sensorium {group} KIND --help'")
    if not argv or argv[0] in ("-h", "--help"):
        p.parse_args(argv or ["--help"])
    kind = p.parse_args(argv[:1]).kind
    return members[kind].run(argv[1:], config)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    config_path, rest = _split_global(argv)
    config_path = config_path or os.environ.get("SENSORIUM_CONFIG")
    if config_path:  # a command that must name the file itself (service install writes it into a unit) reads this
        os.environ["SENSORIUM_CONFIG"] = str(Path(config_path).resolve())
    name = next((a for a in rest if not a.startswith("-")), None)
    if name is None or rest[0].startswith("-"):  # no command, or --help before it
        _parser(delegated_commands(Registry.for_config())).parse_args(rest)
        return 2
    config, commands = _load_or_exit(config_path)
    if name != "run":  # a tool's stdout is its output (tap's JSON lines): any log line goes to stderr
        configure_logging(f"cli:{name}", config.log.level)
    if name == "run":
        return _own_command(name, rest[1:], config)
    return _as_a_tool(name, lambda: _dispatch(name, rest, config, commands))


def _dispatch(name: str, rest: list[str], config: Config, commands: list[CliCommand]) -> int:
    own_argv = rest[1:]
    if name in OWN_COMMANDS:
        return _own_command(name, own_argv, config)
    groups: dict[str, dict[str, CliCommand]] = {}
    for command in commands:
        if command.group:
            groups.setdefault(command.group, {})[command.name] = command
        elif command.name == name:
            return command.run(own_argv, config)
    if name in groups:
        return _group_command(name, groups[name], own_argv, config)
    _parser(commands).parse_args(rest)  # prints the usage and the valid commands
    return 2


def _as_a_tool(name: str, command: Callable[[], int]) -> int:
    """Run a command other than ``run`` the way a shell tool ends: a topic or prefix that is no topic
    (``tap Sensor.IMU``) is one line and exit 1, not a traceback; a reader that closed the pipe
    (``status | head -3``) ends the command quietly."""
    try:
        code = command()
        sys.stdout.flush()  # here, not at exit: a closed pipe then ends up below
        return code
    except TopicError as exc:
        print(f"sensorium {name}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # What is left in stdout's buffer would raise again when Python flushes it at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
