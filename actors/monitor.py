"""The monitor: turns heartbeats and process readings into ``monitor.health``.

Once a second it publishes, for every actor it has heard from, the counters
and latency percentiles of its last heartbeat plus psutil readings of its
process (CPU, RSS, threads), and readings of the machine. An actor that the
supervisor reports FAILED raises a ``monitor.alert``. (Thresholds with
hysteresis, Prometheus and ``sensorium top`` come with the full monitor.)
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from actors.base import Actor, handles
from bus.envelope import Message
from bus.messages import ActorEvent, Alert, Health, Heartbeat


class MonitorActor(Actor):
    kind = "monitor"

    def setup(self) -> None:
        self.heartbeats: dict[str, tuple[Heartbeat, float]] = {}
        self.states: dict[str, str] = {}
        self.processes: dict[int, psutil.Process] = {}
        self._last_totals: tuple[float, int, int] | None = None
        psutil.cpu_percent(None)  # the first reading only sets the baseline
        self.every(self.settings.interval_s, self.publish_health)

    @handles("sys.heartbeat")
    def on_sys_heartbeat(self, msg: Message) -> None:
        self.heartbeats[msg.header.src] = (Heartbeat.from_body(msg.body), time.monotonic())

    @handles("sys.actor")
    def on_sys_actor(self, msg: Message) -> None:
        event = ActorEvent.from_body(msg.body)
        self.states[event.actor] = event.event
        if event.event == "failed":
            self.publish(Alert(level="critical", metric="actor.failed", value=float(event.attempt), threshold=0.0,
                               actor=event.actor, message=f"{event.actor} failed ({event.reason}); "
                               f"next try in {event.delay:.0f} s"))
        elif event.event == "ready" and self.states.get(f"{event.actor}#alert") == "raised":
            self.publish(Alert(level="critical", metric="actor.failed", value=0.0, threshold=0.0,
                               actor=event.actor, state="cleared", message=f"{event.actor} is running again"))
        if event.event == "failed":
            self.states[f"{event.actor}#alert"] = "raised"
        elif event.event == "ready":
            self.states.pop(f"{event.actor}#alert", None)

    def publish_health(self) -> None:
        now = time.monotonic()
        actors: dict[str, dict[str, Any]] = {}
        totals = {"gaps": 0, "dropped": 0, "errors": 0, "in": 0, "out": 0}
        for name, (hb, seen) in sorted(self.heartbeats.items()):
            entry: dict[str, Any] = {
                "kind": hb.kind, "state": hb.state, "pid": hb.pid, "uptime": hb.uptime,
                "counters": hb.counters, "latency_ms": hb.latency_ms,
                "heartbeat_age_s": round(now - seen, 3),
                "stale": now - seen > self.settings.stale_after_s,
            }
            entry.update(self._process_readings(hb.pid))
            actors[name] = entry
            for key in totals:
                totals[key] += int(hb.counters.get(key, 0))
        self._forget_dead_processes({hb.pid for hb, _ in self.heartbeats.values()})
        self.publish(Health(system=self._system_readings(), actors=actors, bus=self._bus_rates(totals, now)))

    def _process_readings(self, pid: int) -> dict[str, Any]:
        proc = self.processes.get(pid)
        try:
            if proc is None:
                proc = self.processes[pid] = psutil.Process(pid)
                proc.cpu_percent(None)
            with proc.oneshot():
                return {"cpu_percent": proc.cpu_percent(None), "rss": proc.memory_info().rss,
                        "threads": proc.num_threads()}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self.processes.pop(pid, None)
            return {"cpu_percent": None, "rss": None, "threads": None, "process": "gone"}

    def _forget_dead_processes(self, live: set[int]) -> None:
        for pid in list(self.processes):
            if pid not in live:
                del self.processes[pid]

    def _system_readings(self) -> dict[str, Any]:
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(os.getcwd())
        return {"cpu_percent": psutil.cpu_percent(None), "cpu_count": psutil.cpu_count(),
                "memory_percent": mem.percent, "memory_available": mem.available,
                "load1": os.getloadavg()[0], "disk_percent": disk.percent}

    def _bus_rates(self, totals: dict[str, int], now: float) -> dict[str, Any]:
        rates = {"in_per_s": None, "out_per_s": None}
        if self._last_totals is not None:
            t0, in0, out0 = self._last_totals
            dt = max(now - t0, 1e-6)
            rates = {"in_per_s": round(max(totals["in"] - in0, 0) / dt, 1),
                     "out_per_s": round(max(totals["out"] - out0, 0) / dt, 1)}
        self._last_totals = (now, totals["in"], totals["out"])
        return {**totals, **rates}
