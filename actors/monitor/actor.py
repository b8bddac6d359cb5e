"""The monitor: heartbeats and process readings into ``monitor.health``,
alerts with hysteresis, and a Prometheus endpoint.

Every ``interval_s`` it publishes, for every actor it has heard from, the
counters, message rates and latency percentiles of its last heartbeat plus
psutil readings of its process (CPU, RSS, threads, open files); readings of
the machine (CPU, memory, disk, load, GPU memory where there is a GPU); and
bus totals and rates (messages, drops, gaps).

Alerts (``monitor.alert``): each rule has a raise level and a lower clear
level (hysteresis), and must hold for ``alert_hold_s`` before it is raised,
so a value wobbling around a threshold raises one alert, not a storm. A
raised alert is cleared (``state = "cleared"``) once the value is back on
the good side of the clear level, or its actor stops. An actor the
supervisor reports FAILED raises a critical ``actor.failed`` alert at once.
Two live processes of one host publishing under one name (seen by the
monitor's own subscriber on heartbeats, or reported in any actor's heartbeat
``duplicates``: ``bus/senders.py``) raise a ``bus.duplicate_sender`` alert
naming both pids, cleared once only one of them is heard.

Active alerts (``monitor.active_alerts``, latched): the set of every alert raised
and not cleared, the monitor's own and those other actors publish on
``monitor.alert`` (a detector's model check, a recorder's full disk),
published on every change and once at setup (so a restarted monitor replaces
the set its predecessor left in the broker's cache). A newcomer gets it at
once from the broker; ``sensorium top`` and ``/metrics`` show this set.
The monitor itself gets the latched ``sys.actor`` values as it starts, so a
restarted monitor raises ``actor.failed`` for an actor that is still FAILED.

Prometheus: ``prometheus_port`` on 127.0.0.1 (0: an ephemeral port, named in
the heartbeat's ``extra.prometheus_port``; -1: off) serves the figures of the
last ``monitor.health`` under ``sensorium_*``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import psutil

from actors.base import Actor, handles
from actors.monitor.settings import MonitorSettings
from bus.envelope import Message
from bus.messages import ActiveAlerts, ActorEvent, Alert, Health, Heartbeat, LinkState
from bus.senders import from_this_host, pid_of_iid


@dataclass
class Rule:
    """One threshold with hysteresis: raised beyond ``raise_at`` (held ``hold_s``),
    cleared back beyond ``clear_at``. ``above``: high values are bad."""

    metric: str
    level: str
    raise_at: float
    clear_at: float
    above: bool = True

    def bad(self, value: float) -> bool:
        return value > self.raise_at if self.above else value < self.raise_at

    def good(self, value: float) -> bool:
        return value < self.clear_at if self.above else value > self.clear_at


@dataclass
class AlertState:
    rule: Rule
    actor: str
    bad_since: float | None = None
    raised: bool = False
    value: float = 0.0


class AlertBook:
    """Which alerts are raised; turns readings into raise/clear transitions."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.states: dict[tuple[str, str], AlertState] = {}

    def observe(self, rule: Rule, actor: str, value: float | None, now: float) -> Alert | None:
        key = (rule.metric, actor)
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = AlertState(rule, actor)
        st.rule = rule
        if value is None:
            return None
        st.value = value
        if not st.raised:
            if rule.bad(value):
                st.bad_since = now if st.bad_since is None else st.bad_since
                if now - st.bad_since >= self.hold_s:
                    st.raised = True
                    return self._alert(st, "raised")
            else:
                st.bad_since = None
        elif rule.good(value):
            st.raised = False
            st.bad_since = None
            return self._alert(st, "cleared")
        return None

    def forget_actor(self, actor: str) -> list[Alert]:
        """The actor stopped: its raised alerts are cleared."""
        out = []
        for key in [k for k in self.states if k[1] == actor]:
            st = self.states.pop(key)
            if st.raised:
                out.append(self._alert(st, "cleared", note="actor stopped"))
        return out

    def active(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.raised]

    @staticmethod
    def _alert(st: AlertState, state: str, note: str = "") -> Alert:
        r = st.rule
        threshold = r.raise_at if state == "raised" else r.clear_at
        where = f"{st.actor}: " if st.actor else ""
        cmp = (">" if r.above else "<") if state == "raised" else ("<" if r.above else ">")
        message = note or f"{where}{r.metric} = {st.value:g} {cmp} {threshold:g}"
        return Alert(level=r.level, metric=r.metric, value=float(st.value), threshold=float(threshold),
                     actor=st.actor, state=state, message=message)


