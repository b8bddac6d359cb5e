"""A tcp control endpoint answers only requests that carry the token of the runtime folder."""

from __future__ import annotations

import socket
import stat

import pytest

from bus import control
from tests.support import wait_until

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_control_refuses_requests_without_the_token(supervisor_factory):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sup = supervisor_factory('[actors."probe@tk"]\n', f'control = "{endpoint}"\n')
    sup.control = endpoint
    token_file = sup.folder / control.TOKEN_FILE
    sup.wait_running("probe@tk")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    with pytest.raises(control.ControlError, match="refused: no control token"):
        control.request(endpoint, "status")
    with pytest.raises(control.ControlError, match="refused: wrong control token"):
        control.request(endpoint, "stop", token="x" * 43, actor="probe@tk")
    assert sup.actor("probe@tk")["state"] == "running"  # the refused stop did nothing
    assert sup.status()["control"]["refused"] == 2
    # The CLI reads the token from the runtime folder.
    assert "probe@tk" in sup.cli("status", check=True).stdout
    assert "stopped" in sup.cli("stop", "probe@tk", check=True).stdout
    assert sup.terminate() == 0
    wait_until(lambda: not token_file.exists(), what="the token file removed at exit")


def test_ipc_control_needs_no_token(supervisor_factory):
    sup = supervisor_factory('[actors."probe@ipc"]\n')
    sup.wait_running("probe@ipc")
    assert control.request(sup.control, "status")["ok"]
    assert not (sup.folder / control.TOKEN_FILE).exists()
