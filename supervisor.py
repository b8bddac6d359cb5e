#!/usr/bin/env python3
"""Process supervision for Sensorium, and the ``sensorium`` command.

Modelled on Erlang/OTP and circus, split the same way:

* ``RestartPolicy.decide`` - the one place that decides what happens when an
  actor exits: restart after a backoff delay, open the circuit (FAILED), or
  let it rest. Pure and small, so it is tested on its own.
* ``Watcher`` - one per actor: holds the policy state (attempts, restart
  times, half-open flag), the liveness clock and the stop escalation.
* ``ActorProcess`` - one running OS process and the thread copying its
  output into the actor's rotating log file.
* ``Supervisor`` - the arbiter: hosts the broker, starts actors in dependency
  order, feeds heartbeats to watchers, serves the control socket, and shuts
  everything down in reverse order.
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
from typing import Any, Callable, Literal, Sequence

import structlog
import zmq

from actors.registry import Registry, load_config
from bus import control
from bus.broker import Broker
from bus.cli import BUS_COMMANDS, CliCommand
from bus.endpoints import EndpointError, RuntimePaths, check_endpoint, ensure_private_dir, ipc_path, runtime_paths
from bus.envelope import Limits
from bus.messages import ActorEvent, Command, Heartbeat
from bus.pubsub import Publisher, Subscriber
from bus.topics import ctl_topic
from config import ActorSpec, Config, ConfigError, start_order
from config.backoff import BackoffPolicy
from config.logging import configure_logging
from config.storage import write_atomic

ROOT = Path(__file__).resolve().parent
SUPERVISOR_PID_ENV = "SENSORIUM_SUPERVISOR_PID"
SUPERVISOR_SRC = "supervisor"

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
        ``restart_times``: monotonic times of earlier restarts.
        """
        if self.restart == "temporary":
            return Decision("rest", 0.0, "temporary actors are never restarted")
        if self.restart == "transient" and not failed:
            return Decision("rest", 0.0, "transient actor exited normally")
        if half_open:
            return Decision("fail", self.recovery_s, "half-open try failed")
        recent = sum(1 for t in restart_times if now - t <= self.window_s)
        if recent >= self.max_restarts:
            return Decision("fail", self.recovery_s,
                            f"{recent} restarts within {self.window_s:g} s (max {self.max_restarts})")
        return Decision("restart", self.backoff.delay_s(attempt + 1, rng), "crashed" if failed else "exited")


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


