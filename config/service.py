"""``sensorium service install|uninstall|status``: run Sensorium on boot under systemd.

Three units, written from the configuration (``units`` is pure, unit-tested):

* ``sensorium.service`` runs the supervisor (``supervisor.py run -c CONFIG``):
  restarted on failure; stopped with SIGINT to the supervisor alone
  (``KillMode=mixed``), which stops its actors in dependency order, and
  ``TimeoutStopSec`` long enough for that (``stop_timeout_s``) before systemd
  kills what is left;
* ``sensorium-batch.service`` (oneshot) and ``sensorium-batch.timer``: a nightly
  ``sensorium batch events --per-user`` over the recordings folder.

``--user`` installs into ``~/.config/systemd/user`` (runs while the user is
logged in, or always after ``loginctl enable-linger``); without it, into
``/etc/systemd/system`` (root). It lives in ``config/`` because it depends on
no kind and only reads the configuration; ``supervisor.main`` lists it
next to ``config`` and ``validate``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from config.paths import REPO_ROOT, default_data_dir
from config.schema import Config

SERVICE = "sensorium.service"
BATCH_SERVICE = "sensorium-batch.service"
BATCH_TIMER = "sensorium-batch.timer"
UNITS = (SERVICE, BATCH_SERVICE, BATCH_TIMER)
STOP_MARGIN_S = 10.0
"""Added to the supervisor's own worst case, seconds."""