class DuplicateSenders:
    """Raised ``bus.duplicate_sender`` alerts, one per (host, src) that two live processes publish under."""

    METRIC = "bus.duplicate_sender"

    def __init__(self) -> None:
        self.raised: dict[tuple[str, str], set[str]] = {}

    def update(self, reports: list[dict[str, Any]], pids: dict[tuple[str, str, str], int]) -> list[Alert]:
        """``reports``: duplicates as ``Heartbeat.duplicates`` lists them (host, src, iids), all sources
        together; ``pids``: the pid a heartbeat gave for a sender (host, src, iid), for iids without one."""
        now: dict[tuple[str, str], set[str]] = {}
        for r in reports:
            now.setdefault((r["host"], r["src"]), set()).update(r["iids"])
        alerts = []
        for key, iids in sorted(now.items()):
            if self.raised.get(key) == iids:
                continue
            self.raised[key] = iids
            host, src = key
            named = sorted({self._pid(host, src, i, pids) for i in iids} - {None})
            alerts.append(Alert(
                level="warning", metric=self.METRIC, value=float(len(iids)), threshold=1.0, actor=src,
                message=f"{len(iids)} live processes publish as {src!r} on host {host or '?'}: "
                        f"pids {', '.join(map(str, named)) or 'unknown'} (instances {', '.join(sorted(iids))}); "
                        "give each its own name"))
        for key in [k for k in self.raised if k not in now]:
            self.raised.pop(key)
            alerts.append(Alert(level="warning", metric=self.METRIC, value=1.0, threshold=1.0, actor=key[1],
                                state="cleared", message=f"only one process publishes as {key[1]!r} again"))
        return alerts

    @staticmethod
    def _pid(host: str, src: str, iid: str, pids: dict[tuple[str, str, str], int]) -> int | None:
        return pids.get((host, src, iid), pid_of_iid(iid))


class GpuProbe:
    """GPU memory, read off the actor's loop (a slow probe never delays health).

    ``auto``: nvidia-smi when it is on PATH, else torch.cuda when torch is
    importable and an NVIDIA driver is loaded; nothing otherwise (torch is
    never imported on a machine without a GPU). ``off``: never.
    """

    def __init__(self, mode: str, interval_s: float) -> None:
        self.readings: list[dict[str, Any]] = []
        self.source = ""
        if mode == "off":
            return
        if shutil.which("nvidia-smi"):
            self.source = "nvidia-smi"
        elif os.path.exists("/proc/driver/nvidia/version") or mode == "torch":
            self.source = "torch"
        if self.source:
            threading.Thread(target=self._run, args=(interval_s,), name="gpu-probe", daemon=True).start()

    def _run(self, interval_s: float) -> None:
        while True:
            try:
                self.readings = self._read_smi() if self.source == "nvidia-smi" else self._read_torch()
            except Exception as exc:  # noqa: BLE001 - no GPU figures is not worth a crash
                self.readings = [{"error": repr(exc)[:200]}]
                if self.source == "torch":
                    return
            time.sleep(interval_s)

    @staticmethod
    def _read_smi() -> list[dict[str, Any]]:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.used,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10).stdout
        found = []
        for line in out.strip().splitlines():
            index, name, used, total = (x.strip() for x in line.split(","))
            found.append({"index": int(index), "name": name, "memory_used": int(float(used)) << 20,
                          "memory_total": int(float(total)) << 20})
        return found

    @staticmethod
    def _read_torch() -> list[dict[str, Any]]:
        import torch  # noqa: PLC0415 - only on a machine with an NVIDIA driver, on this thread

        if not torch.cuda.is_available():
            return []
        found = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            found.append({"index": i, "name": torch.cuda.get_device_name(i), "memory_used": total - free,
                          "memory_total": total})
        return found


class MonitorActor(Actor[MonitorSettings]):
    kind = "monitor"

    def setup(self) -> None:
        s = self.settings
        self.heartbeats: dict[str, tuple[Heartbeat, float]] = {}
        self.remote: set[str] = set()
        """Names (``HOST/NAME``) of other hosts' actors heard of through a bridge."""
        self.sender_pids: dict[tuple[str, str, str], int] = {}
        self.duplicates = DuplicateSenders()
        self.states: dict[str, str] = {}
        self.processes: dict[int, psutil.Process] = {}
        self.failed_alerts: set[str] = set()
        self.links: dict[str, dict[str, Any]] = {}
        self.alerts = AlertBook(s.alert_hold_s)
        self.active: dict[tuple[str, str], Alert] = {}
        """Every raised alert not cleared yet, any sender's, by (metric, actor): ``monitor.active_alerts``."""
        self._last_counters: dict[str, tuple[float, int, int]] = {}
        self._last_totals: tuple[float, int, int, int, int] | None = None
        self.last_health: Health | None = None
        self.gpu = GpuProbe(s.gpu, max(s.interval_s, 2.0))
        psutil.cpu_percent(None)  # the first reading only sets the baseline
        self.prometheus_port: int | None = None
        self._prom_server: Any = None  # None: no endpoint (off, or its port was taken)
        if s.prometheus_port >= 0:
            self._start_prometheus(s.prometheus_port)
        self.publish(ActiveAlerts(alerts=[a.to_body() for a in self.active.values()]))
        self.every(s.interval_s, self.publish_health)

    def _start_prometheus(self, port: int) -> None:
        from actors.monitor.prometheus import serve  # noqa: PLC0415 - prometheus_client only when enabled

        try:
            self._prom_server = serve(port, lambda: self.last_health, lambda: list(self.active.values()))
        except OSError as exc:
            # A taken port must not crash-loop the monitor: health and alerts go on without the endpoint.
            self.log.error("prometheus_unavailable", port=port, error=repr(exc))
            self.raise_or_clear(Alert(level="warning", metric="monitor.prometheus", value=float(port),
                                      threshold=0.0, actor=self.name,
                                      message=f"Prometheus endpoint 127.0.0.1:{port}: {exc}"), announce=False)
            return
        self.prometheus_port = self._prom_server.server_address[1]
        self.log.info("prometheus_listening", url=f"http://127.0.0.1:{self.prometheus_port}/metrics")

    def teardown(self) -> None:
        if self._prom_server is not None:
            self._prom_server.shutdown()
            self._prom_server.server_close()

    def heartbeat_extra(self) -> dict[str, Any]:
        return {"prometheus_port": self.prometheus_port, "alerts_active": len(self.active)}

    # -- alerts: the events on monitor.alert, the set on monitor.active_alerts -------

    def raise_or_clear(self, alert: Alert, announce: bool = True) -> None:
        """Publish one of the monitor's own alert changes and note it in the active set
        (``announce``: publish the set now; setup publishes it once itself)."""
        self.publish(alert)
        self._note(alert, announce)

    @handles("monitor.alert")
    def on_monitor_alert(self, msg: Message) -> None:
        if msg.header.src != self.name:  # our own are noted as they are published
            self._note(Alert.from_body(msg.body), announce=True)

    def _note(self, alert: Alert, announce: bool) -> None:
        key = (alert.metric, alert.actor)
        if alert.state == "cleared":
            changed = self.active.pop(key, None) is not None
        else:
            changed = self.active.get(key) != alert
            self.active[key] = alert
        if changed and announce:
            self.publish(ActiveAlerts(alerts=[a.to_body() for a in self.active.values()]))

    @handles("sys.heartbeat")
    def on_sys_heartbeat(self, msg: Message) -> None:
        """An actor's heartbeat; one of another host's (a bridge imported ``sys.``) is that host's actor,
        ``HOST/NAME`` as ``ctl`` names it, never this host's actor of the same name."""
        hb = Heartbeat.from_body(msg.body)
        host = msg.header.host
        if not from_this_host(host):
            name = f"{host}/{msg.header.src}"
            self.remote.add(name)
            self.heartbeats[name] = (hb, time.monotonic())
            return  # its pid is another machine's: no process readings, no duplicate-sender pids
        self.heartbeats[msg.header.src] = (hb, time.monotonic())
        if msg.header.sender not in self.sender_pids:
            if len(self.sender_pids) >= 4096:
                self.sender_pids.clear()
            self.sender_pids[msg.header.sender] = hb.pid

    @handles("sys.link")
    def on_sys_link(self, msg: Message) -> None:
        """A bridge's link to a peer host: kept for health and Prometheus; a link that goes down raises an
        alert, cleared when it is up again."""
        link = LinkState.from_body(msg.body)
        before = self.links.get(link.peer, {}).get("state")
        self.links[link.peer] = link.to_body()
        if link.state != "up" and before == "up":
            self.publish(Alert(level="warning", metric="link.down", value=0.0, threshold=1.0, actor=link.peer,
                               message=f"link from {link.host} to {link.peer} is {link.state}"))
        elif link.state == "up" and before not in (None, "up"):
            self.publish(Alert(level="warning", metric="link.down", value=1.0, threshold=1.0, actor=link.peer,
                               state="cleared", message=f"link from {link.host} to {link.peer} is up again"))

    @handles("sys.actor")
    def on_sys_actor(self, msg: Message) -> None:
        event = ActorEvent.from_body(msg.body)
        host = msg.header.host
        actor = event.actor if from_this_host(host) else f"{host}/{event.actor}"  # another host's: HOST/NAME
        self.states[actor] = event.event
        if event.event == "failed":
            self.failed_alerts.add(actor)
            self.raise_or_clear(Alert(level="critical", metric="actor.failed", value=float(event.attempt),
                                      threshold=0.0, actor=actor, message=f"{actor} failed "
                                      f"({event.reason}); next try in {event.delay:.0f} s"))
        elif event.event == "ready" and actor in self.failed_alerts:
            self.failed_alerts.discard(actor)
            self.raise_or_clear(Alert(level="critical", metric="actor.failed", value=0.0, threshold=0.0,
                                      actor=actor, state="cleared", message=f"{actor} is running again"))
        if event.event == "stopped":
            self.heartbeats.pop(actor, None)
            self.remote.discard(actor)
            self._last_counters.pop(actor, None)
            for alert in self.alerts.forget_actor(actor):
                self.raise_or_clear(alert)

    # -- health ------------------------------------------------------------

    def publish_health(self) -> None:
        now = time.monotonic()
        actors: dict[str, dict[str, Any]] = {}
        totals = {"gaps": 0, "dropped": 0, "errors": 0, "in": 0, "out": 0}
        for name, (hb, seen) in sorted(self.heartbeats.items()):
            age = now - seen
            entry: dict[str, Any] = {
                "kind": hb.kind, "state": hb.state, "pid": hb.pid, "uptime": hb.uptime,
                "counters": hb.counters, "latency_ms": hb.latency_ms,
                "heartbeat_age_s": round(age, 3), "stale": age > self.settings.stale_after_s,
            }
            entry.update(self._rates(name, hb, now))
            entry.update(self._process_readings(hb.pid) if not entry["stale"] and name not in self.remote else
                         {"cpu_percent": None, "rss": hb.rss, "threads": None, "open_files": None})
            if hb.extra:
                entry["extra"] = hb.extra
            actors[name] = entry
            for key in totals:
                totals[key] += int(hb.counters.get(key, 0))
        self._forget_dead_processes({hb.pid for name, (hb, _) in self.heartbeats.items() if name not in self.remote})
        health = Health(system=self._system_readings(), actors=actors, bus=self._bus_rates(totals, now),
                        links=dict(self.links))
        self.last_health = health
        self.publish(health)
        for alert in self._check_thresholds(health, now):
            self.raise_or_clear(alert)
        for alert in self._check_duplicates(now):
            self.raise_or_clear(alert)

    def _check_duplicates(self, now: float) -> list[Alert]:
        assert self.sub is not None
        reports = [d.to_body() for d in self.sub.duplicates()]
        for hb, seen in self.heartbeats.values():
            if now - seen <= self.settings.stale_after_s:
                reports.extend(hb.duplicates)
        return self.duplicates.update(reports, self.sender_pids)

    def _rates(self, name: str, hb: Heartbeat, now: float) -> dict[str, Any]:
        n_in, n_out = int(hb.counters.get("in", 0)), int(hb.counters.get("out", 0))
        last = self._last_counters.get(name)
        self._last_counters[name] = (now, n_in, n_out)
        if last is None or n_in < last[1] or n_out < last[2]:  # first sight, or a restarted actor
            return {"in_per_s": None, "out_per_s": None}
        dt = max(now - last[0], 1e-6)
        return {"in_per_s": round((n_in - last[1]) / dt, 1), "out_per_s": round((n_out - last[2]) / dt, 1)}

    def _process_readings(self, pid: int) -> dict[str, Any]:
        proc = self.processes.get(pid)
        try:
            if proc is None:
                proc = self.processes[pid] = psutil.Process(pid)
                proc.cpu_percent(None)
            with proc.oneshot():
                return {"cpu_percent": proc.cpu_percent(None), "rss": proc.memory_info().rss,
                        "threads": proc.num_threads(), "open_files": proc.num_fds()}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self.processes.pop(pid, None)
            return {"cpu_percent": None, "rss": None, "threads": None, "open_files": None, "process": "gone"}

    def _forget_dead_processes(self, live: set[int]) -> None:
        for pid in list(self.processes):
            if pid not in live:
                del self.processes[pid]

    def _system_readings(self) -> dict[str, Any]:
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(self.settings.disk_path or os.getcwd())
        system = {"cpu_percent": psutil.cpu_percent(None), "cpu_count": psutil.cpu_count(),
                  "memory_percent": mem.percent, "memory_available": mem.available,
                  "load1": os.getloadavg()[0], "disk_percent": disk.percent, "disk_free": disk.free}
        if self.gpu.readings:
            system["gpu"] = self.gpu.readings
        return system

    def _bus_rates(self, totals: dict[str, int], now: float) -> dict[str, Any]:
        rates: dict[str, Any] = {"in_per_s": None, "out_per_s": None, "dropped_per_s": None, "gaps_per_s": None}
        if self._last_totals is not None:
            t0, in0, out0, dr0, gp0 = self._last_totals
            dt = max(now - t0, 1e-6)
            rates = {"in_per_s": round(max(totals["in"] - in0, 0) / dt, 1),
                     "out_per_s": round(max(totals["out"] - out0, 0) / dt, 1),
                     "dropped_per_s": round(max(totals["dropped"] - dr0, 0) / dt, 2),
                     "gaps_per_s": round(max(totals["gaps"] - gp0, 0) / dt, 2)}
        self._last_totals = (now, totals["in"], totals["out"], totals["dropped"], totals["gaps"])
        return {**totals, **rates}

    # -- alerts --------------------------------------------------------------

    def _check_thresholds(self, health: Health, now: float) -> Iterator[Alert]:
        s = self.settings
        observe = self.alerts.observe
        sysr = health.system
        for rule, value in (
            (Rule("system.cpu_percent", "warning", s.cpu_percent_max, s.cpu_percent_clear), sysr["cpu_percent"]),
            (Rule("system.memory_percent", "critical", s.memory_percent_max, s.memory_percent_clear),
             sysr["memory_percent"]),
            (Rule("system.disk_percent", "critical", s.disk_percent_max, s.disk_percent_clear), sysr["disk_percent"]),
            (Rule("bus.gaps_per_s", "warning", s.gaps_per_s_max, s.gaps_per_s_max / 2),
             health.bus.get("gaps_per_s")),
        ):
            if alert := observe(rule, "", value, now):
                yield alert
        for name, a in health.actors.items():
            rules: list[tuple[Rule, Any]] = [
                (Rule("actor.cpu_percent", "warning", s.cpu_percent_max, s.cpu_percent_clear), a["cpu_percent"]),
                (Rule("actor.heartbeat_age_s", "critical", s.stale_after_s, s.stale_after_s / 2),
                 a["heartbeat_age_s"]),
            ]
            if s.rss_bytes_max:
                rules.append((Rule("actor.rss_bytes", "warning", s.rss_bytes_max, s.rss_bytes_max * 0.9), a["rss"]))
            budget = s.latency_budget_ms.get(name, s.latency_budget_ms.get(a["kind"] or "", 0.0))
            if budget:
                rules.append((Rule("actor.latency_p99_ms", "warning", budget, budget * s.clear_fraction),
                              a["latency_ms"].get("p99")))
            target = s.min_out_rate_hz.get(name, s.min_out_rate_hz.get(a["kind"] or "", 0.0))
            if target and not a["stale"]:
                rules.append((Rule("actor.out_rate_hz", "warning", target, target / s.clear_fraction, above=False),
                              a["out_per_s"]))
            for rule, value in rules:
                if alert := observe(rule, name, value, now):
                    yield alert
