"""The foxglove actor: the bus, live, in Foxglove (the Foxglove WebSocket protocol, by foxglove-sdk).

Story: ``setup`` checks where it may listen (loopback, or TLS and a token),
starts the SDK's WebSocket server and subscribes to the configured topics;
``on_bus_message`` keeps the latest message of each topic; ``publish_latest``
(a timer) converts what a viewer watches (``mapping.Converter``) and logs it
on the SDK's channels; ``serve_viewer_requests`` turns service calls and
client publishes, which arrive on the SDK's threads, into bus messages;
``teardown`` stops the server.

A viewer never slows the bus: the actor's handler only stores the message
(a newer one of the same topic replaces it, counted as ``conflated``), a
channel nobody subscribed to costs no conversion (``has_sinks``), the SDK's
server sends on its own threads, and viewers connect through the gate
(``gate.py``), which reads the SDK's server as fast as it sends and keeps,
per viewer, only the newest undelivered message of each channel
(``replaced_for_slow_viewers``). A slow viewer thus sees the latest frames,
never a growing delay, and the bus side never waits for it.

Exposure: the gate listens on 127.0.0.1 unless ``host`` says otherwise; off
loopback it starts only with ``tls_cert``/``tls_key`` and ``token_file``
(wss://, the token checked before the WebSocket opens). The SDK's server
itself always listens on 127.0.0.1, on a free port.
"""

from __future__ import annotations

import hmac
import json
import queue
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from actors.base import Actor, ActorExit
from actors.foxglove.exposure import exposure_problem, read_token
from actors.foxglove.mapping import ChannelDef, Converter, ConverterOptions
from actors.foxglove.settings import FoxgloveSettings, is_destructive
from bus.envelope import Message
from bus.schema import BODIES, topic_of
from bus.messages import Command, CommandReply
from bus.topics import TopicError, ctl_topic, validate_topic
from config.paths import resolve_path

CONFLATE_S = 0.005
"""How often the latest messages go to the viewers, seconds (after each batch the loop drained)."""


@dataclass
class _Publish:
    topic: str
    body: dict[str, Any]
    client: int


@dataclass
class _Call:
    cmd: str
    actor: str
    args: dict[str, Any]
    reply: Future