class ActorProcess:
    """A running actor process, in its own process group so that a Ctrl-C in
    the supervisor's terminal reaches only the supervisor, which then stops
    the actors in order."""

    def __init__(self, argv: list[str], env: dict[str, str], actor_log: ActorLog) -> None:
        self.popen = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, process_group=0, text=True, errors="replace")
        self.pid = self.popen.pid
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
        return code

    def send(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


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


class Watcher:
    def __init__(self, name: str, spec: ActorSpec, spawn: Callable[["Watcher"], ActorProcess],
                 emit: Callable[[ActorEvent], None], ask_stop: Callable[[str], None], term_wait_s: float,
                 rng: random.Random) -> None:
        self.name = name
        self.spec = spec
        self.kind = spec.kind_for(name)
        self.policy = RestartPolicy.from_spec(spec)
        self._spawn = spawn
        self._emit = emit
        self._ask_stop = ask_stop
        self._term_wait_s = term_wait_s
        self._rng = rng
        self.state = ActorState.WAITING
        self.proc: ActorProcess | None = None
        self.attempt = 0
        self.restarts = 0
        self.restart_times: deque[float] = deque(maxlen=max(self.policy.max_restarts, 1) * 4)
        self.half_open = False
        self.due: float | None = None
        self.started_at = 0.0
        self.ready_at: float | None = None
        self.last_heartbeat = 0.0
        self.kill_reason: str | None = None
        self.last_exit: int | None = None
        self.last_heartbeat_body: Heartbeat | None = None
        self._stop_phase = ""
        self._stop_at = 0.0
        self._then_start = False
        self.shutting_down = False

    def event(self, event: str, **fields: Any) -> None:
        fields.setdefault("pid", self.proc.pid if self.proc else None)
        self._emit(ActorEvent(actor=self.name, event=event, kind=self.kind, attempt=self.attempt, **fields))

    def start(self, now: float) -> None:
        self.kill_reason = None
        self.ready_at = None
        self.started_at = self.last_heartbeat = now
        self.due = None
        self.state = ActorState.STARTING
        try:
            self.proc = self._spawn(self)
        except OSError as exc:  # no process at all (EMFILE, ENOMEM...): a failed start like any other
            log.error("actor_spawn_failed", name=self.name, error=repr(exc))
            self.kill_reason = f"spawn failed: {exc.strerror or exc}"
            self._on_exit(-1, now)
            return
        self.event("starting", reason="half-open try" if self.half_open else "")

    def on_heartbeat(self, hb: Heartbeat, now: float) -> None:
        if self.proc is None or hb.pid != self.proc.pid:
            return  # a late heartbeat of an earlier incarnation
        self.last_heartbeat = now
        self.last_heartbeat_body = hb
        if self.state is ActorState.STARTING and hb.state == "ready":
            self.state = ActorState.RUNNING
            self.ready_at = now
            self.event("ready")

    def tick(self, now: float) -> None:
        if self.proc is not None:
            code = self.proc.poll()
            if code is not None:
                self._on_exit(code, now)
            elif self.state is ActorState.STARTING and now - self.started_at > self.spec.start_timeout_s:
                self._kill(f"start timeout ({self.spec.start_timeout_s:g} s without a ready heartbeat)")
            elif self.state is ActorState.RUNNING and now - self.last_heartbeat > self.spec.liveness_timeout_s:
                self._kill(f"hung (no heartbeat for {now - self.last_heartbeat:.1f} s)")
            elif self.state is ActorState.RUNNING:
                self._maybe_reset(now)
            elif self.state is ActorState.STOPPING:
                self._escalate(now)
        elif (self.state in (ActorState.BACKOFF, ActorState.FAILED) and self.due is not None and now >= self.due
              and not self.shutting_down):
            self.half_open = self.state is ActorState.FAILED
            self.start(now)

    def _maybe_reset(self, now: float) -> None:
        assert self.ready_at is not None
        if (self.attempt or self.half_open) and now - self.ready_at >= self.policy.backoff.reset_after_s:
            if self.half_open:
                self.restart_times.clear()  # the circuit closes again
            self.attempt = 0
            self.half_open = False
            log.info("actor_healthy", actor=self.name, backoff="reset")

    def _kill(self, reason: str) -> None:
        assert self.proc is not None
        self.kill_reason = reason
        log.warning("actor_killed", actor=self.name, pid=self.proc.pid, reason=reason)
        # A hung process may ignore SIGTERM; its process group goes too, so
        # nothing it spawned outlives it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _on_exit(self, code: int, now: float) -> None:
        pid = self.proc.pid if self.proc else None
        self.proc = None
        self.last_exit = code
        if self.state is ActorState.STOPPING or self.shutting_down:
            self.state = ActorState.STOPPED
            self.event("stopped", exit=code, reason="requested", pid=pid)
            if self._then_start and not self.shutting_down:
                self._then_start = False
                self.attempt = 0
                self.start(now)
            return
        failed = code != 0 or self.kill_reason is not None
        reason = self.kill_reason or (f"crashed (exit {code})" if failed else "exited normally")
        log.warning("actor_exited", actor=self.name, pid=pid, exit=code, reason=reason)
        self.event("exited", exit=code, reason=reason, pid=pid)
        decision = self.policy.decide(failed=failed, attempt=self.attempt, restart_times=self.restart_times,
                                      half_open=self.half_open, now=now, rng=self._rng)
        if decision.action == "restart":
            self.attempt += 1
            self.restarts += 1
            self.restart_times.append(now)
            self.state = ActorState.BACKOFF
            self.due = now + decision.delay_s
            self.event("restarting", delay=round(decision.delay_s, 3), exit=code, reason=reason)
        elif decision.action == "fail":
            self.state = ActorState.FAILED
            self.half_open = False
            self.due = now + decision.delay_s
            log.error("actor_failed", actor=self.name, reason=decision.reason, retry_in_s=decision.delay_s)
            self.event("failed", delay=decision.delay_s, exit=code, reason=decision.reason)
        else:
            self.state = ActorState.EXITED
            self.due = None
            self.event("stopped", exit=code, reason=decision.reason)

    def request_stop(self, now: float, then_start: bool = False) -> None:
        """Ask the actor to stop; SIGTERM after its grace period, SIGKILL after term_wait_s."""
        self.due = None
        self._then_start = then_start
        if self.proc is None:
            self.state = ActorState.STOPPED
            self.half_open = False
            if then_start:
                self._then_start = False
                self.attempt = 0
                self.start(now)
            return
        if self.state is not ActorState.STOPPING:
            self.state = ActorState.STOPPING
            self._stop_phase = "asked"
            self._stop_at = now
            self._ask_stop(self.name)

    def _escalate(self, now: float) -> None:
        assert self.proc is not None
        if self._stop_phase == "asked" and now - self._stop_at > self.spec.shutdown_s:
            log.warning("actor_stop_timeout", actor=self.name, grace_s=self.spec.shutdown_s, action="SIGTERM")
            self.proc.send(signal.SIGTERM)
            self._stop_phase, self._stop_at = "term", now
        elif self._stop_phase == "term" and now - self._stop_at > self._term_wait_s:
            log.warning("actor_stop_timeout", actor=self.name, action="SIGKILL")
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._stop_phase = "kill"

    def force_kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def status(self, now: float) -> dict[str, Any]:
        since = self.ready_at if self.state is ActorState.RUNNING else None
        return {
            "name": self.name, "kind": self.kind, "state": self.state.value,
            "pid": self.proc.pid if self.proc else None, "restarts": self.restarts, "attempt": self.attempt,
            "uptime": round(now - since, 1) if since is not None else None,
            "last_exit": self.last_exit,
            "next_start_in": round(max(self.due - now, 0.0), 1) if self.due is not None else None,
        }


# --------------------------------------------------------------------------
# The arbiter
# --------------------------------------------------------------------------

@dataclass
class _Pending:
    identity: bytes
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
        self._started = time.monotonic()
        self.broker: Broker | None = None

    # -- wiring ------------------------------------------------------------

    def _spawn(self, watcher: Watcher) -> ActorProcess:
        argv = [sys.executable, "-m", "actors", watcher.kind, "--name", watcher.name, "-c", str(self.config_path)]
        env = dict(os.environ)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return ActorProcess(argv, env, self.logs[watcher.name])

    def _emit(self, event: ActorEvent) -> None:
        # "actor" in a log line is the one writing it (the supervisor): the subject goes under "name".
        fields = {("name" if k == "actor" else k): v for k, v in event.to_body().items()
                  if k != "event" and v not in (None, "")}
        log.info(f"actor_{event.event}", **fields)
        self.pub.publish(ActorEvent.TOPIC, event.to_body())

    def _ask_stop(self, name: str) -> None:
        self.pub.publish(ctl_topic(name), Command(cmd="stop").to_body())

    # -- main loop --------------------------------------------------------

    def run(self) -> int:
        """Host the broker and supervise until SIGINT/SIGTERM; returns the exit code."""
        bus = self.config.bus
        self.broker = Broker(self.paths.endpoints.frontend, self.paths.endpoints.backend, hwm=bus.hwm,
                             max_message_bytes=bus.max_message_bytes, ctx=self.ctx).start()
        self.pub = Publisher(self.ctx, self.paths.endpoints.frontend, SUPERVISOR_SRC, hwm=bus.hwm, linger_ms=500)
        self.heartbeats = Subscriber(self.ctx, self.paths.endpoints.backend, [Heartbeat.TOPIC], hwm=bus.hwm,
                                     limits=Limits(max_message_bytes=bus.max_message_bytes))
        self.ctl = self.ctx.socket(zmq.ROUTER)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.bind(self.paths.endpoints.control)
        for name in self.order:
            self.logs[name] = ActorLog(name, self.paths.log_dir, self.config.log.max_bytes, self.config.log.backups)
            self.watchers[name] = Watcher(name, self.actors[name], self._spawn, self._emit, self._ask_stop,
                                          self.config.supervisor.term_wait_s, self.rng)
            if not self.actors[name].enabled:
                self.watchers[name].state = ActorState.STOPPED  # configured, started only on request
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        # Subscriptions need a moment to reach the broker; the publisher sees
        # them arrive, so wait for our own heartbeat subscription before the
        # first actor could send one.
        self.pub.wait_for_subscriber(Heartbeat.TOPIC, 2.0)
        log.info("supervisor_started", pid=os.getpid(), actors=self.order, runtime_dir=str(self.paths.runtime_dir),
                 log_dir=str(self.paths.log_dir))
        poller = zmq.Poller()
        poller.register(self.heartbeats.sock, zmq.POLLIN)
        poller.register(self.ctl, zmq.POLLIN)
        poller.register(self.pub.sock, zmq.POLLIN)
        tick_ms = int(self.config.supervisor.tick_s * 1000)
        next_heartbeat = 0.0
        try:
            while True:
                events = dict(poller.poll(tick_ms))
                now = time.monotonic()
                if self.heartbeats.sock in events:
                    self._read_heartbeats(now)
                if self.ctl in events:
                    self._serve_control(now)
                if self.pub.sock in events:
                    self.pub.drain_subscriptions()
                if self._signals:
                    if self._shutdown_step(now):
                        break
                else:
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
        self._signals += 1
        if self._signals == 1:
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
            for watcher in self.watchers.values():
                watcher.shutting_down = True
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
        """Stop actors one at a time in reverse start order; True when all are down."""
        for name in reversed(self.order):
            watcher = self.watchers[name]
            if watcher.proc is None:
                if watcher.state not in (ActorState.STOPPED, ActorState.EXITED):
                    watcher.state = ActorState.STOPPED
                    watcher.due = None
                continue
            if watcher.state is not ActorState.STOPPING:
                watcher.request_stop(now)
            return False
        return True

    def _read_heartbeats(self, now: float) -> None:
        while True:
            try:
                msg = self.heartbeats.recv_nowait()
            except zmq.Again:
                return
            if msg is None:
                continue
            watcher = self.watchers.get(msg.header.src)
            if watcher is not None:
                try:
                    watcher.on_heartbeat(Heartbeat.from_body(msg.body), now)
                except (ValueError, TypeError) as exc:
                    log.error("bad_heartbeat", src=msg.header.src, seq=msg.header.seq, error=repr(exc))

    def _publish_heartbeat(self, now: float) -> None:
        stats = self.broker.stats(timeout_ms=200) if self.broker else {}
        import psutil  # noqa: PLC0415 - psutil is cheap, but only the heartbeat needs it

        self.pub.publish(Heartbeat.TOPIC, Heartbeat(
            state="ready", pid=os.getpid(), uptime=round(now - self._started, 3),
            counters={"in": self.heartbeats.stats.received, "out": self.pub.sent, "dropped":
                      self.heartbeats.stats.malformed, "gaps": self.heartbeats.stats.gaps, "errors": 0},
            latency_ms={"n": 0}, rss=psutil.Process().memory_info().rss, kind="supervisor",
            extra={"broker": stats}).to_body())

    # -- control socket -------------------------------------------------

    def _serve_control(self, now: float) -> None:
        while True:
            try:
                identity, empty, payload = self.ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                log.error("bad_control_frames")
                continue
            try:
                request = control.unpack(payload)
                reply = self._handle_control(identity, request, now)
            except control.ControlError as exc:
                reply = {"ok": False, "error": str(exc)}
            if reply is not None:
                self.ctl.send_multipart([identity, b"", control.pack(reply)])

    def _handle_control(self, identity: bytes, request: dict[str, Any], now: float) -> dict[str, Any] | None:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "pid": os.getpid(), "uptime": round(now - self._started, 1),
                    "runtime_dir": str(self.paths.runtime_dir), "log_dir": str(self.paths.log_dir),
                    "broker": self.broker.stats(timeout_ms=200) if self.broker else {},
                    "actors": [self.watchers[n].status(now) for n in self.order]}
        if cmd not in ("start", "stop", "restart"):
            return {"ok": False, "error": f"unknown command {cmd!r}; expected status, start, stop or restart"}
        name = request.get("actor")
        watcher = self.watchers.get(name)  # type: ignore[arg-type]
        if watcher is None:
            return {"ok": False, "error": f"no actor named {name!r}; actors: {', '.join(self.order)}"}
        if self._signals:
            return {"ok": False, "error": "the supervisor is shutting down"}
        log.info("control_command", cmd=cmd, actor=name)
        if cmd == "start":
            if watcher.proc is not None:
                return {"ok": True, "actor": watcher.status(now), "note": "already running"}
            watcher.half_open = False
            watcher.attempt = 0
            watcher.restart_times.clear()
            watcher.start(now)
        elif cmd == "stop":
            watcher.request_stop(now)
        else:
            watcher.restart_times.clear()
            watcher.request_stop(now, then_start=True)
        spec = watcher.spec
        deadline = now + spec.shutdown_s + self.config.supervisor.term_wait_s + spec.start_timeout_s + 2.0
        self.pending.append(_Pending(identity, watcher.name, cmd, deadline))
        return None

    def _answer_pending(self, now: float) -> None:
        for p in list(self.pending):
            watcher = self.watchers[p.actor]
            if p.cmd == "stop":
                done = watcher.proc is None
            else:
                done = watcher.state in (ActorState.RUNNING, ActorState.FAILED, ActorState.EXITED,
                                         ActorState.BACKOFF)
            if done or now >= p.deadline:
                reply = {"ok": done, "actor": watcher.status(now)}
                if not done:
                    reply["error"] = f"{p.cmd} {p.actor}: still {watcher.state.value} at the deadline"
                self.ctl.send_multipart([p.identity, b"", control.pack(reply)])
                self.pending.remove(p)

    def _close(self) -> None:
        for watcher in self.watchers.values():
            watcher.force_kill()
        self.ctl.close()
        path = ipc_path(self.paths.endpoints.control)
        if path is not None and path.is_socket():
            path.unlink()
        self.heartbeats.close()
        self.pub.close()
        if self.broker:
            self.broker.stop()
        for actor_log in self.logs.values():
            actor_log.close()


