"""The console's web server: the page and the JSON-over-WebSocket API (aiohttp, in a thread of its own).

See ``actor.py`` for how it reaches the bus and ``protocol.py`` for the
request format; docs/api.md documents every command.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import structlog
from aiohttp import WSMsgType, web

from actors.console import protocol
from actors.console.jobs import JobManager
from actors.console.models import list_models, model_view, open_store
from actors.console.protocol import ApiError, Request
from actors.console.settings import ConsoleSettings
from actors.console.views import jsonable, message_view
from actors.lib.modelstore import StoreError, version_label
from bus import control
from bus.envelope import Message
from bus.messages import Command
from bus.topics import validate_prefix
from config.storage import CorruptFileError, LockTimeout

if TYPE_CHECKING:
    from actors.console.actor import ConsoleActor

log = structlog.get_logger("console")
STATIC = Path(__file__).parent / "static"
MAX_SUBSCRIPTIONS = 64


def load_or_make_token(path: Path) -> tuple[str, bool]:
    """The console token from ``path``; made (0600, never readable by others) at first start: (token, made)."""
    try:
        token = path.read_text().strip()
        if token:
            return token, False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(24)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token, True


class Client:
    """One WebSocket connection: its subscriptions, what it was sent last, its request budget."""

    def __init__(self, ws: web.WebSocketResponse, settings: ConsoleSettings, authed: bool) -> None:
        self.ws = ws
        self.id = uuid.uuid4().hex[:8]
        self.subs: dict[str, float] = {}
        """Subscribed topic or prefix -> most messages per second."""
        self.pending: dict[str, Message] = {}
        """Topic -> the latest message not yet sent (latest value only)."""
        self.last_sent: dict[str, float] = {}
        self.wake = asyncio.Event()
        self.authed = authed
        self.bucket = protocol.TokenBucket(settings.requests_per_s, 2 * settings.requests_per_s)
        self.sent = 0
        self.replaced = 0
        """Messages overwritten by a newer one before they could be sent (the rate limit at work)."""

    def max_hz(self, topic: str) -> float | None:
        best = None
        for prefix, hz in self.subs.items():
            if protocol.wanted_topic(topic, prefix):
                best = hz if best is None else max(best, hz)
        return best


class WebServer:
    def __init__(self, actor: "ConsoleActor", settings: ConsoleSettings, data_dir: Path, runtime_dir: Path) -> None:
        self.actor = actor
        self.settings = settings
        self.data_dir = Path(data_dir)
        self.runtime_dir = runtime_dir
        self.loopback = protocol.is_loopback_host(settings.host)
        self.scheme = "https" if settings.tls_cert else "http"
        token_path = Path(settings.token_path).expanduser() if settings.token_path else self.data_dir / "token"
        self.token_path = token_path
        self.token = ""
        self.clients: set[Client] = set()
        self.ctl_waiting: dict[str, asyncio.Future] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.url = ""
        self.counts = {"connections": 0, "refused_origin": 0, "requests": 0, "errors": 0, "sent": 0, "replaced": 0}
        self._runner: web.AppRunner | None = None
        self._jobs: JobManager | None = None
        self.gestures: Any = None
        self._views: dict[str, tuple[Message, dict[str, Any]]] = {}

    # -- life cycle (called from the actor's thread) ------------------------------

    def start(self) -> str:
        """Bind and serve; returns the URL. Raises ValueError (config) or OSError (bind) when it cannot."""
        s = self.settings
        if not self.loopback and not (s.tls_cert and s.tls_key):
            raise ValueError(f"host {s.host!r} is not loopback: the console serves other machines only over TLS; "
                             "set tls_cert and tls_key (a certificate you configure)")
        ssl_ctx = None
        if s.tls_cert:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(s.tls_cert, s.tls_key or None)
        self.token, made = load_or_make_token(self.token_path)
        if made:
            print(f"console: token (shown once; stored 0600 in {self.token_path}): {self.token}", flush=True)
        started = threading.Event()
        outcome: dict[str, Any] = {}

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            try:
                outcome["url"] = loop.run_until_complete(self._start(ssl_ctx))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, which raises it
                outcome["error"] = exc
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self.thread = threading.Thread(target=serve, name="console-web", daemon=True)
        self.thread.start()
        started.wait(30.0)
        if "error" in outcome:
            raise outcome["error"]
        self.url = outcome["url"]
        return self.url

    def stop(self) -> None:
        if self.loop is not None and self.thread is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10.0)

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "clients": len(self.clients), **self.counts}

    async def _start(self, ssl_ctx: ssl.SSLContext | None) -> str:
        from actors.console.gestures import GestureService  # noqa: PLC0415

        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/static/", STATIC, show_index=False)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port, ssl_context=ssl_ctx)
        await site.start()
        port = self._runner.addresses[0][1] if self._runner.addresses else self.settings.port
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        self.actor.set_forwarder(self._from_bus)
        self._jobs = JobManager(self.data_dir / "jobs", self._job_changed, self.runtime_dir / "config.json")
        self.gestures = GestureService(self.settings, self.data_dir, self.actor, self._broadcast)
        asyncio.get_running_loop().create_task(self._poll_jobs())
        return f"{self.scheme}://{host}:{port}/"

    async def _shutdown(self) -> None:
        for client in list(self.clients):
            await client.ws.close()
        if self.gestures is not None:
            self.gestures.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- HTTP ------------------------------------------------------------------------

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        host = request.headers.get("Host", "")
        if not protocol.host_allowed(host, self.loopback):
            self.counts["refused_origin"] += 1
            return web.Response(status=403, text=f"refused: Host {host!r} is not this console's loopback address")
        if not protocol.origin_allowed(origin, host, self.scheme, self.settings.allowed_origins):
            self.counts["refused_origin"] += 1
            log.warning("origin_refused", origin=origin, host=host)
            return web.Response(status=403, text=f"refused: Origin {origin!r} may not use this console")
        ws = web.WebSocketResponse(max_msg_size=4 * self.settings.max_request_bytes, heartbeat=30.0)
        await ws.prepare(request)
        client = Client(ws, self.settings, authed=False)
        self.clients.add(client)
        self.counts["connections"] += 1
        pump = asyncio.get_running_loop().create_task(self._pump(client))
        try:
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    await self._handle(client, frame.data)
                elif frame.type == WSMsgType.BINARY:
                    await self._send(client, ApiError("bad_request", "binary frames are not requests; send JSON "
                                                      "text").to_reply())
                elif frame.type == WSMsgType.ERROR:
                    break
        finally:
            pump.cancel()
            self.clients.discard(client)
            for topic in list(client.subs):
                self.actor.submit(functools.partial(self.actor.client_unsubscribe, topic))
        return ws

    # -- requests ----------------------------------------------------------------------

    async def _send(self, client: Client, obj: dict[str, Any]) -> None:
        if client.ws.closed:
            return
        try:
            await client.ws.send_str(json.dumps(obj, separators=(",", ":"), allow_nan=False))
        except (ConnectionError, RuntimeError):
            pass  # the client went away; its handler ends

    async def _handle(self, client: Client, data: str) -> None:
        self.counts["requests"] += 1
        req_id = None
        try:
            allowed = client.bucket.take()
            try:
                req = protocol.parse_request(data, self.settings.max_request_bytes)
            except ApiError:
                try:  # the id, for the error reply (frames are at most 4 x max_request_bytes)
                    req_id = json.loads(data).get("id")
                except (ValueError, AttributeError):
                    pass
                raise
            req_id = req.id
            if not allowed:
                raise ApiError("rate_limited", f"more than {self.settings.requests_per_s:g} requests per second; "
                                               "this one was not run")
            self._authorise(client, req)
            result = await getattr(self, "cmd_" + req.cmd.replace(".", "_"))(client, req.args)
            reply: dict[str, Any] = {"id": req_id, "ok": True, "result": jsonable(result)}
        except ApiError as exc:
            self.counts["errors"] += 1
            reply = exc.to_reply(req_id)
        except (StoreError, CorruptFileError, LockTimeout, ValueError, LookupError, control.ControlError) as exc:
            self.counts["errors"] += 1
            reply = ApiError("refused", str(exc)).to_reply(req_id)
        except Exception as exc:  # noqa: BLE001 - a bug in one command must not end the connection
            self.counts["errors"] += 1
            log.error("command_failed", error=repr(exc), exc_info=exc)
            reply = ApiError("internal", f"internal error: {exc!r}").to_reply(req_id)
        await self._send(client, reply)

    def _authorise(self, client: Client, req: Request) -> None:
        if req.token is not None:
            if not protocol.token_matches(req.token, self.token):
                raise ApiError("unauthorized", "wrong token")
            client.authed = True
        if req.cmd in ("info", "auth"):
            return
        if not self.loopback and not client.authed:
            raise ApiError("unauthorized", "this console is served off loopback: send {\"cmd\": \"auth\", "
                                           "\"token\": ...} first (the token printed at its first start)")
        if protocol.is_destructive(req.cmd, req.args) and not client.authed:
            raise ApiError("unauthorized", f"{req.cmd} changes or stops something: it needs the console token "
                                           f"(printed at first start; stored in {self.token_path})")

    async def _executor(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))

    async def _on_actor(self, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        return await asyncio.wait_for(asyncio.wrap_future(self.actor.submit(fn)), timeout_s)

    # -- commands: the session --------------------------------------------------------------

    async def cmd_info(self, client: Client, _args: dict[str, Any]) -> dict[str, Any]:
        return {"console": self.actor.name, "url": self.url, "loopback": self.loopback, "authed": client.authed,
                "token_required": not self.loopback, "publish_prefixes": self.settings.publish_prefixes,
                "max_rate_hz": self.settings.max_rate_hz, "max_request_bytes": self.settings.max_request_bytes,
                "commands": sorted(protocol.COMMANDS), "destructive": sorted(protocol.DESTRUCTIVE)
                + ["ctl stop", "supervisor stop"]}

    async def cmd_auth(self, client: Client, _args: dict[str, Any]) -> dict[str, Any]:
        if not client.authed:
            raise ApiError("unauthorized", "auth needs \"token\" (the console token)")
        return {"authed": True}

    # -- commands: actors ----------------------------------------------------------------------

    async def cmd_actors(self, _client: Client, _args: dict[str, Any]) -> dict[str, Any]:
        seen = await self._on_actor(self.actor.snapshot)
        try:
            status = await self._executor(self._control, "status")
        except control.ControlError as exc:
            status = {"error": str(exc), "actors": []}
        rows = []
        names = [a["name"] for a in status.get("actors", [])]
        names += [n for n in seen["actors"] if n not in names]
        sup = {a["name"]: a for a in status.get("actors", [])}
        for name in names:
            rows.append({**seen["actors"].get(name, {}), **sup.get(name, {"name": name, "supervised": False})})
        return {"actors": rows, "alerts": seen["alerts"], "system": seen["system"], "events": seen["events"],
                "supervisor": {k: v for k, v in status.items() if k not in ("actors", "ok")}}

    async def cmd_alerts(self, _client: Client, _args: dict[str, Any]) -> list[dict[str, Any]]:
        return (await self._on_actor(self.actor.snapshot))["alerts"]

    def _control(self, cmd: str, **args: Any) -> dict[str, Any]:
        endpoint = self.actor.endpoints.control
        token = control.read_token(endpoint, self.runtime_dir)
        timeout = 5.0 if cmd == "status" else 60.0
        if cmd != "status":
            args["wait_s"] = timeout - 2.0
        return control.request(endpoint, cmd, timeout_s=timeout, token=token, **args)

    async def cmd_supervisor(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        command = args["command"]
        if command not in control.COMMANDS:
            raise ApiError("bad_args", f"supervisor: command must be one of {', '.join(control.COMMANDS)}")
        if command == "status":
            return await self._executor(self._control, "status")
        if "actor" not in args:
            raise ApiError("bad_args", f"supervisor {command}: missing argument 'actor'")
        if args["actor"] == self.actor.name and command in ("stop", "restart"):
            raise ApiError("refused", f"the console cannot {command} itself from its own page; "
                                      f"use `sensorium {command} {self.actor.name}`")
        return await self._executor(self._control, command, actor=args["actor"])

    async def cmd_ctl(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        timeout = float(args.get("timeout_s", 10.0))
        if not 0.1 <= timeout <= 60:
            raise ApiError("bad_args", f"ctl: timeout_s must be 0.1..60, got {timeout:g}")
        corr = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self.ctl_waiting[corr] = fut
        try:
            body = Command(args["command"], dict(args.get("args", {}))).to_body()
            try:
                await self._on_actor(functools.partial(self.actor.ctl_send, args["actor"], body, corr))
            except LookupError as exc:
                raise ApiError("no_actor", str(exc)) from None
            try:
                msg = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise ApiError("timeout", f"{args['actor']} did not answer {args['command']!r} within "
                                          f"{timeout:g} s") from None
        finally:
            self.ctl_waiting.pop(corr, None)
        return dict(msg.body)

    # -- commands: topics ----------------------------------------------------------------------------

    async def cmd_subscribe(self, client: Client, args: dict[str, Any]) -> dict[str, Any]:
        topic = args["topic"]
        try:
            if not topic:
                raise ValueError("empty")
            validate_prefix(topic)
        except ValueError as exc:
            raise ApiError("bad_args", f"subscribe: topic {topic!r:.80} is not a topic or a prefix ending in "
                                       f"'.' ({exc})") from None
        hz = float(args.get("max_hz", self.settings.max_rate_hz))
        if not 0 < hz:
            raise ApiError("bad_args", "subscribe: max_hz must be > 0")
        hz = min(hz, self.settings.max_rate_hz)
        if topic not in client.subs:
            if len(client.subs) >= MAX_SUBSCRIPTIONS:
                raise ApiError("refused", f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
            await self._on_actor(functools.partial(self.actor.client_subscribe, topic))
        client.subs[topic] = hz
        return {"topic": topic, "max_hz": hz}

    async def cmd_unsubscribe(self, client: Client, args: dict[str, Any]) -> dict[str, Any]:
        topic = args["topic"]
        if topic not in client.subs:
            raise ApiError("bad_args", f"unsubscribe: not subscribed to {topic!r:.80}; subscribed: "
                                       f"{', '.join(client.subs) or 'nothing'}")
        del client.subs[topic]
        for t in [t for t in client.pending if client.max_hz(t) is None]:
            client.pending.pop(t, None)
        await self._on_actor(functools.partial(self.actor.client_unsubscribe, topic))
        return {"topic": topic}

    async def cmd_publish(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        topic = args["topic"]
        try:
            validate_prefix(topic)
        except ValueError as exc:
            raise ApiError("bad_args", f"publish: bad topic {topic!r:.80}: {exc}") from None
        if not topic or topic.endswith(".") or not protocol.may_publish(topic, self.settings.publish_prefixes):
            raise ApiError("forbidden_topic", f"publish: {topic!r:.80} is not under the console's publish prefixes "
                                              f"({', '.join(self.settings.publish_prefixes)})")
        seq = await self._on_actor(functools.partial(self.actor.publish_for_client, topic, args["body"]))
        return {"topic": topic, "seq": seq}

    # -- from the bus (called on the actor's thread; runs on the web loop) ---------------------------

    def _from_bus(self, msg: Message) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, msg)

    def _deliver(self, msg: Message) -> None:
        if msg.topic == "ctl.reply" and msg.header.corr in self.ctl_waiting:
            fut = self.ctl_waiting[msg.header.corr]
            if not fut.done():
                fut.set_result(msg)
        for client in self.clients:
            if client.max_hz(msg.topic) is None:
                continue
            if msg.topic in client.pending:
                client.replaced += 1
                self.counts["replaced"] += 1
            client.pending[msg.topic] = msg
            client.wake.set()

    async def _pump(self, client: Client) -> None:
        """Send each client the latest value of its topics, at most max_hz per topic."""
        loop = asyncio.get_running_loop()
        while not client.ws.closed:
            await client.wake.wait()
            client.wake.clear()
            now = time.monotonic()
            later = None
            for topic in list(client.pending):
                hz = client.max_hz(topic) or self.settings.max_rate_hz
                at = protocol.next_send_at(client.last_sent.get(topic), hz, now)
                if at > now:
                    later = at if later is None else min(later, at)
                    continue
                msg = client.pending.pop(topic)
                view = await self._view(msg)
                client.last_sent[topic] = now
                await self._send(client, view)
                client.sent += 1
                self.counts["sent"] += 1
            if later is not None:
                loop.call_later(later - now, client.wake.set)

    async def _view(self, msg: Message) -> dict[str, Any]:
        """The JSON view of ``msg``, made once for every client (the latest per topic is kept)."""
        cached = self._views.get(msg.topic)
        if cached is not None and cached[0] is msg:
            return cached[1]
        if msg.topic == "camera.frame":  # JPEG encoding off the loop (cv2 releases the GIL)
            view = await self._executor(message_view, msg, self.settings.jpeg_quality)
        else:
            view = message_view(msg)
        self._views[msg.topic] = (msg, view)
        return view

    def _broadcast(self, event: dict[str, Any]) -> None:
        """Send an event to every client (jobs, recording sessions, practice); any thread."""
        loop = self.loop
        if loop is None:
            return

        def send() -> None:
            for client in list(self.clients):
                loop.create_task(self._send(client, jsonable(event)))

        loop.call_soon_threadsafe(send)

    # -- commands: models ------------------------------------------------------------------------

    async def cmd_models_list(self, _client: Client, _args: dict[str, Any]) -> dict[str, Any]:
        return await self._executor(lambda: list_models(open_store(self.settings)))

    async def cmd_models_history(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            store = open_store(self.settings)
            return model_view(store, args["signal"], store.read())
        return await self._executor(run)

    async def cmd_models_promote(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        try:
            version = version_label(args["version"])
        except (StoreError, ValueError) as exc:
            raise ApiError("bad_args", f"models.promote: version {args['version']!r:.40}: {exc}") from None
        reg = await self._executor(lambda: open_store(self.settings).promote(args["signal"], version))
        return {"model": reg.name, "version": reg.version, "changed": reg.promoted, "reason": reg.reason}

    async def cmd_models_rollback(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        reg = await self._executor(lambda: open_store(self.settings).rollback(args["signal"]))
        return {"model": reg.name, "version": reg.version, "changed": reg.promoted, "reason": reg.reason}

    async def cmd_models_cleanup(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        keep = args.get("keep", 3)
        if keep < 1:
            raise ApiError("bad_args", f"models.cleanup: keep must be >= 1, got {keep}")
        removed = await self._executor(lambda: open_store(self.settings).cleanup(keep))
        return {"removed": removed}

    # -- commands: jobs ------------------------------------------------------------------------------

    async def cmd_models_train(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        epochs = args.get("epochs")
        if epochs is not None and not 1 <= epochs <= 1000:
            raise ApiError("bad_args", f"models.train: epochs must be 1..1000, got {epochs}")
        assert self._jobs is not None
        return self._jobs.start_train(args["signal"], args["data"], epochs, bool(args.get("extend", False)))

    async def cmd_jobs_list(self, _client: Client, _args: dict[str, Any]) -> list[dict[str, Any]]:
        assert self._jobs is not None
        return self._jobs.list()

    async def cmd_jobs_get(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        assert self._jobs is not None
        return self._jobs.get(args["job"])

    async def cmd_jobs_cancel(self, _client: Client, args: dict[str, Any]) -> dict[str, Any]:
        assert self._jobs is not None
        return self._jobs.cancel(args["job"])

    def _job_changed(self, job: dict[str, Any]) -> None:
        self._broadcast({"type": "job", "job": job})

    async def _poll_jobs(self) -> None:
        while True:
            assert self._jobs is not None
            try:
                self._jobs.poll()
            except Exception as exc:  # noqa: BLE001 - following jobs must go on
                log.error("jobs_poll_failed", error=repr(exc), exc_info=exc)
            await asyncio.sleep(0.5)

    # -- commands: gestures (actors/console/gestures.py) ----------------------------------------------

    async def cmd_gestures_list(self, _client: Client, _args: dict[str, Any]) -> Any:
        return await self._executor(self.gestures.list)

    async def cmd_gestures_delete(self, _client: Client, args: dict[str, Any]) -> Any:
        return await self._executor(self.gestures.delete, args["name"])

    async def cmd_gestures_export(self, _client: Client, args: dict[str, Any]) -> Any:
        names = args.get("names")
        if names is not None and not all(isinstance(n, str) for n in names):
            raise ApiError("bad_args", "gestures.export: names must be a list of strings")
        return await self._executor(self.gestures.export, names)

    async def cmd_gestures_train(self, _client: Client, _args: dict[str, Any]) -> Any:
        return await self._executor(self.gestures.train)

    async def cmd_record_start(self, _client: Client, args: dict[str, Any]) -> Any:
        return self.gestures.start_recording(args["name"], args.get("target", 5), bool(args.get("fresh", False)),
                                             float(args.get("countdown_s", 3.0)))

    async def cmd_record_status(self, _client: Client, _args: dict[str, Any]) -> Any:
        return self.gestures.recording_status()

    async def cmd_record_cancel(self, _client: Client, _args: dict[str, Any]) -> Any:
        return self.gestures.cancel_recording()

    async def cmd_practice_start(self, _client: Client, args: dict[str, Any]) -> Any:
        return await self.gestures.start_practice(args["gesture"])

    async def cmd_practice_stop(self, _client: Client, _args: dict[str, Any]) -> Any:
        return await self.gestures.stop_practice()

    async def cmd_practice_history(self, _client: Client, args: dict[str, Any]) -> Any:
        return self.gestures.practice_history(args.get("gesture"))


