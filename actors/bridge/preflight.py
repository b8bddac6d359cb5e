"""``sensorium validate`` for a bridge: the keys exist with safe permissions and every peer's key is trusted."""

from __future__ import annotations

from pathlib import Path

from actors.bridge.settings import BridgeSettings
from actors.spec import Check
from bus.endpoints import EndpointError, check_endpoint
from bus.security import KeyFileError, KeyStore, fingerprint, parse_public_key


def check_bridge(name: str, s: BridgeSettings) -> list[Check]:
    store = KeyStore(s.keys_dir or None)
    checks = []
    problem = store.secret_problem()
    checks.append(Check(f"{name}: host keypair", "fail" if problem else "ok", problem or str(store.secret_file)))
    for trouble in store.trusted_problems():
        checks.append(Check(f"{name}: trusted keys", "fail", trouble))
    if s.bind:
        try:
            check_endpoint(s.bind, binding=True, curve_keys=store)
            checks.append(Check(f"{name}: bind", "ok", f"{s.bind} (CURVE server, ZAP allow-list "
                                                       f"{store.trusted_dir})"))
        except EndpointError as exc:
            checks.append(Check(f"{name}: bind", "fail", str(exc)))
    trusted = store.trusted()
    for peer in s.peers:
        label = f"{name}: peer {peer.name}"
        try:
            if peer.public_key:
                key = parse_public_key(peer.public_key)
            elif peer.key_file:
                key = parse_public_key(Path(peer.key_file).expanduser().read_text())
            else:
                key = trusted.get(peer.name, b"")
        except (OSError, KeyFileError) as exc:
            checks.append(Check(label, "fail", str(exc)))
            continue
        if not key:
            checks.append(Check(label, "fail", f"no key: `sensorium keys trust {peer.name} KEY`"))
        elif key not in trusted.values():
            checks.append(Check(label, "fail", f"key {fingerprint(key)} is not in {store.trusted_dir}: "
                                               f"`sensorium keys trust {peer.name} KEY`"))
        else:
            checks.append(Check(label, "ok", f"{fingerprint(key)}, imports {peer.imports}, exports {peer.exports}"
                                + (", ctl crosses" if peer.ctl else "")))
    return checks