# --------------------------------------------------------------------------
# Preparing a run
# --------------------------------------------------------------------------

def supervisor_running(paths: RuntimePaths) -> dict[str, Any] | None:
    """The status of a supervisor already serving these endpoints, or None."""
    path = ipc_path(paths.endpoints.control)
    if path is not None and not path.exists():
        return None
    try:
        return control.request(paths.endpoints.control, "status", timeout_s=1.0)
    except control.ControlError:
        return None


def run(config: Config, *, seed: int | None = None) -> int:
    paths = runtime_paths(config)
    for endpoint in paths.endpoints.all():
        check_endpoint(endpoint, binding=True)
    ensure_private_dir(paths.runtime_dir)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    own_log = ActorLog(SUPERVISOR_SRC, paths.log_dir, config.log.max_bytes, config.log.backups)
    configure_logging(SUPERVISOR_SRC, config.log.level, also=own_log.write_line)
    other = supervisor_running(paths)
    if other is not None:
        print(f"sensorium: a supervisor is already running (pid {other.get('pid')}) on {paths.runtime_dir}; "
              "stop it first or set bus.runtime_dir", file=sys.stderr)
        return 1
    resolved = paths.runtime_dir / "config.json"
    write_atomic(resolved, config.model_dump_json(indent=2).encode())
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


