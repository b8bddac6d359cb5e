"""``sensorium validate``: the preflight checklist, exit 0 when nothing failed.

The generic checks (runtime and log folders, endpoints, GPU) are here; what a
kind needs (its optional packages, model files, inputs) comes from its spec:
``KindSpec.extras`` and ``KindSpec.preflight``. Every enabled actor's kind is
also imported in a fresh process, as a real start would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import zmq

from actors.registry import Registry
from actors.spec import Check
from bus.control import running_supervisor
from bus.endpoints import EndpointError, RuntimePaths, check_endpoint, ipc_path, private_dir_problem, runtime_paths
from config.paths import REPO_ROOT
from config.schema import Config


def check_dir(name: str, path: Path, private: bool) -> Check:
    """Writable (and private, 0700, for the runtime folder), with the free space; looked at, never changed
    (no mkdir, no chmod, no probe file): ``sensorium run`` is what creates and tightens them."""
    if private:
        status, detail = private_dir_problem(path)
    else:
        existing = path if path.exists() else next((p for p in path.parents if p.exists()), path)
        writable = os.access(existing, os.W_OK | os.X_OK)
        status = "ok" if writable else "fail"
        detail = (f"{path} writable" if path.exists() else f"{path} does not exist yet: a run creates it in "
                  f"{existing}") if writable else f"{existing} is not writable"
    if status == "fail":
        return Check(name, "fail", detail)
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), path)
    free_mb = os.statvfs(existing).f_bavail * os.statvfs(existing).f_frsize // 2**20
    return Check(name, "warn" if free_mb <= 100 else status, f"{detail}, {free_mb} MiB free")


def check_endpoints(paths: RuntimePaths) -> list[Check]:
    running = running_supervisor(paths.endpoints.control, paths.runtime_dir)
    checks = []
    for role, endpoint in zip(("frontend", "backend", "control"), paths.endpoints.all()):
        try:
            check_endpoint(endpoint, binding=True)
        except EndpointError as exc:
            checks.append(Check(f"endpoint {role}", "fail", str(exc)))
            continue
        if running is not None:
            checks.append(Check(f"endpoint {role}", "ok", f"{endpoint} (served by running supervisor pid "
                                f"{running.get('pid')})"))
            continue
        path = ipc_path(endpoint)
        if path is not None and not path.parent.exists():
            checks.append(Check(f"endpoint {role}", "ok", f"{endpoint} (its folder does not exist yet: a run "
                                "creates it)"))
            continue
        sock = zmq.Context.instance().socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            existed = path is not None and path.exists()
            sock.bind(endpoint)
            sock.close()
            if path is not None and not existed and path.exists():
                path.unlink()
            checks.append(Check(f"endpoint {role}", "ok", f"{endpoint} can be bound"))
        except zmq.ZMQError as exc:
            sock.close()
            checks.append(Check(f"endpoint {role}", "fail", f"{endpoint}: {exc}"))
    return checks


def check_actor_code(config: Config, kinds: list[str]) -> list[Check]:
    """Import every configured kind's actor class in a fresh process, as a real start would."""
    if not kinds:
        return [Check("actors", "warn", "no enabled actors")]
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory(prefix="sensorium-validate-") as folder:
        # The child needs the same [kinds] table: hand it the resolved config.
        resolved = Path(folder) / "config.json"
        resolved.write_text(config.model_dump_json())
        done = subprocess.run([sys.executable, "-m", "actors", "--check", *kinds, "-c", str(resolved)],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    try:
        results = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        results = {}
    return [Check(f"actor kind {k}", "ok" if results.get(k) == "ok" else "fail",
                  "imports" if results.get(k) == "ok" else str(results.get(k) or done.stderr.strip()[-300:]))
            for k in kinds]


def check_extras(registry: Registry, kinds: list[str]) -> list[Check]:
    """Each optional part an enabled kind needs, once."""
    checks: dict[str, Check] = {}
    for kind in kinds:
        for extra in registry.spec(kind).extras:
            missing = extra.missing()
            if extra.name in checks and not missing:
                continue
            needed_by = f"needed by {kind}"
            if missing:
                # A warning: the actor exits naming the extra, and the rest of the pipeline runs.
                checks[extra.name] = Check(f"extra [{extra.name}]", "warn", f"not installed: {', '.join(missing)}, "
                                           f"{needed_by} (pip install -e '.[{extra.name}]')")
            else:
                checks[extra.name] = Check(f"extra [{extra.name}]", "ok", "installed: " + ", ".join(extra.modules))
    return list(checks.values())


def check_kinds(registry: Registry, config: Config) -> list[Check]:
    """Each enabled actor's own preflight checks (from its kind's spec)."""
    checks = []
    for name, actor in config.enabled_actors().items():
        spec = registry.spec(actor.kind_for(name))
        settings = spec.typed_settings(actor.settings)
        for preflight in spec.preflight:
            checks.extend(preflight(name, settings))
    return checks


def check_gpu() -> Check:
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
        if done.returncode == 0 and done.stdout.strip():
            return Check("gpu", "ok", done.stdout.strip().replace("\n", "; "))
    return Check("gpu", "ok", "none found: CPU paths will be used")


def validate(config: Config) -> int:
    """Print a preflight table; 0 when nothing failed, 1 otherwise."""
    registry = Registry.for_config(config)
    paths = runtime_paths(config)
    enabled = config.enabled_actors()
    kinds = sorted({actor.kind_for(name) for name, actor in enabled.items()})
    checks = [Check("config", "ok", f"valid, {len(enabled)} enabled actor(s): " + ", ".join(enabled))]
    checks.append(check_dir("runtime folder", paths.runtime_dir, private=True))
    checks.extend(check_endpoints(paths))
    checks.append(check_dir("log folder", paths.log_dir, private=False))
    checks.extend(check_extras(registry, kinds))
    checks.extend(check_actor_code(config, kinds))
    checks.extend(check_kinds(registry, config))
    checks.append(check_gpu())
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status.upper():4}  {c.name.ljust(width)}  {c.detail}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    print(f"\n{len(checks)} checks: {len(checks) - failed - warned} ok, {warned} warning(s), {failed} failed")
    return 1 if failed else 0


def main(argv: list[str], config: Config) -> int:
    """``sensorium validate``."""
    argparse.ArgumentParser(prog="sensorium validate",
                            description="Preflight checks before a run: folders, endpoints, every enabled kind's "
                            "packages, code and files. Exit 0 when nothing failed, 1 otherwise.").parse_args(argv)
    return validate(config)