class FoxgloveActor(Actor[FoxgloveSettings]):
    kind = "foxglove"

    def setup(self) -> None:
        s = self.settings
        problem = exposure_problem(s)
        if problem:
            raise ActorExit(2, problem)
        try:
            import foxglove  # noqa: PLC0415 - the foxglove extra
            from foxglove.websocket import Capability  # noqa: PLC0415
        except ImportError as exc:
            raise ActorExit(2, f"{exc}: install the foxglove extra (pip install -e '.[foxglove]')") from None
        self.fg = foxglove
        self.token = read_token(resolve_path(s.token_file)) if s.token_file else None
        self.converter = Converter(ConverterOptions(compressed_images=s.compressed_images, jpeg_quality=s.jpeg_quality,
                                                    max_array_elements=s.max_array_elements))
        self.context = foxglove.Context()
        self.channels: dict[str, Any] = {}
        self.latest: dict[str, Message] = {}
        self.requests: queue.SimpleQueue[_Publish | _Call] = queue.SimpleQueue()
        self.pending_calls: dict[str, tuple[Future, float]] = {}
        """corr -> (the waiting service call, when to forget it)."""
        self.viewer = ViewerListener(self)
        self.stats = {"logged": 0, "conflated": 0, "unwatched": 0, "bad": 0, "client_published": 0,
                      "client_refused": 0, "service_calls": 0, "service_refused": 0}

        capabilities, services = [], []
        if s.services:
            capabilities.append(Capability.Services)
            services = [self._service(cmd) for cmd in s.services]
        if s.client_publish:
            capabilities.append(Capability.ClientPublish)
        # The SDK's server on loopback, reached only through the gate (token, TLS, newest message per channel).
        self.server = foxglove.start_server(
            name=s.name, host="127.0.0.1", port=0, capabilities=capabilities, server_listener=self.viewer,
            services=services or None, supported_encodings=["json"], context=self.context,
            message_backlog_size=s.backlog)
        self._advertise_known_topics()  # before the gate opens: no viewer is there yet
        from actors.foxglove.gate import Gate  # noqa: PLC0415 - websockets, part of the foxglove extra

        try:
            self.gate = Gate(s.host, s.port, backend_port=self.server.port, token=self.token,
                             tls_cert=resolve_path(s.tls_cert) if s.tls_cert else None,
                             tls_key=resolve_path(s.tls_key) if s.tls_key else None, log=self.log).start()
        except OSError as exc:
            self.server.stop()
            raise ActorExit(2, f"cannot listen on {s.host}:{s.port}: {exc}") from None
        self.port = self.gate.port
        scheme = "wss" if s.tls_cert else "ws"
        self.log.info("foxglove_listening", url=f"{scheme}://{s.host}:{self.port}", sdk_port=self.server.port,
                      token=self.token is not None, tls=bool(s.tls_cert))

        for prefix in s.prefixes:
            self.subscribe(prefix, self.on_bus_message)
        if s.services:
            self.subscribe(CommandReply.TOPIC, self.on_ctl_reply)
        self.every(CONFLATE_S, self.publish_latest)
        self.every(0.02, self.serve_viewer_requests)

    # -- bus -> viewers -------------------------------------------------------

    def on_bus_message(self, msg: Message) -> None:
        if msg.topic in self.latest:
            self.stats["conflated"] += 1
        self.latest[msg.topic] = msg
        if msg.topic == "camera.frame":
            self.converter.observe(msg)  # frames that are never shown still stamp their detections

    def publish_latest(self) -> None:
        latest, self.latest = self.latest, {}
        for topic, msg in latest.items():
            try:
                outputs = self.converter.convert(msg, wanted=self._has_viewers)
            except ValueError as exc:
                self.stats["bad"] += 1
                self.counters.dropped += 1
                self._burst.error(f"fx:{topic}", "message_not_shown", topic=topic, src=msg.header.src,
                                  seq=msg.header.seq, error=str(exc))
                continue
            for out in outputs:
                self.channels[out.channel.topic].log(out.data, log_time=out.log_time_ns)
                self.stats["logged"] += 1

    def _channel(self, ch: ChannelDef) -> Any:
        """The SDK channel of ``ch``, created (and so advertised to viewers) on first use."""
        channel = self.channels.get(ch.topic)
        if channel is None:
            schema = (self.fg.Schema(name=ch.schema_name, encoding=ch.schema_encoding, data=ch.schema_data)
                      if ch.schema_encoding else None)
            channel = self.channels[ch.topic] = self.fg.Channel(
                ch.topic, schema=schema, message_encoding=ch.message_encoding, context=self.context)
        return channel

    def _advertise_known_topics(self) -> None:
        """Channels of every typed topic the prefixes cover, before any viewer connects: a viewer sees them at
        once, and no subscription meets a channel being advertised at that moment (foxglove-sdk 0.30 can
        lose such a subscription; channels of topics known only when they arrive, detect.<signal>, still can)."""
        prefixes = self.settings.prefixes
        for cls in BODIES:
            topic = topic_of(cls)
            if not topic.endswith(".") and any(topic == p or (p.endswith(".") and topic.startswith(p))
                                               for p in prefixes):
                for ch in self.converter.channels(topic):
                    self._channel(ch)

    def _has_viewers(self, ch: ChannelDef) -> bool:
        if self._channel(ch).has_sinks():
            return True
        self.stats["unwatched"] += 1
        return False

    # -- viewers -> bus ---------------------------------------------------------

    def _service(self, cmd: str) -> Any:
        fg = self.fg
        request = fg.Schema(name="sensorium.CtlRequest", encoding="jsonschema", data=json.dumps({
            "type": "object", "required": ["actor"],
            "properties": {"actor": {"type": "string", "description": "the actor instance"},
                           "args": {"type": "object"},
                           "token": {"type": "string", "description": "the access token (destructive commands)"}},
        }).encode())
        response = fg.Schema(name="sensorium.CommandReply", encoding="jsonschema", data=json.dumps({
            "type": "object", "properties": {"actor": {"type": "string"}, "cmd": {"type": "string"},
                                             "ok": {"type": "boolean"}, "result": {}, "error": {"type": "string"}},
        }).encode())
        schema = fg.ServiceSchema(f"sensorium.ctl.{cmd}", request=fg.MessageSchema(encoding="json", schema=request),
                                  response=fg.MessageSchema(encoding="json", schema=response))
        return fg.Service(f"ctl/{cmd}", schema=schema, handler=lambda req, cmd=cmd: self._call(cmd, req))

    def _call(self, cmd: str, req: Any) -> bytes:
        """A service call, on an SDK thread: handed to the actor's loop, answered from ctl.reply."""
        try:
            payload = json.loads(req.payload or b"{}")
            actor, args = payload["actor"], payload.get("args") or {}
            if not isinstance(actor, str) or not isinstance(args, dict):
                raise TypeError("actor must be a string and args an object")
        except (ValueError, KeyError, TypeError) as exc:
            self.stats["service_refused"] += 1
            raise ValueError(f"ctl/{cmd}: the request must be JSON {{\"actor\": NAME, \"args\": {{...}}}} ({exc})")
        if is_destructive(cmd):
            given = payload.get("token")
            if self.token is None or not isinstance(given, str) or not hmac.compare_digest(given, self.token):
                self.stats["service_refused"] += 1
                raise PermissionError(f"ctl/{cmd}: refused: {cmd} needs the access token in the request")
        done: Future = Future()
        self.requests.put(_Call(cmd, actor, args, done))
        reply = done.result(timeout=self.settings.service_timeout_s)
        return json.dumps(reply, default=str).encode()

    def on_ctl_reply(self, msg: Message) -> None:
        waiting = self.pending_calls.pop(msg.header.corr or "", None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(msg.body)

    def serve_viewer_requests(self) -> None:
        while True:
            try:
                item = self.requests.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Publish):
                self.publish(item.topic, item.body)
                self.stats["client_published"] += 1
            else:
                corr = uuid.uuid4().hex
                self.pending_calls[corr] = (item.reply, time.monotonic() + self.settings.service_timeout_s + 1.0)
                self.stats["service_calls"] += 1
                self.publish(ctl_topic(item.actor), Command(cmd=item.cmd, args=item.args).to_body(), corr=corr)
        # Calls whose reply never came (the caller has timed out) are forgotten.
        now = time.monotonic()
        for corr, (_, deadline) in list(self.pending_calls.items()):
            if now > deadline:
                self.pending_calls.pop(corr, None)

    # -- heartbeat, teardown ------------------------------------------------------

    def heartbeat_extra(self) -> dict[str, Any]:
        return {"port": self.port, "viewers": self.gate.viewers, "channels": len(self.channels),
                "replaced_for_slow_viewers": self.gate.replaced, "refused_viewers": self.gate.refused, **self.stats}

    def teardown(self) -> None:
        self.gate.stop()
        self.server.stop()


class ViewerListener:
    """The SDK's server listener: what viewers may publish. Runs on the SDK's threads."""

    def __init__(self, actor: FoxgloveActor) -> None:
        self.actor = actor
        self.advertised: dict[tuple[int, int], str] = {}
        """(client id, client channel id) -> bus topic, for channels a viewer may publish on."""

    def on_client_advertise(self, client: Any, channel: Any) -> None:
        allowed = self.actor.settings.client_publish
        topic = channel.topic
        try:
            validate_topic(topic)
        except TopicError:
            topic = ""
        if topic and channel.encoding == "json" and any(topic == p or (p.endswith(".") and topic.startswith(p))
                                              for p in allowed):
            self.advertised[(client.id, channel.id)] = topic
        else:
            self.actor.stats["client_refused"] += 1
            self.actor.log.warning("client_publish_refused", topic=topic, encoding=channel.encoding,
                                   allowed=allowed)

    def on_client_unadvertise(self, client: Any, client_channel_id: int) -> None:
        self.advertised.pop((client.id, client_channel_id), None)

    def on_message_data(self, client: Any, client_channel_id: int, data: bytes) -> None:
        topic = self.advertised.get((client.id, client_channel_id))
        try:
            body = json.loads(data) if topic is not None else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.actor.stats["client_refused"] += 1
            return
        self.actor.requests.put(_Publish(topic, body, client.id))  # type: ignore[arg-type]
