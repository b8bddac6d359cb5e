"""Network namespaces for tests of hosts joined over real, non-loopback addresses.

Each "host" is a network namespace (``ip netns add``) with its loopback up;
hosts are joined pairwise by veth pairs with addresses from 10.203.0.0/16,
which exist only inside these namespaces: no traffic leaves them. Names
carry a per-run id, and ``NetLab.close`` (called by a fixture finalizer,
also after a failure) deletes every namespace it made, which removes the
veths with them. Needs root; ``NetLab.available()`` says why not otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

PREFIX = "sbr"
"""Namespaces of these tests are named sbr<run id><host>."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@dataclass
class NetLab:
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: dict[str, str] = field(default_factory=dict)
    """host name -> namespace name."""
    devices: dict[tuple[str, str], str] = field(default_factory=dict)
    """(host, peer host) -> the veth in host's namespace facing the peer."""
    addresses: dict[tuple[str, str], str] = field(default_factory=dict)
    """(host, peer host) -> host's address on the veth facing the peer."""
    _pairs: int = 0

    @staticmethod
    def available() -> str:
        """'' when namespaces can be made here, else why not (for the skip message)."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        if shutil.which("ip") is None:
            return "no `ip` command (iproute2)"
        probe = f"{PREFIX}probe{secrets.token_hex(2)}"
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"`ip netns add` failed: {made.stderr.strip()}"
        _ip("netns", "del", probe, check=False)
        return ""

    def add_host(self, host: str) -> str:
        ns = f"{PREFIX}{self.run_id}{host}"
        _ip("netns", "add", ns)
        self.namespaces[host] = ns
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def join(self, a: str, b: str) -> tuple[str, str]:
        """A veth pair between hosts a and b, on 10.203.N.0/24; returns (a's address, b's address)."""
        self._pairs += 1
        n = self._pairs
        dev_a, dev_b = f"{PREFIX}{self.run_id}{n}a", f"{PREFIX}{self.run_id}{n}b"
        _ip("link", "add", dev_a, "netns", self.namespaces[a], "type", "veth", "peer", "name", dev_b,
            "netns", self.namespaces[b])
        addr_a, addr_b = f"10.203.{n}.1", f"10.203.{n}.2"
        for host, dev, addr in ((a, dev_a, addr_a), (b, dev_b, addr_b)):
            _ip("-n", self.namespaces[host], "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", self.namespaces[host], "link", "set", dev, "up")
        self.devices[(a, b)], self.devices[(b, a)] = dev_a, dev_b
        self.addresses[(a, b)], self.addresses[(b, a)] = addr_a, addr_b
        return addr_a, addr_b

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Take the veth between a and b down (both ends) or up again."""
        for host, peer in ((a, b), (b, a)):
            _ip("-n", self.namespaces[host], "link", "set", self.devices[(host, peer)], "up" if up else "down")

    def exec_prefix(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host]]

    def close(self) -> None:
        for ns in self.namespaces.values():
            _ip("netns", "del", ns, check=False)
        self.namespaces.clear()


def remove_stale() -> None:
    """Namespaces of earlier runs of these tests that died before their cleanup."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ")[0]
        if name.startswith(PREFIX) and not name.startswith(f"{PREFIX}probe"):
            # Only ours: the prefix plus a run id; a live run of another session would be named the same way,
            # so only namespaces with no process inside are removed.
            pids = _ip("netns", "pids", name, check=False).stdout.split()
            if not pids:
                _ip("netns", "del", name, check=False)
