"""The console actor: the bus on one side, the web server (a thread of its own) on the other.

The actor's loop owns every bus socket, as in every actor. The web server
(aiohttp, ``server.py``) runs its own asyncio loop in a second thread and
reaches the bus only through two doors:

* ``submit(fn)``: run ``fn`` on the actor's thread (subscribe, unsubscribe,
  publish, read the actor table) and get its result as a future; a timer
  drains these every ``REQUEST_TICK_S``;
* messages of topics clients subscribed to go to the web loop with
  ``call_soon_threadsafe``; the web side keeps only the latest value per
  topic and client, so a slow client costs the bus nothing.

The actor keeps the live picture of the pipeline itself (heartbeats, actor
events, monitor health, active alerts), so a page that connects sees it at once.
"""

from __future__ import annotations

import concurrent.futures
import queue
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from actors.base import Actor, ActorExit, handles
from actors.console.settings import ConsoleSettings
from bus.endpoints import ipc_path
from bus.envelope import Message
from bus.topics import ctl_topic
from config.paths import Locations, default_data_dir

REQUEST_TICK_S = 0.02
"""How often requests of the web thread are run on the actor's thread, seconds."""
ALWAYS = ("sys.heartbeat", "sys.actor", "monitor.health", "monitor.alert", "ctl.reply")
"""Topics the console always follows (the actor table, alerts, ctl replies)."""


class ConsoleActor(Actor[ConsoleSettings]):
    kind = "console"

    def setup(self) -> None:
        from actors.console.server import WebServer  # noqa: PLC0415 - aiohttp only where a console runs

        self.heartbeats: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.health: dict[str, Any] = {}
        self.alerts: dict[tuple[str, str], dict[str, Any]] = {}
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=200)
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future]] = queue.SimpleQueue()
        self._client_topics: dict[str, int] = {}
        self._forward_to: Callable[[Message], None] | None = None
        self.every(REQUEST_TICK_S, self._run_requests)
        self.data_dir = Path(self.settings.data_dir).expanduser() if self.settings.data_dir \
            else default_data_dir() / "console"
        self.server = WebServer(self, self.settings, self.data_dir, runtime_dir=self.runtime_dir())
        try:
            url = self.server.start()
        except (OSError, ValueError) as exc:
            raise ActorExit(1, f"console: cannot serve on {self.settings.host}:{self.settings.port}: {exc}") from exc
        self.log.info("console_ready", url=url)
        print(f"console: open {url}", file=sys.stderr, flush=True)

    def teardown(self) -> None:
        self.server.stop()

    def heartbeat_extra(self) -> dict[str, Any]:
        return self.server.stats() if hasattr(self, "server") else {}

    def runtime_dir(self) -> Path:
        """The supervisor's runtime folder: the control socket's (ipc), else the configured default."""
        path = ipc_path(self.endpoints.control)
        return path.parent if path is not None else Locations.of("", "").runtime_dir

    # -- the door from the web thread ---------------------------------------

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``fn`` on the actor's thread; its result (or exception) in the future."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._requests.put((fn, fut))
        return fut

    def _run_requests(self) -> None:
        while True:
            try:
                fn, fut = self._requests.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - the web side turns it into an error reply
                fut.set_exception(exc)

    def set_forwarder(self, forward: Callable[[Message], None]) -> None:
        self._forward_to = forward

    # -- on the actor's thread: subscriptions for clients ------------------------

    def client_subscribe(self, topic: str) -> None:
        n = self._client_topics.get(topic, 0)
        self._client_topics[topic] = n + 1
        if n == 0 and topic not in ALWAYS:
            self.subscribe(topic, self._forward)

    def client_unsubscribe(self, topic: str) -> None:
        n = self._client_topics.get(topic, 0)
        if n <= 1:
            self._client_topics.pop(topic, None)
            if n == 1 and topic not in ALWAYS:
                self.unsubscribe(topic)
        else:
            self._client_topics[topic] = n - 1

    def _wanted_by_clients(self, topic: str) -> bool:
        for t in self._client_topics:
            if topic == t or (t.endswith(".") and topic.startswith(t)):
                return True
        return False

    def _forward(self, msg: Message) -> None:
        if self._forward_to is not None:
            self._forward_to(msg)

    def publish_for_client(self, topic: str, body: dict[str, Any], corr: str | None = None) -> int:
        return self.publish(topic, body, corr=corr)

    def ctl_send(self, actor: str, command: dict[str, Any], corr: str) -> None:
        """Publish a command on ``ctl.<actor>``; ValueError when nobody subscribes to it (no such actor running)."""
        assert self.pub is not None
        topic = ctl_topic(actor)
        self.pub.drain_subscriptions()
        if not self.pub.has_subscriber(topic):
            raise LookupError(f"nobody subscribes to {topic}: is actor {actor!r} running?")
        self.publish(topic, command, corr=corr)

    def snapshot(self) -> dict[str, Any]:
        """Actors as heard on the bus (heartbeats, events, health) and the active alerts."""
        now = time.time()
        actors: dict[str, dict[str, Any]] = {}
        for name, hb in self.heartbeats.items():
            actors[name] = {"name": name, "kind": hb.get("kind", ""), "state": hb.get("state"), "pid": hb.get("pid"),
                            "rss": hb.get("rss"), "uptime": hb.get("uptime"), "counters": hb.get("counters", {}),
                            "topics": hb.get("topics", {}), "heard_s_ago": round(now - hb["_at"], 1),
                            "rates": hb.get("_rates", {})}
        for name, info in (self.health.get("actors") or {}).items():
            a = actors.setdefault(name, {"name": name})
            a["cpu_percent"] = info.get("cpu_percent")
            a.setdefault("rss", info.get("rss"))
        for name, ev in self.events.items():
            actors.setdefault(name, {"name": name})["last_event"] = ev
        return {"actors": actors, "alerts": list(self.alerts.values()),
                "system": self.health.get("system", {}), "events": list(self.recent_events)[-50:]}

    # -- handlers -----------------------------------------------------------------

    @handles("sys.heartbeat")
    def on_sys_heartbeat(self, msg: Message) -> None:
        body = dict(msg.body)
        body["_at"] = time.time()
        prev = self.heartbeats.get(msg.header.src)
        body["_rates"] = topic_rates(prev, body) if prev else {}
        self.heartbeats[msg.header.src] = body
        self._forward_if_wanted(msg)

    @handles("sys.actor")
    def on_sys_actor(self, msg: Message) -> None:
        event = {**msg.body, "ts": msg.header.ts}
        self.events[str(msg.body.get("actor"))] = event
        self.recent_events.append(event)
        self._forward_if_wanted(msg)

    @handles("monitor.health")
    def on_monitor_health(self, msg: Message) -> None:
        self.health = dict(msg.body)
        self._forward_if_wanted(msg)

    @handles("monitor.alert")
    def on_monitor_alert(self, msg: Message) -> None:
        body = dict(msg.body)
        key = (str(body.get("metric")), str(body.get("actor", "")))
        if body.get("state") == "cleared":
            self.alerts.pop(key, None)
        else:
            self.alerts[key] = {**body, "ts": msg.header.ts}
        self._forward_if_wanted(msg)

    @handles("ctl.reply")
    def on_ctl_reply(self, msg: Message) -> None:
        self._forward(msg)  # the web side matches the corr of its pending ctl requests

    def _forward_if_wanted(self, msg: Message) -> None:
        if self._client_topics and self._wanted_by_clients(msg.topic):
            self._forward(msg)


def topic_rates(prev: dict[str, Any], now: dict[str, Any]) -> dict[str, float]:
    """Messages per second per topic between two heartbeats of one actor (its own published counts)."""
    dt = now["_at"] - prev["_at"]
    if dt <= 0 or now.get("pid") != prev.get("pid"):
        return {}
    out = {}
    for topic, counts in (now.get("topics") or {}).items():
        before = (prev.get("topics") or {}).get(topic, {}).get("out", 0)
        out[topic] = round(max(counts.get("out", 0) - before, 0) / dt, 2)
    return out


