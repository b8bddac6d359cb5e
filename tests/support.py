"""Helpers for tests that run real supervisors, actors and sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import zmq

from bus.envelope import Header, Message, decode, encode
from bus.pubsub import Publisher, Subscriber

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 60.0
"""Generous: tests must pass on a loaded 2-core machine."""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORIUM")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def received(topic: str, seq: int, body: dict[str, Any], src: str = "cam", corr: str | None = None) -> Message:
    """A message as a Subscriber with ``keep_frames`` delivers it: decoded, with its wire frames."""
    frames = [bytes(f) for f in encode(topic, Header(src, seq, time.time_ns(), corr=corr), body)]
    msg = decode(frames)
    msg.frames = frames
    return msg

def write_config(folder: Path, actors_toml: str, extra_toml: str = "") -> Path:
    """A config whose sockets and logs live in ``folder`` (short: ipc paths < 100 bytes), running exactly the
    actors of ``actors_toml`` (``replace_default_actors``: never the default pipeline's Whisper and TensorFlow)."""
    path = folder / "sensorium.toml"
    path.write_text(f'replace_default_actors = true\n[bus]\nruntime_dir = "{folder}"\n\n{extra_toml}\n{actors_toml}\n')
    return path


def raw_sub(ctx: zmq.Context, backend: str, prefix: bytes) -> zmq.Socket:
    """A bare pyzmq SUB on the broker's backend: an outside client that knows only the documented frames."""
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(backend)
    s.setsockopt(zmq.SUBSCRIBE, prefix)
    return s


def camera_pair(broker: Any, **sub_kw: Any) -> tuple[Publisher, Subscriber]:
    """A publisher of ``camera.frame`` with a 4-slot ring and a subscriber of it (``sub_kw``: its form) on a running
    broker, each known to the other."""
    pub = Publisher(broker.ctx, broker.frontend, "cam", shm_slots=4)
    sub = Subscriber(broker.ctx, broker.backend, ["camera.frame"], **sub_kw)
    assert sub.wait_subscribed(broker.frontend, 20)
    assert pub.wait_for_subscriber("camera.frame", 20)
    return pub, sub


def wait_until(predicate: Callable[[], Any], timeout_s: float = WAIT_S, what: str = "condition") -> Any:
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


class Collector:
    """Collects bus messages on a background thread; tests wait on them, never sleep."""

    def __init__(self, frontend: str, backend: str, prefixes: list[str]) -> None:
        self.ctx = zmq.Context.instance()
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._sub = Subscriber(self.ctx, backend, prefixes=prefixes)
        if not self._sub.wait_subscribed(frontend, WAIT_S):
            raise AssertionError("the collector's subscription never reached the broker")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._sub.recv(timeout_ms=100)
            if msg is not None:
                # Arrays are views of zmq frames: copy what tests keep.
                with self._cond:
                    self.messages.append(msg)
                    self._cond.notify_all()
        self._sub.close()

    def wait_for(self, predicate: Callable[[Message], bool], timeout_s: float = WAIT_S, what: str = "message",
                 after: int = 0) -> Message:
        end = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for msg in self.messages[after:]:
                    if predicate(msg):
                        return msg
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; "
                                         f"saw {[(m.topic, m.body) for m in self.messages[-10:]]}")
                self._cond.wait(left)

    def events(self, actor: str | None = None) -> list[dict[str, Any]]:
        """sys.actor events seen happening: not the latched values replayed as the collector arrived."""
        with self._cond:
            return [dict(m.body, ts=m.header.ts) for m in self.messages
                    if m.topic == "sys.actor" and not m.header.latched and (actor is None or m.body["actor"] == actor)]

    def wait_event(self, actor: str, event: str, count: int = 1, timeout_s: float = WAIT_S) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            found = [e for e in self.events(actor) if e["event"] == event]
            return found if len(found) >= count else None

        return wait_until(enough, timeout_s, f"{count} x {event} of {actor}; saw {self.events(actor)}")

    @property
    def stats(self):
        return self._sub.stats

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class SupervisorProcess:
    """``python supervisor.py run -c CONFIG`` as a real child process."""

    def __init__(self, config_path: Path, folder: Path, env: dict[str, str] | None = None,
                 prefix: list[str] | None = None) -> None:
        """``prefix``: a command to run the supervisor under (``ip netns exec NS``: another network namespace)."""
        self.config_path = config_path
        self.folder = folder
        self.control = f"ipc://{folder}/control.sock"
        self.backend = f"ipc://{folder}/sub.sock"
        self.frontend = f"ipc://{folder}/pub.sock"
        self.out = open(folder / "supervisor.out", "w")
        self.prefix = list(prefix or [])
        self.proc = subprocess.Popen([*self.prefix, sys.executable, str(ROOT / "supervisor.py"), "run", "-c",
                                      str(config_path)],
                                     cwd=ROOT, env=clean_env(**(env or {})), stdout=self.out,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.seen: dict[int, psutil.Process] = {}

    def cli(self, *args: str, timeout: float = WAIT_S, check: bool = False) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.prefix, sys.executable, str(ROOT / "supervisor.py"), *args, "-c",
                               str(self.config_path)],
                              cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"sensorium {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def token(self) -> str | None:
        """The control token a client sends (a tcp control endpoint); None on ipc."""
        from bus import control

        return control.read_token(self.control, self.folder)

    def status(self) -> dict[str, Any]:
        from bus import control

        status = control.request(self.control, "status", timeout_s=10, token=self.token())
        self._remember(status)
        return status

    def _remember(self, status: dict[str, Any]) -> None:
        """Keep a handle on every actor seen, so cleanup finds it even after the supervisor is gone."""
        for pid in actor_pids(status).values():
            if pid not in self.seen:
                try:
                    self.seen[pid] = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    pass

    def actor(self, name: str) -> dict[str, Any]:
        return next(a for a in self.status()["actors"] if a["name"] == name)

    def wait_running(self, *names: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        from bus import control

        def ready() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                status = control.request(self.control, "status", timeout_s=2, token=self.token())
            except control.ControlError:
                return None
            self._remember(status)
            states = {a["name"]: a["state"] for a in status["actors"]}
            return status if all(states.get(n) == "running" for n in names) else None

        return wait_until(ready, timeout_s, f"actors {names} running")

    def output(self) -> str:
        self.out.flush()
        return (self.folder / "supervisor.out").read_text()

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def terminate(self, timeout_s: float = WAIT_S) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def cleanup(self) -> None:
        procs = list(self.seen.values()) + self.descendants()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        self.out.close()


def actor_pids(status: dict[str, Any]) -> dict[str, int]:
    return {a["name"]: a["pid"] for a in status["actors"] if a["pid"]}


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
