"""The bridge: this host's bus joined to its peer hosts over tcp with CURVE.

Story: setup loads this host's keypair and the peers' keys, starts the ZAP
authenticator (before any bind), binds the CURVE server when ``bind`` is set,
dials each peer that has an endpoint, and subscribes locally to the export
prefixes in the local form (``@shm/PREFIX``: fixed, nothing is subscribed
dynamically across a link). Then:

* a local message under an export prefix that originates here goes in the
  plain form (header, body and arrays as sent; shared-memory arrays copied
  once out of the publisher's ring, the slot's generation checked after the
  copy) to each peer that is up and asked for it (its hello names its
  imports); one from another host is never sent on (no loops). What is
  queued leaves together: the small messages for a peer as one batch;
* a peer's message under our imports, if it is the peer's own, is published
  on the local bus under its own header (the peer's host, src, iid and seq,
  so every subscriber here counts gaps per sender across the link), in the
  forms this host's subscribers asked for: plain, and the local form with
  large arrays through this bridge's own ring (``Publisher.forward``);
* every ``heartbeat_ivl_s`` each side pings (a hello that also carries its
  imports, so a reconnected link is subscribed again at once) and the other
  answers with its clock: round trip and clock offset per peer;
* nothing heard for ``heartbeat_timeout_s``: the link is down; a dialer
  closes its socket and dials again after the backoff;
* every ``report_s``: ``sys.link`` per peer, and the catalogue (this host's
  actors, from their heartbeats) to each peer;
* every ``trust_check_s``: the trusted-keys folder is read again; a peer
  whose key is gone is cut off (its socket closed, or the server socket
  rebound so its connection ends while trusted peers reconnect).

On the link one message is one ZeroMQ multipart message whose first frame
says what it is: ``H`` hello/ping (msgpack map: host, t1, imports), ``O``
pong (host, t1, t2, t3), ``C`` catalogue, ``D`` followed by one message's
bus frames, ``B`` a batch (one msgpack array of [topic, header, body] bins:
one frame, one CURVE box, for many small messages), ``X`` a command for one
of the receiver's actors and ``R`` its reply.

Remote commands (``sensorium ctl HOST/ACTOR CMD``): the CLI publishes on
``ctl.to.HOST`` a body {actor, cmd, args} with its corr; the bridge linked
to HOST (with ``ctl = true`` for it) sends it across; the peer's bridge
(also ``ctl = true`` for us) publishes the command on ``ctl.ACTOR`` there and
sends back the one ``ctl.reply`` with that corr, which arrives here on
``ctl.reply`` with ``actor`` = ``HOST/ACTOR``. Nothing else of ``ctl.``
crosses unless an export prefix names it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from actors.base import Actor, ActorExit
from actors.bridge.auth import BridgeAuthenticator, TrustedKeys, curve_client, curve_server
from actors.bridge.link import ClockSample, LinkWatch, clock_sample, exports_to, imports_from
from actors.bridge.settings import BridgeSettings, PeerSettings
from bus.endpoints import EndpointError, check_endpoint
from bus.envelope import (LOCAL_MARKER, SEGMENT_MARK, EnvelopeError, Message, header_host,
                          plain_from_local, refers_to_shm)
from bus.pubsub import Publisher
from bus.shm import ShmDropped, ShmReader
from bus.messages import Command, CommandReply, Heartbeat, LinkState
from bus.topics import TopicError, validate_topic
from bus.security import KeyFileError, KeyStore, fingerprint, parse_public_key
from bus.senders import origin_host
from config.backoff import BackoffPolicy

HELLO, PONG, CATALOGUE, DATA, BATCH, COMMAND, REPLY = b"H", b"O", b"C", b"D", b"B", b"X", b"R"
PENDING_S = 120.0
"""How long a command sent to this host's actor by a peer waits for its reply, seconds."""
BUDGET = 512
"""Messages read per socket per loop turn, so timers stay on time."""
BATCH_BYTES = 256 * 1024
"""A batch of small messages to one peer is sent once it holds this many bytes (or the queue is empty)."""
_MONITOR_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