OWN_COMMANDS = {
    "run": "start the broker and every enabled actor (Ctrl-C stops them all)",
    "status": "list the actors: name, kind, state, pid, restarts, uptime",
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
        sub.add_parser(name, help=help_text)
    groups: dict[str, list[str]] = {}
    for command in commands:
        if command.group:
            groups.setdefault(command.group, []).append(command.name)
        else:
            sub.add_parser(command.name, help=command.help)
    for group, names in groups.items():
        sub.add_parser(group, help=f"{' / '.join(names)} (sensorium {group} KIND --help)")
    return parser


def _own_command(name: str, argv: list[str], config: Config) -> int:
    p = argparse.ArgumentParser(prog=f"sensorium {name}", description=OWN_COMMANDS[name])
    if name == "status":
        p.add_argument("--json", action="store_true", help="print the supervisor's whole status reply as JSON")
    if name in ("start", "stop", "restart"):
        p.add_argument("actor", help="the actor's name, as in the config (e.g. detector, probe@echo)")
        p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="seconds to wait for the outcome (default 60)")
    args = p.parse_args(argv)
    if name == "run":
        return run(config)
    paths = runtime_paths(config)
    try:
        if name == "status":
            reply = control.request(paths.endpoints.control, "status")
            print(json.dumps(reply, indent=2) if args.json else _format_status(reply))
            return 0
        reply = control.request(paths.endpoints.control, name, timeout_s=args.timeout, actor=args.actor)
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
    name = next((a for a in rest if not a.startswith("-")), None)
    if name is None or rest[0].startswith("-"):  # no command, or --help before it
        _parser(delegated_commands(Registry.for_config())).parse_args(rest)
        return 2
    config, commands = _load_or_exit(config_path)
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


if __name__ == "__main__":
    sys.exit(main())
