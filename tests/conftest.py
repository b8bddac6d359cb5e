"""Fixtures: a private ipc folder per test, a running broker, running supervisors.

Every process a test starts is tracked and killed at teardown.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
import zmq

from bus.broker import Broker
from tests.support import Collector, SupervisorProcess, write_config


@pytest.fixture(autouse=True)
def user_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty $XDG_DATA_HOME (the user model store lives there), so no test reads or
    writes the real user's data; processes the test starts inherit it."""
    folder = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(folder))
    return folder


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    """A short private folder (/tmp/snXXXXXXXX): unix socket paths must stay under ~100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="sn", dir="/tmp"))
    folder.chmod(0o700)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class RunningBroker:
    def __init__(self, folder: Path) -> None:
        self.ctx = zmq.Context.instance()
        self.frontend = f"ipc://{folder}/pub.sock"
        self.backend = f"ipc://{folder}/sub.sock"
        self.broker = Broker(self.frontend, self.backend, ctx=self.ctx).start()


@pytest.fixture
def broker(ipc_dir: Path) -> Iterator[RunningBroker]:
    running = RunningBroker(ipc_dir)
    yield running
    running.broker.stop()


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(where: "SupervisorProcess | RunningBroker", prefixes: list[str]) -> Collector:
        """A collector on ``where``'s bus, subscribed before it returns."""
        c = Collector(where.frontend, where.backend, prefixes)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def supervisor_factory(ipc_dir: Path) -> Iterator[Callable[..., SupervisorProcess]]:
    """Start ``supervisor.py run`` on a config of the given actors; all processes die at teardown."""
    started: list[SupervisorProcess] = []

    def start(actors_toml: str, extra_toml: str = "", env: dict[str, str] | None = None) -> SupervisorProcess:
        """``env``: extra environment variables for the supervisor and so its actors."""
        config = write_config(ipc_dir, actors_toml, extra_toml)
        sup = SupervisorProcess(config, ipc_dir, env)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.cleanup()