def stop_timeout_s(config: Config) -> float:
    """How long a clean stop of the supervisor may take, seconds: per dependency level (actors of one level
    stop in parallel) the longest grace period plus the wait after SIGTERM, and a margin."""
    actors = {n: a for n, a in config.actors.items() if a.enabled}
    depth: dict[str, int] = {}

    def level(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in depth:
            deps = [d for d in actors[name].after if d in actors and d not in seen]
            depth[name] = 1 + max((level(d, seen | {name}) for d in deps), default=0)
        return depth[name]

    levels: dict[int, float] = {}
    for name, spec in actors.items():
        n = level(name)
        levels[n] = max(levels.get(n, 0.0), spec.shutdown_s)
    term_wait = config.supervisor.term_wait_s
    return round(sum(s + term_wait for s in levels.values()) + STOP_MARGIN_S, 1)


def units(config: Config, config_path: Path | None, *, user: bool, python: str = sys.executable,
          batch_dir: Path | None = None, batch_out: Path | None = None, on_calendar: str = "*-*-* 03:00:00",
          timer: bool = True) -> dict[str, str]:
    """File name -> text of the units for ``config`` (read from ``config_path``)."""
    cfg = f" -c {config_path}" if config_path else ""
    sup = f"{python} {REPO_ROOT / 'supervisor.py'}"
    wanted_by = "default.target" if user else "multi-user.target"
    env = "Environment=PYTHONUNBUFFERED=1\n"
    if not user and os.environ.get("HOME"):
        env += f"Environment=HOME={os.environ['HOME']}\n"  # keys, models and data of the installing user
    out = {SERVICE: f"""[Unit]
Description=Sensorium perception runtime (supervisor, broker and actors)
Documentation=file://{REPO_ROOT / 'README.md'}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
WorkingDirectory={REPO_ROOT}
ExecStart={sup} run{cfg}
{env}Restart=on-failure
RestartSec=5
# SIGINT to the supervisor only: it stops its actors in dependency order; whatever is left after
# TimeoutStopSec is killed.
KillSignal=SIGINT
KillMode=mixed
TimeoutStopSec={stop_timeout_s(config):g}

[Install]
WantedBy={wanted_by}
"""}
    if timer:
        data = default_data_dir()
        recordings = batch_dir or data / "recordings"
        results = batch_out or data / "batch" / "events.jsonl"
        out[BATCH_SERVICE] = f"""[Unit]
Description=Sensorium nightly batch: sound events per user
Documentation=file://{REPO_ROOT / 'README.md'}

[Service]
Type=oneshot
WorkingDirectory={REPO_ROOT}
ExecStartPre=/bin/mkdir -p {results.parent}
ExecStart={sup} batch events {recordings} --per-user --out {results} --no-progress{cfg}
{env}Nice=10
"""
        out[BATCH_TIMER] = f"""[Unit]
Description=Sensorium nightly batch (sound events per user)

[Timer]
OnCalendar={on_calendar}
Persistent=true
RandomizedDelaySec=900
Unit={BATCH_SERVICE}

[Install]
WantedBy=timers.target
"""
    return out


def unit_dir(user: bool) -> Path:
    if user:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        return (Path(xdg) if xdg else Path.home() / ".config") / "systemd" / "user"
    return Path("/etc/systemd/system")


def _systemctl(user: bool, *args: str) -> int:
    cmd = ["systemctl", *(["--user"] if user else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and args[0] != "status":
        print(f"sensorium service: `{' '.join(cmd)}` failed: {done.stderr.strip()}", file=sys.stderr)
    if args[0] == "status":
        print(done.stdout, end="")
    return done.returncode


def main(argv: list[str], config: Config) -> int:
    """``sensorium service install|uninstall|status [--user]``."""
    parser = argparse.ArgumentParser(prog="sensorium service", description="Run Sensorium on boot under systemd: "
                                     "the supervisor as a service, and a nightly batch timer.")
    sub = parser.add_subparsers(dest="action", required=True)
    for action, text in (("install", "write the units, reload systemd, enable them"),
                         ("uninstall", "disable and remove the units"), ("status", "systemctl status of the units")):
        p = sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("--user", action="store_true", help="a user service (~/.config/systemd/user) instead of a "
                       "system one (/etc/systemd/system, as root)")
        p.add_argument("--dir", type=Path, help="write the units here and leave systemd alone (packaging, checks)")
        if action == "install":
            p.add_argument("--batch-dir", type=Path, help="recordings for the nightly batch, a sub-folder per user "
                           "(default: ~/.local/share/sensorium/recordings)")
            p.add_argument("--batch-out", type=Path, help="its JSON lines results (default: "
                           "~/.local/share/sensorium/batch/events.jsonl)")
            p.add_argument("--at", default="*-*-* 03:00:00", help="when the batch runs, a systemd OnCalendar "
                           "expression (default: %(default)s)")
            p.add_argument("--no-timer", action="store_true", help="the supervisor service only")
            p.add_argument("--no-enable", action="store_true", help="write and reload, but do not enable")
    args = parser.parse_args(argv)
    folder = args.dir or unit_dir(args.user)
    has_systemctl = args.dir is None and shutil.which("systemctl") is not None
    if args.action == "install":
        config_path = os.environ.get("SENSORIUM_CONFIG")
        written = units(config, Path(config_path).resolve() if config_path else None, user=args.user,
                        batch_dir=args.batch_dir, batch_out=args.batch_out, on_calendar=args.at,
                        timer=not args.no_timer)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in written.items():
                (folder / name).write_text(text)
        except OSError as exc:
            print(f"sensorium service install: cannot write {folder}: {exc}"
                  + ("" if args.user else " (a system service needs root; or use --user)"), file=sys.stderr)
            return 1
        print(f"wrote {', '.join(written)} to {folder}")
        if args.dir is None and not has_systemctl:
            print("no systemctl here: enable the units with your init system", file=sys.stderr)
        elif has_systemctl:
            if _systemctl(args.user, "daemon-reload"):
                return 1
            if not args.no_enable:
                enable = [SERVICE] + ([BATCH_TIMER] if not args.no_timer else [])
                if _systemctl(args.user, "enable", *enable):
                    return 1
                print(f"enabled {', '.join(enable)}; start now with: systemctl {'--user ' if args.user else ''}"
                      f"start {SERVICE}")
        return 0
    if args.action == "uninstall":
        if has_systemctl:
            _systemctl(args.user, "disable", "--now", SERVICE, BATCH_TIMER)
        removed = [n for n in UNITS if (folder / n).exists()]
        for name in removed:
            (folder / name).unlink()
        if has_systemctl:
            _systemctl(args.user, "daemon-reload")
        print(f"removed {', '.join(removed) or 'nothing'} from {folder}")
        return 0
    present = [n for n in UNITS if (folder / n).exists()]
    print(f"units in {folder}: {', '.join(present) or 'none'}")
    if has_systemctl and present:
        _systemctl(args.user, "status", "--no-pager", *[n for n in present if n != BATCH_SERVICE])
    return 0 if present else 3
