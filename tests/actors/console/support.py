"""A running console for the console tests: a supervisor with the console and a few actors, and a client."""

from __future__ import annotations

import json
import socket
import tempfile
import shutil
from pathlib import Path
from typing import Any, Iterator

from tests.support import SupervisorProcess, wait_until, write_config

WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """A supervisor running the console (and ``actors_toml``, where ``{gestures}`` stands for the console's
    gesture store) with a private data folder."""

    def __init__(self, actors_toml: str | None, console_settings: str = "") -> None:
        """``actors_toml`` None: the embedded default pipeline (every kind, Whisper and TensorFlow included),
        with its ports and stores moved into this console's folder."""
        self.folder = Path(tempfile.mkdtemp(prefix="snc", dir="/tmp"))
        self.folder.chmod(0o700)
        self.data = self.folder / "xdg"
        self.data.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.token_path = self.data / "sensorium" / "console" / "token"
        self.gesture_store = self.data / "sensorium" / "gestures" / "store.gst"
        console = (f'[actors.console]\nsettings = {{ port = {self.port}, '
                   f'gestures = {{ path = "{self.gesture_store}" }}{console_settings} }}\n')
        env = {"XDG_DATA_HOME": str(self.data)}
        if actors_toml is None:
            config = self.folder / "sensorium.toml"
            config.write_text(f'[bus]\nruntime_dir = "{self.folder}"\n\n{console}'
                              '[actors.monitor.settings]\nprometheus_port = 0\n'
                              f'[actors.gesture.settings]\nstore = {{ path = "{self.gesture_store}" }}\n')
        else:
            config = write_config(self.folder, console + actors_toml.replace("{gestures}", str(self.gesture_store)))
        self.sup = SupervisorProcess(config, self.folder, env)

    def wait_ready(self, *names: str, wait_s: float = WAIT_S) -> None:
        self.sup.wait_running("console", *names, timeout_s=wait_s)
        wait_until(self.token_path.exists, WAIT_S, "the console token file")

    @property
    def token(self) -> str:
        return self.token_path.read_text().strip()

    def close(self) -> None:
        self.sup.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)


class Client:
    """A websocket client of the API: ``call`` sends a request and returns its reply; events are kept."""

    def __init__(self, url: str, origin: str | None = None) -> None:
        from websockets.sync.client import connect

        headers = {"Origin": origin} if origin else None
        self.ws = connect(url, additional_headers=headers, max_size=1 << 24, open_timeout=20, legacy=True)
        self.events: list[dict[str, Any]] = []
        self.n = 0

    def send_raw(self, data: str | bytes) -> None:
        self.ws.send(data)

    def reply(self, req_id: Any = None, timeout_s: float = WAIT_S) -> dict[str, Any]:
        import time

        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply to request {req_id!r} within {timeout_s:g} s")
            m = json.loads(self.ws.recv(timeout=left))
            if "type" in m:
                self.events.append(m)
                continue
            if m.get("id") == req_id:
                return m

    def call(self, cmd: str, token: str | None = None, wait_s: float = WAIT_S, **args: Any) -> dict[str, Any]:
        self.n += 1
        req: dict[str, Any] = {"id": self.n, "cmd": cmd, "args": args}
        if token is not None:
            req["token"] = token
        self.ws.send(json.dumps(req))
        return self.reply(self.n, wait_s)

    def ok(self, cmd: str, token: str | None = None, **args: Any) -> Any:
        r = self.call(cmd, token, **args)
        assert "error" not in r, f"{cmd} {args}: {r['error']}"
        return r["result"]

    def wait_event(self, pred: Any, timeout_s: float = WAIT_S, what: str = "event") -> dict[str, Any]:
        import time

        for e in self.events:
            if pred(e):
                return e
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; last events: {self.events[-5:]}")
            try:
                m = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if "type" in m:
                self.events.append(m)
                if pred(m):
                    return m

    def close(self) -> None:
        self.ws.close()


def running_console(actors_toml: str | None, *names: str, console_settings: str = "",
                    wait_s: float = WAIT_S) -> Iterator[Console]:
    c = Console(actors_toml, console_settings)
    try:
        c.wait_ready(*names, wait_s=wait_s)
        yield c
    finally:
        c.close()
