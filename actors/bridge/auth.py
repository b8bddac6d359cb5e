"""The ZAP authenticator of a bridge's CURVE server: the trusted-keys folder as the allow-list.

pyzmq's ``ThreadAuthenticator`` (one per context, started before any bind)
with a key check that reads a set the bridge replaces whenever the folder
changes, so removing a key takes effect without a restart. The User-Id of
an accepted connection is the peer's name (its file name in ``trusted/``),
which the bridge reads from each received message. Refusals are queued with
the key's fingerprint and the address for the bridge to count and log.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from bus.security import fingerprint

MAX_REFUSALS_QUEUED = 1000


class TrustedKeys:
    """Z85 public key -> peer name, replaced as a whole (readers in the ZAP thread see one version)."""

    def __init__(self) -> None:
        self.by_key: dict[bytes, str] = {}

    def replace(self, names_to_keys: dict[str, bytes]) -> None:
        self.by_key = {key: name for name, key in names_to_keys.items()}

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.by_key


class BridgeAuthenticator(ThreadAuthenticator):
    def __init__(self, ctx: zmq.Context, trusted: TrustedKeys) -> None:
        super().__init__(ctx)
        self.trusted = trusted
        self.refusals: deque[tuple[str, str]] = deque(maxlen=MAX_REFUSALS_QUEUED)
        """(fingerprint, address) of refused handshakes, for the bridge to take."""
        self.refused = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        super().start()
        self.configure_curve_callback("*", credentials_provider=self.trusted)

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.trusted.by_key.get(z85.encode(client_public_key), "?")

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        await super().handle_zap_message(msg)
        if len(msg) >= 7 and msg[5] == b"CURVE" and z85.encode(msg[6]) not in self.trusted.by_key:
            with self._lock:
                self.refused += 1
                self.refusals.append((fingerprint(msg[6]), msg[3].decode("utf-8", "replace")))

    def take_refusals(self) -> list[tuple[str, str]]:
        with self._lock:
            out = list(self.refusals)
            self.refusals.clear()
        return out


def curve_client(sock: zmq.Socket, server_key: bytes, public: bytes, secret: bytes) -> None:
    sock.curve_serverkey = server_key
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def curve_server(sock: zmq.Socket, public: bytes, secret: bytes, **_: Any) -> None:
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret
