"""CURVE keys for links between hosts: this host's keypair and the trusted keys (the allow-list).

Built on pyzmq's ``zmq.auth`` certificate helpers, laid out like ssh's:

    ~/.config/sensorium/keys/          (0700; $SENSORIUM_KEYS_DIR or a bridge's ``keys_dir`` elsewhere)
        host.key                       this host's public certificate (shareable)
        host.key_secret                its secret certificate (0600; never leaves the host)
        trusted/NAME.key               one public certificate per trusted peer host, NAME its name

A peer is trusted while its file is in ``trusted/``: removing the file
withdraws the trust, and a running bridge notices within seconds. Nothing
here opens a socket; the bridge (``actors/bridge``) and ``sensorium validate``
use it, and ``sensorium keys`` is its command line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from config.schema import Config

KEYS_DIR_ENV = "SENSORIUM_KEYS_DIR"
HOST_CERT = "host"
"""Base name of this host's certificate files (``host.key``, ``host.key_secret``)."""
TRUSTED = "trusted"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")
_Z85_KEY_RE = re.compile(r"[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


class KeyFileError(ValueError):
    """A key, key file or key folder that cannot be used; the message says which and why."""


def default_keys_dir() -> Path:
    """$SENSORIUM_KEYS_DIR, else $XDG_CONFIG_HOME/sensorium/keys, else ~/.config/sensorium/keys."""
    env = os.environ.get(KEYS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "sensorium" / "keys"


def fingerprint(public_key: bytes | str) -> str:
    """A short, stable name of a public key for logs: ``SHA256:`` and 16 hex digits of its hash."""
    raw = public_key.encode() if isinstance(public_key, str) else public_key
    if len(raw) == 40:
        raw = z85.decode(raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:16]


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise KeyFileError(f"bad peer name {name!r}: letters, digits, '_', '.', '-' (up to 63), starting with a "
                        "letter or digit")
    return name


def parse_public_key(text: str) -> bytes:
    """A Z85 public key (40 characters) given inline, or the contents of a ``.key`` certificate."""
    text = text.strip()
    if _Z85_KEY_RE.fullmatch(text):
        return text.encode()
    match = re.search(r'public-key\s*=\s*"([^"]{40})"', text)
    if match:
        return match.group(1).encode()
    raise KeyFileError("not a public key: expected 40 Z85 characters or a zmq certificate (public-key = \"...\")")


@dataclass(frozen=True)
class Keypair:
    public: bytes
    """Z85, 40 bytes."""
    secret: bytes
    """Z85, 40 bytes."""


class KeyStore:
    """One keys folder: this host's keypair and the trusted peers."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder else default_keys_dir()

    @property
    def public_file(self) -> Path:
        return self.folder / f"{HOST_CERT}.key"

    @property
    def secret_file(self) -> Path:
        return self.folder / f"{HOST_CERT}.key_secret"

    @property
    def trusted_dir(self) -> Path:
        return self.folder / TRUSTED

    # -- this host ----------------------------------------------------------

    def has_keypair(self) -> bool:
        return self.secret_file.is_file() and self.public_file.is_file()

    def init(self) -> tuple[Keypair, bool]:
        """Make this host's keypair unless it exists; returns (keypair, made now)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self.trusted_dir.mkdir(mode=0o700, exist_ok=True)
        if self.has_keypair():
            return self.keypair(), False
        zmq.auth.create_certificates(str(self.folder), HOST_CERT)
        os.chmod(self.secret_file, 0o600)
        os.chmod(self.public_file, 0o644)
        return self.keypair(), True

    def keypair(self) -> Keypair:
        """This host's keypair; raises KeyFileError when it is missing or its secret is readable by others."""
        problem = self.secret_problem()
        if problem:
            raise KeyFileError(problem)
        public, secret = zmq.auth.load_certificate(str(self.secret_file))
        if not secret:
            raise KeyFileError(f"{self.secret_file} holds no secret key")
        return Keypair(public, secret)

    def secret_problem(self) -> str:
        """'' when the secret certificate exists and only its owner can read it, else what is wrong."""
        if not self.secret_file.is_file():
            return f"no host keypair in {self.folder}: run `sensorium keys init`"
        st = self.secret_file.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            return (f"{self.secret_file} has mode {oct(stat.S_IMODE(st.st_mode))}: the secret key must be "
                    f"readable by its owner only (chmod 600 {self.secret_file})")
        if st.st_uid != os.getuid():
            return f"{self.secret_file} belongs to uid {st.st_uid}, not to this user ({os.getuid()})"
        return ""

    # -- the allow-list ---------------------------------------------------------

    def trust(self, name: str, key: str) -> Path:
        """Write ``trusted/NAME.key`` for a public key (Z85 text, or a certificate's text or path)."""
        check_name(name)
        path = Path(key).expanduser()
        public = parse_public_key(path.read_text() if len(key) != 40 and path.is_file() else key)
        self.trusted_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.trusted_dir / f"{name}.key"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(f"# trusted Sensorium peer {name}\nmetadata\ncurve\n    public-key = \"{public.decode()}\"\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return target

    def untrust(self, name: str) -> bool:
        target = self.trusted_dir / f"{check_name(name)}.key"
        if target.exists():
            target.unlink()
            return True
        return False

    def trusted(self) -> dict[str, bytes]:
        """Peer name -> Z85 public key, read from ``trusted/`` now (unreadable files are skipped)."""
        found: dict[str, bytes] = {}
        if not self.trusted_dir.is_dir():
            return found
        for path in sorted(self.trusted_dir.glob("*.key")):
            try:
                found[path.stem] = parse_public_key(path.read_text())
            except (OSError, KeyFileError):
                continue
        return found

    def trusted_problems(self) -> list[str]:
        """Files in ``trusted/`` that are not usable keys, or that others may write."""
        problems = []
        if not self.trusted_dir.is_dir():
            return [f"no trusted-keys folder {self.trusted_dir}: run `sensorium keys init`"]
        mode = stat.S_IMODE(self.trusted_dir.stat().st_mode)
        if mode & 0o022:
            problems.append(f"{self.trusted_dir} has mode {oct(mode)}: others could add keys (chmod 700)")
        for path in sorted(self.trusted_dir.glob("*.key")):
            try:
                parse_public_key(path.read_text())
            except (OSError, KeyFileError) as exc:
                problems.append(f"{path}: {exc}")
        return problems

    def ready_for_network(self) -> str:
        """'' when a non-loopback bind may go ahead (a usable keypair and a non-empty allow-list), else why not."""
        problem = self.secret_problem()
        if problem:
            return problem
        if not self.trusted():
            return f"no trusted peer keys in {self.trusted_dir}: add one with `sensorium keys trust NAME KEY`"
        return ""


# -- sensorium keys ---------------------------------------------------------------


def main(argv: list[str], config: Config) -> int:
    """``sensorium keys init|show|trust|untrust|list``."""
    parser = argparse.ArgumentParser(prog="sensorium keys", description="This host's CURVE keypair and the "
                                     "public keys of the hosts it trusts (for bridges between hosts).")
    parser.add_argument("--dir", default="", help=f"keys folder (default: ${KEYS_DIR_ENV} or "
                        "~/.config/sensorium/keys)")
    sub = parser.add_subparsers(dest="action", required=True)
    def action(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")

    action("init", "make this host's keypair (once; an existing one is kept)")
    action("show", "print this host's public key (give it to the peers to trust)")
    trust = action("trust", "trust a peer host's public key")
    trust.add_argument("name", help="the peer's name (its file is trusted/NAME.key)")
    trust.add_argument("key", help="its public key: 40 Z85 characters, or the path of its .key file")
    untrust = action("untrust", "withdraw the trust in a peer (running bridges drop it within seconds)")
    untrust.add_argument("name", help="the peer's name")
    action("list", "list the trusted peers with their key fingerprints")
    args = parser.parse_args(argv)
    store = KeyStore(args.dir or None)
    try:
        if args.action == "init":
            pair, made = store.init()
            print(f"{'made' if made else 'kept the existing'} keypair in {store.folder} "
                  f"({fingerprint(pair.public)})", file=sys.stderr)
            print(pair.public.decode())
        elif args.action == "show":
            if not store.public_file.is_file():
                raise KeyFileError(f"no host keypair in {store.folder}: run `sensorium keys init`")
            public, _ = zmq.auth.load_certificate(str(store.public_file))
            print(public.decode())
        elif args.action == "trust":
            path = store.trust(args.name, args.key)
            print(f"trusted {args.name} ({fingerprint(store.trusted()[args.name])}): {path}")
        elif args.action == "untrust":
            if not store.untrust(args.name):
                raise KeyFileError(f"{args.name} is not trusted (no {store.trusted_dir / (args.name + '.key')})")
            print(f"no longer trusted: {args.name}")
        else:
            for name, key in store.trusted().items():
                print(f"{name}\t{key.decode()}\t{fingerprint(key)}")
    except (KeyFileError, OSError) as exc:
        print(f"sensorium keys {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