@dataclass
class Peer:
    """One configured peer host and its link, as this bridge sees it."""

    settings: PeerSettings
    key: bytes
    """The peer's public key, Z85."""
    watch: LinkWatch
    sock: zmq.Socket | None = None
    """Our DEALER to the peer (role client)."""
    monitor: zmq.Socket | None = None
    rid: bytes | None = None
    """The peer's routing id on our server socket (role server), once it said hello."""
    wants: list[str] = field(default_factory=list)
    """The peer's imports, from its last hello: what it takes from us."""
    trusted: bool = True
    clock: ClockSample | None = None
    catalogue: dict[str, Any] = field(default_factory=dict)
    opened_at: float = 0.0
    redial_at: float | None = None
    attempt: int = 0
    up_since: float = 0.0
    msgs_out: int = 0
    bytes_out: int = 0
    msgs_in: int = 0
    bytes_in: int = 0
    drops_out: int = 0
    drops_in: int = 0
    refused: int = 0
    downs: int = 0

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def role(self) -> str:
        return "client" if self.settings.endpoint else "server"


class BridgeActor(Actor[BridgeSettings]):
    kind = "bridge"

    # -- setup ---------------------------------------------------------------

    def setup(self) -> None:
        s = self.settings
        self.host = origin_host()
        self.rng = random.Random()
        self.backoff = BackoffPolicy.from_settings(s.backoff)
        self.store = KeyStore(s.keys_dir or None)
        try:
            self.keypair = self.store.keypair()
        except KeyFileError as exc:
            raise ActorExit(2, str(exc)) from exc
        if s.bind:
            try:
                check_endpoint(s.bind, binding=True, curve_keys=self.store)
            except EndpointError as exc:
                raise ActorExit(2, str(exc)) from exc
        trusted = self.store.trusted()
        self.peers: dict[str, Peer] = {}
        for ps in s.peers:
            if ps.name == self.host:
                raise ActorExit(2, f"peers: {ps.name!r} is this host's own name (set bus.host on each host)")
            self.peers[ps.name] = Peer(ps, self._peer_key(ps, trusted), LinkWatch(s.heartbeat_timeout_s))
        self.trusted_keys = TrustedKeys()
        self.trusted_keys.replace(trusted)
        self.ctx = zmq.Context.instance()
        self.auth: BridgeAuthenticator | None = None
        self.server: zmq.Socket | None = None
        self.unknown_senders = 0
        """Messages on the server socket from trusted hosts that are not configured server-role peers."""
        self._routes: dict[bytes, tuple[bytes, str, list[Peer]]] = {}
        """Local-form topic frame -> (plain topic frame, topic, the peers it is exported to) (``_route``)."""
        self._accepts: dict[tuple[str, bytes], bool] = {}
        """(peer, topic frame) -> under our imports or not."""
        self.catalogue: dict[str, dict[str, Any]] = {}
        if s.bind:
            self.auth = BridgeAuthenticator(self.ctx, self.trusted_keys)
            self.auth.start()  # before the bind: no handshake may happen without ZAP
            self._open_server()
        # Imports are passed on under their senders' headers, in the forms this host's subscribers asked for:
        # large arrays through this bridge's shared-memory ring for local (``shm``) subscribers.
        self.out = Publisher(self.ctx, self.endpoints.frontend, f"{self.name}.imports", hwm=self._hwm,
                             host=self.host, shm_threshold=self._shm[0], shm_slots=self._shm[1],
                             direct_dir=self.endpoints.direct_dir)
        # Exports are read in the local form: every Sensorium publisher sends it to whoever asks, and its
        # large arrays come from the publisher's ring (one copy here) instead of through the broker.
        self.shm_reader = ShmReader(views=True)
        self.local = self.ctx.socket(zmq.SUB)
        self.local.setsockopt(zmq.RCVHWM, self._hwm)
        self.local.setsockopt(zmq.LINGER, 0)
        for prefix in sorted({p for peer in self.peers.values() for p in peer.settings.exports}):
            self.local.setsockopt(zmq.SUBSCRIBE, LOCAL_MARKER + prefix.encode())
        self.local.connect(self.endpoints.backend)
        self.watch(self.local, self.on_local)
        for peer in self.peers.values():
            if peer.role == "client":
                self._dial(peer)
        self.subscribe(Heartbeat.TOPIC, self.on_heartbeat)
        self.pending: dict[str, tuple[Peer, float]] = {}
        """corr -> (the peer that sent the command, when): replies of this host's actors to go back."""
        for peer in self.peers.values():
            if peer.settings.ctl:
                try:
                    self.subscribe(validate_topic(f"ctl.to.{peer.name.lower()}"), self.on_remote_command)
                except TopicError as exc:
                    self.log.warning("remote_ctl_unavailable", peer=peer.name, error=str(exc))
        if any(p.settings.ctl for p in self.peers.values()):
            self.subscribe(CommandReply.TOPIC, self.on_ctl_reply)
        self.every(s.heartbeat_ivl_s, self.ping_peers)
        self.every(min(0.1, s.heartbeat_ivl_s / 2), self.check_links)
        self.every(s.report_s, self.report)
        self.every(s.trust_check_s, self.check_trust)
        self.log.info("bridge_ready", host=self.host, bind=s.bind, key=fingerprint(self.keypair.public),
                      peers={p.name: p.role for p in self.peers.values()})

    def _peer_key(self, ps: PeerSettings, trusted: dict[str, bytes]) -> bytes:
        try:
            if ps.public_key:
                return parse_public_key(ps.public_key)
            if ps.key_file:
                return parse_public_key(Path(ps.key_file).expanduser().read_text())
        except (OSError, KeyFileError) as exc:
            raise ActorExit(2, f"peers {ps.name}: {exc}") from exc
        if ps.name not in trusted:
            raise ActorExit(2, f"peers {ps.name}: no key (public_key, key_file, or {self.store.trusted_dir}/"
                               f"{ps.name}.key: `sensorium keys trust {ps.name} KEY`)")
        return trusted[ps.name]

    def _open_server(self) -> None:
        sock = self.ctx.socket(zmq.ROUTER)
        curve_server(sock, self.keypair.public, self.keypair.secret)
        self._link_options(sock)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Routing ids are the ROUTER's own (random): a peer is known by its ZAP User-Id (its trusted key), so one
        # trusted host cannot take over another's connection by claiming its routing id.
        deadline = time.monotonic() + 5.0
        while True:  # a rebind right after a close may find the port still held for a moment
            try:
                sock.bind(self.settings.bind)
                break
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    sock.close(0)
                    raise ActorExit(1, f"cannot bind {self.settings.bind}: {exc}") from exc
                time.sleep(0.05)
        self.server = sock
        self.watch(sock, self.on_server)

    def _link_options(self, sock: zmq.Socket) -> None:
        s = self.settings
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, s.hwm)
        sock.setsockopt(zmq.RCVHWM, s.hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, self._limits.max_message_bytes + 64 * 1024)
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(s.heartbeat_ivl_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(s.heartbeat_timeout_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TTL, int(s.heartbeat_timeout_s * 1000))

    def _dial(self, peer: Peer) -> None:
        s = self.settings
        sock = self.ctx.socket(zmq.DEALER)
        curve_client(sock, peer.key, self.keypair.public, self.keypair.secret)
        self._link_options(sock)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing for a link that is not there: a counted drop instead
        sock.setsockopt(zmq.RECONNECT_IVL, max(1, int(s.backoff.initial_s * 1000)))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(1, int(s.backoff.max_s * 1000)))
        peer.monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
        sock.connect(peer.settings.endpoint)
        peer.sock = sock
        peer.opened_at = time.monotonic()
        peer.redial_at = None
        self.watch(sock, lambda: self.on_client(peer))
        self.watch(peer.monitor, lambda: self.on_monitor(peer))
        self._hello(peer)

    def _hang_up(self, peer: Peer) -> None:
        for sock in (peer.sock, peer.monitor):
            if sock is not None:
                self.unwatch(sock)
        if peer.sock is not None:
            peer.sock.disable_monitor()
            peer.sock.close(0)
        if peer.monitor is not None:
            peer.monitor.close(0)
        peer.sock = peer.monitor = None

    # -- the local bus -------------------------------------------------------

    def on_local(self) -> None:
        """Local messages under the export prefixes: this host's own go to every peer that wants them.

        What is queued is read in one go (up to ``BUDGET``); the small messages for one peer leave as one
        batch (``B``: one frame, one CURVE box, one syscall for many messages), a message with array
        frames as one ``D`` message, zero-copy, after the batch before it (order kept per peer)."""
        sock = self.local
        recv = sock.recv
        limits = self._limits
        host = self.host
        routes = self._routes
        batches: dict[str, list[list[Any]]] = {}
        sizes: dict[str, int] = {}
        for _ in range(BUDGET):
            # Frame objects only where the "more" flag is needed (a getsockopt costs more than a frame).
            try:
                f = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                if not f.more:
                    raise zmq.Again
                # NOBLOCK: a message cut short (fewer than 3 frames) must not stall the loop; if another
                # message follows, it is read to its end below and both are counted as dropped.
                h = recv(zmq.NOBLOCK)
                b = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.counters.dropped += 1
                continue
            raw = f.bytes
            body = b.bytes
            frames: list[Any] = [raw, h, body]
            while b.more:
                b = recv(copy=False)
                frames.append(b)
            if body[:1].isalpha() or body[:1] == b"@":
                # A body is a msgpack map, never a letter: a malformed body, or this was a two-frame message
                # and "body" the topic of the next one, read to its end above. Dropped, not sent on.
                self.counters.dropped += 2 if len(frames) > 3 else 1
                continue
            route = routes.get(raw)
            if route is None:
                route = self._route(raw)
            if route is None:
                self.counters.dropped += 1
                continue
            t, topic, targets = route
            if not targets:
                continue
            try:
                origin = header_host(h, topic, limits)
            except EnvelopeError:
                self.counters.dropped += 1
                continue
            if origin != host:
                continue  # imported from a peer (or another host): never exported again
            if len(body) > limits.max_body_bytes:
                self.counters.dropped += 1
                continue
            if len(frames) == 3 and SEGMENT_MARK not in body:
                frames[0] = t
                size = len(t) + len(h) + len(body)
                for peer in targets:
                    name = peer.name
                    batch = batches.get(name)
                    if batch is None:
                        batch = batches[name] = []
                        sizes[name] = 0
                    batch.append(frames)
                    sizes[name] += size
                    if sizes[name] >= BATCH_BYTES:
                        self._send_batch(peer, batches.pop(name), sizes.pop(name))
                continue
            # The peer gets the plain form: shared-memory arrays copied (once, into ZeroMQ messages) out of
            # views whose generations are checked after the copy, as a copying reader does.
            reader = self.shm_reader
            reader.taken = []
            try:
                frames = plain_from_local(frames, reader, limits)
                frames[3:] = [zmq.Frame(a, copy=True) for a in frames[3:]]
                if not reader.still_valid(reader.taken):
                    raise ShmDropped("slot overwritten during the read", "", -1)
            except ShmDropped as exc:
                for peer in targets:
                    peer.drops_out += 1
                self._burst.warning(f"s:{topic}", "export_shm_drop", topic=topic, reason=exc.reason)
                continue
            except EnvelopeError:
                self.counters.dropped += 1
                continue
            size = sum(len(memoryview(x)) for x in frames)
            for peer in targets:
                if peer.name in batches:
                    self._send_batch(peer, batches.pop(peer.name), sizes.pop(peer.name))
                self._send_data(peer, [DATA, *frames], 1, size)
        for name, batch in batches.items():
            self._send_batch(self.peers[name], batch, sizes[name])

    def _route(self, raw: bytes) -> tuple[bytes, str, list[Peer]] | None:
        """For a local-form topic frame: the plain topic frame, the topic, and the peers a message of it goes
        to (cached per topic frame; cleared when a peer's imports change); None for a frame that is no
        topic."""
        t = raw[len(LOCAL_MARKER):] if raw.startswith(LOCAL_MARKER) else raw
        try:
            topic = validate_topic(t.decode("utf-8"))
        except (UnicodeDecodeError, TopicError):
            return None
        if len(self._routes) > 4096:
            self._routes.clear()
        targets = [p for p in self.peers.values()
                   if exports_to(topic, self.host, self.host, p.settings.exports, p.wants)]
        route = self._routes[raw] = (t, topic, targets)
        return route

    def _send_batch(self, peer: Peer, batch: list[list[bytes]], size: int) -> None:
        if len(batch) == 1:
            self._send_data(peer, [DATA, *batch[0]], 1, size)
        else:
            self._send_data(peer, [BATCH, msgpack.packb(batch)], len(batch), size)

    def _send_data(self, peer: Peer, frames: list[Any], count: int, size: int) -> None:
        """One link message carrying ``count`` bus messages of ``size`` bytes in all (counted as such)."""
        if peer.watch.state != "up" or not peer.trusted:
            peer.drops_out += count
            return
        try:
            if peer.role == "client" and peer.sock is not None:
                peer.sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
            elif peer.rid is not None and self.server is not None:
                self.server.send_multipart([peer.rid, *frames], zmq.NOBLOCK, copy=False)
            else:
                peer.drops_out += count
                return
        except (zmq.Again, zmq.ZMQError):  # queue full, or (ROUTER_MANDATORY) the peer is gone
            peer.drops_out += count
            return
        peer.msgs_out += count
        peer.bytes_out += size

    def on_heartbeat(self, msg: Message) -> None:
        """This host's actors, for the catalogue the peers show in ``status --hosts``."""
        if msg.header.host != self.host:
            return
        b = msg.body
        self.catalogue[msg.header.src] = {"kind": b.get("kind", ""), "state": b.get("state", ""),
                                          "pid": b.get("pid"), "uptime": b.get("uptime"),
                                          "topics": sorted(b.get("topics", {})), "seen": time.time()}

    # -- the links -----------------------------------------------------------

    def on_client(self, peer: Peer) -> None:
        sock = peer.sock
        for _ in range(BUDGET):
            if sock is None or sock is not peer.sock:
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._on_link_message(peer, frames)

    def on_server(self) -> None:
        sock = self.server
        for _ in range(BUDGET):
            if sock is None or sock is not self.server:
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            name = frames[1].get("User-Id")
            peer = self.peers.get(name)
            if peer is None or peer.role != "server" or not peer.trusted:
                self.unknown_senders += 1
                self._burst.warning(f"u:{name}", "message_from_unconfigured_peer", peer=name,
                                    total=self.unknown_senders)
                continue
            if peer.rid != frames[0].bytes:
                peer.rid = frames[0].bytes
            self._on_link_message(peer, frames[1:])

    def _on_link_message(self, peer: Peer, frames: list[Any]) -> None:
        now = time.monotonic()
        if peer.watch.heard(now):
            self._link_changed(peer, now)
        kind = frames[0].bytes
        if kind == BATCH:
            self._on_batch(peer, frames)
        elif kind == DATA:
            self._on_data(peer, frames[1:])
        elif kind == HELLO:
            t2 = time.time_ns()
            hello = self._unpack(peer, frames)
            if hello is None:
                return
            imports = hello.get("imports", [])
            wants = [p for p in imports if isinstance(p, str)] if isinstance(imports, list) else []
            if wants != peer.wants:
                peer.wants = wants
                self._routes.clear()
            self._send(peer, PONG, {"host": self.host, "t1": hello.get("t1", 0), "t2": t2, "t3": time.time_ns()})
        elif kind == PONG:
            t4 = time.time_ns()
            pong = self._unpack(peer, frames)
            if pong is not None and all(isinstance(pong.get(k), int) for k in ("t1", "t2", "t3")):
                peer.clock = clock_sample(pong["t1"], pong["t2"], pong["t3"], t4)
        elif kind in (COMMAND, REPLY):
            body = self._unpack(peer, frames)
            if body is None:
                return
            if not peer.settings.ctl:
                peer.drops_in += 1
                self._burst.warning(f"c:{peer.name}", "remote_ctl_refused", peer=peer.name,
                                    reason=f"ctl is not enabled for peer {peer.name}")
                if kind == COMMAND:  # the sender hears why, instead of waiting for its timeout
                    refusal = CommandReply(actor=str(body.get("actor", "")), cmd=str(body.get("cmd", "")), ok=False,
                                           error=f"{self.host} does not take commands from {peer.name} "
                                                 f"(ctl = false for that peer)")
                    self._send(peer, REPLY, {"corr": body.get("corr", ""), "body": refusal.to_body()})
            elif kind == COMMAND:
                self._run_remote_command(peer, body)
            else:
                self._deliver_remote_reply(peer, body)
        elif kind == CATALOGUE:
            cat = self._unpack(peer, frames)
            if cat is not None:
                peer.catalogue = cat.get("actors", {}) if isinstance(cat.get("actors"), dict) else {}
        else:
            peer.drops_in += 1

    def _unpack(self, peer: Peer, frames: list[Any]) -> dict[str, Any] | None:
        try:
            body = msgpack.unpackb(frames[1].bytes) if len(frames) == 2 else None
        except (ValueError, msgpack.UnpackException):
            body = None
        if not isinstance(body, dict):
            peer.drops_in += 1
            self._burst.warning(f"b:{peer.name}", "bad_link_message", peer=peer.name)
            return None
        return body

    def _on_batch(self, peer: Peer, frames: list[Any]) -> None:
        """``B``: a msgpack array of [topic, header, body] messages, each taken as a ``D`` would be."""
        try:
            batch = msgpack.unpackb(frames[1].buffer, use_list=True, max_map_len=0, max_ext_len=0) \
                if len(frames) == 2 else None
        except (ValueError, msgpack.UnpackException):
            batch = None
        if not isinstance(batch, list):
            peer.drops_in += 1
            self._burst.warning(f"b:{peer.name}", "bad_link_message", peer=peer.name)
            return
        limits = self._limits
        accepts = self._accepts
        name = peer.name
        taken: list[list[bytes]] = []
        size = 0
        for msg in batch:
            try:
                t, h, b = msg
                if type(t) is not bytes or type(h) is not bytes or type(b) is not bytes:
                    raise TypeError("a batched message is three bins")
                accepted = accepts.get((name, t))
                if accepted is None:
                    accepted = self._accepted(peer, t.decode("utf-8"), t)
                origin = header_host(h, "", limits)
            except (ValueError, TypeError, UnicodeDecodeError, EnvelopeError):
                peer.drops_in += 1
                continue
            if not accepted or origin != name:  # not under our imports, or a relay of another host's message
                peer.drops_in += 1
                continue
            if SEGMENT_MARK in b and refers_to_shm(b):  # another host's shared memory means nothing here
                peer.drops_in += 1
                continue
            taken.append(msg)
            size += len(t) + len(h) + len(b)
        self.out.forward_small(taken)
        peer.msgs_in += len(taken)
        peer.bytes_in += size

    def _accepted(self, peer: Peer, topic: str, raw: bytes) -> bool:
        """Whether ``topic`` (topic frame ``raw``) is a valid topic under our imports from ``peer`` (cached per
        frame): a local-form frame (``@shm/...``) never is."""
        if len(self._accepts) > 4096:
            self._accepts.clear()
        try:
            validate_topic(topic)
            accepted = imports_from(topic, peer.name, peer.name, peer.settings.imports)
        except TopicError:
            accepted = False
        self._accepts[(peer.name, raw)] = accepted
        return accepted

    def _on_data(self, peer: Peer, frames: list[Any]) -> None:
        try:
            topic = frames[0].bytes.decode("utf-8")
            origin = header_host(frames[1].bytes, topic, self._limits)
        except (UnicodeDecodeError, EnvelopeError, IndexError):
            peer.drops_in += 1
            return
        if origin != peer.name:  # a relay of another host's message: never taken (no loops)
            peer.drops_in += 1
            return
        accepted = self._accepts.get((peer.name, frames[0].bytes))
        if accepted is None:
            accepted = self._accepted(peer, topic, frames[0].bytes)
        if not accepted:
            peer.drops_in += 1
            return
        try:
            self.out.forward(frames)
        except EnvelopeError:
            peer.drops_in += 1
            return
        peer.msgs_in += 1
        peer.bytes_in += sum(map(len, frames))

    def _send(self, peer: Peer, kind: bytes, body: dict[str, Any]) -> None:
        payload = msgpack.packb(body)
        try:
            if peer.role == "client" and peer.sock is not None:
                peer.sock.send_multipart([kind, payload], zmq.NOBLOCK)
            elif peer.rid is not None and self.server is not None:
                self.server.send_multipart([peer.rid, kind, payload], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            pass  # a ping lost to a link that is down or full: the timeout tells

    def _hello(self, peer: Peer) -> None:
        self._send(peer, HELLO, {"host": self.host, "t1": time.time_ns(), "imports": peer.settings.imports})

    def on_monitor(self, peer: Peer) -> None:
        mon = peer.monitor
        while mon is not None and mon is peer.monitor:
            try:
                event = recv_monitor_message(mon, zmq.NOBLOCK)
            except zmq.Again:
                return
            code = event["event"]
            if code == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._hello(peer)  # "resubscribe": the peer learns our imports at once after every reconnect
            elif code in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                          zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                peer.refused += 1
                self._burst.warning(f"r:{peer.name}", "handshake_refused_by_peer", peer=peer.name,
                                    endpoint=peer.settings.endpoint, refused=peer.refused)

    def ping_peers(self) -> None:
        for peer in self.peers.values():
            if peer.trusted and (peer.role == "client" or peer.rid is not None):
                self._hello(peer)

    def check_links(self) -> None:
        now = time.monotonic()
        timeout = self.settings.heartbeat_timeout_s
        for peer in self.peers.values():
            if peer.watch.check(now):
                self._link_changed(peer, now)
            if peer.watch.state == "up" and now - peer.up_since > self.backoff.reset_after_s:
                peer.attempt = 0  # healthy long enough: the next fall starts a new backoff streak
            if peer.role != "client" or not peer.trusted:
                continue
            if peer.sock is not None and peer.watch.state == "down" and now - peer.opened_at > 2 * timeout:
                # Nothing heard since the dial (or since the link fell): dial afresh after the backoff.
                self._hang_up(peer)
                peer.attempt += 1
                peer.redial_at = now + self.backoff.delay_s(peer.attempt, self.rng)
            if peer.sock is None and peer.redial_at is not None and now >= peer.redial_at:
                self._dial(peer)
        if self.auth is not None:
            for fp, address in self.auth.take_refusals():
                self.log.warning("handshake_refused", reason="key not trusted", key=fp, address=address,
                                 refused_total=self.auth.refused)

    def _link_changed(self, peer: Peer, now: float) -> None:
        state = peer.watch.state
        if state == "up":
            peer.up_since = now
            self.log.info("link_up", peer=peer.name, role=peer.role)
        else:
            peer.downs += 1
            peer.rid = None if peer.role == "server" else peer.rid
            self.log.warning("link_down", peer=peer.name, role=peer.role, silent_s=self.settings.heartbeat_timeout_s)
            if peer.role == "client" and peer.sock is not None:
                self._hang_up(peer)
                peer.attempt += 1
                peer.redial_at = now + self.backoff.delay_s(peer.attempt, self.rng)
        self.publish(self._link_state(peer, now))

    # -- remote commands -------------------------------------------------------

    def _peer_of_ctl_topic(self, topic: str) -> Peer | None:
        host = topic.removeprefix("ctl.to.")
        return next((p for p in self.peers.values() if p.name.lower() == host and p.settings.ctl), None)

    def on_remote_command(self, msg: Message) -> None:
        """A command on ``ctl.to.PEER`` for one of the peer's actors: sent across, or answered with an error."""
        peer = self._peer_of_ctl_topic(msg.topic)
        body = msg.body
        actor, cmd = str(body.get("actor", "")), str(body.get("cmd", ""))
        if peer is None or not actor or not cmd:
            self.counters.dropped += 1
            return
        if peer.watch.state != "up" or not peer.trusted:
            self.publish(CommandReply(actor=f"{peer.name}/{actor}", cmd=cmd, ok=False,
                                      error=f"the link to {peer.name} is {peer.watch.state}"), corr=msg.header.corr)
            return
        self._send(peer, COMMAND, {"actor": actor, "cmd": cmd, "args": body.get("args") or {},
                                   "corr": msg.header.corr or ""})

    def _run_remote_command(self, peer: Peer, body: dict[str, Any]) -> None:
        corr = str(body.get("corr") or "")
        try:
            topic = validate_topic(f"ctl.{body.get('actor')}")
        except TopicError:
            peer.drops_in += 1
            return
        args = body.get("args") if isinstance(body.get("args"), dict) else {}
        now = time.monotonic()
        for c in [c for c, (_, t) in self.pending.items() if now - t > PENDING_S]:
            del self.pending[c]
        self.pending[corr] = (peer, now)
        self.log.info("remote_command", peer=peer.name, topic=topic, cmd=body.get("cmd"), corr=corr)
        self.publish(topic, Command(cmd=str(body.get("cmd")), args=args).to_body(), corr=corr)

    def on_ctl_reply(self, msg: Message) -> None:
        """A reply of this host's actor to a peer's command: back to that peer only."""
        corr = msg.header.corr or ""
        if msg.header.host != self.host or corr not in self.pending:
            return
        peer, _ = self.pending.pop(corr)
        self._send(peer, REPLY, {"corr": corr, "body": dict(msg.body)})

    def _deliver_remote_reply(self, peer: Peer, body: dict[str, Any]) -> None:
        reply = body.get("body")
        if not isinstance(reply, dict):
            peer.drops_in += 1
            return
        reply = dict(reply, actor=f"{peer.name}/{reply.get('actor', '')}")
        self.publish(CommandReply.TOPIC, reply, corr=str(body.get("corr") or "") or None)

    # -- trust ---------------------------------------------------------------

    def check_trust(self) -> None:
        trusted = self.store.trusted()
        if trusted == self._last_trusted():
            return
        self.trusted_keys.replace(trusted)
        keys = set(trusted.values())
        cut_server = False
        now = time.monotonic()
        for peer in self.peers.values():
            if peer.trusted and peer.key not in keys:
                peer.trusted = False
                self.log.warning("peer_untrusted", peer=peer.name, key=fingerprint(peer.key))
                if peer.role == "client":
                    self._hang_up(peer)
                    peer.redial_at = None
                elif peer.rid is not None:
                    cut_server = True
                peer.rid = None
                peer.watch.force_down(now)
                peer.downs += 1
                self.publish(self._link_state(peer, now))
            elif not peer.trusted and peer.key in keys:
                peer.trusted = True
                self.log.info("peer_trusted_again", peer=peer.name)
                if peer.role == "client":
                    self._dial(peer)
        if cut_server and self.server is not None:
            # libzmq cannot close one accepted connection: rebind, and the trusted peers reconnect by themselves.
            self.unwatch(self.server)
            self.server.close(0)
            self.server = None
            self._open_server()

    def _last_trusted(self) -> dict[str, bytes]:
        return {name: key for key, name in self.trusted_keys.by_key.items()}

    # -- reports -------------------------------------------------------------

    def report(self) -> None:
        now = time.monotonic()
        cat = {"host": self.host, "actors": self.catalogue}
        for peer in self.peers.values():
            self.publish(self._link_state(peer, now))
            if peer.watch.state == "up":
                self._send(peer, CATALOGUE, cat)

    def _link_state(self, peer: Peer, now: float) -> LinkState:
        since = peer.watch.history[-1][0] if peer.watch.history else self._started
        state = peer.watch.state if peer.trusted else "untrusted"
        refused = peer.refused + (self.auth.refused if self.auth is not None and peer.role == "server" else 0)
        return LinkState(host=self.host, peer=peer.name, state=state, role=peer.role,
                         endpoint=peer.settings.endpoint or self.settings.bind,
                         rtt_ms=None if peer.clock is None else round(peer.clock.rtt_ms, 3),
                         clock_offset_ms=None if peer.clock is None else round(peer.clock.offset_ms, 3),
                         msgs_out=peer.msgs_out, bytes_out=peer.bytes_out, msgs_in=peer.msgs_in,
                         bytes_in=peer.bytes_in, drops_out=peer.drops_out, drops_in=peer.drops_in,
                         refused_handshakes=refused, downs=peer.downs, since_s=round(now - since, 3),
                         actors={name: {k: a.get(k) for k in ("kind", "state", "pid")}
                                 for name, a in peer.catalogue.items() if isinstance(a, dict)})

    def heartbeat_extra(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"links": {p.name: self._link_state(p, now).to_body() for p in self.peers.values()},
                "refused_handshakes": self.auth.refused if self.auth is not None else 0,
                "unknown_senders": self.unknown_senders}

    def ctl_links(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [self._link_state(p, now).to_body() for p in self.peers.values()]

    def ctl_hosts(self) -> dict[str, Any]:
        """Every host this bridge knows: this one and each peer, with its actors and the link."""
        now = time.monotonic()
        hosts = {self.host: {"actors": self.catalogue, "link": None}}
        for peer in self.peers.values():
            hosts[peer.name] = {"actors": peer.catalogue, "link": self._link_state(peer, now).to_body()}
        return hosts

    def teardown(self) -> None:
        for peer in self.peers.values():
            self._hang_up(peer)
        for sock in (self.server, self.local):
            if sock is not None:
                self.unwatch(sock)
                sock.close(0)
        self.out.close()
        self.shm_reader.close()
        if self.auth is not None:
            self.auth.stop()

