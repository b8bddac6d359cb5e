"""The console's pure decisions: request parsing, Origin/Host rules, rate limits, job progress lines."""

from __future__ import annotations

import json

import pytest

from actors.console import protocol
from actors.console.gestures import accuracy_by_day
from actors.console.jobs import parse_line
from actors.console.protocol import ApiError, TokenBucket, next_send_at, origin_allowed, parse_request


def code(data: str, max_bytes: int = 1000) -> str:
    with pytest.raises(ApiError) as exc:
        parse_request(data, max_bytes)
    return exc.value.code


def test_requests_are_checked_before_anything_runs() -> None:
    req = parse_request(json.dumps({"id": 3, "cmd": "subscribe", "args": {"topic": "detect.", "max_hz": 2}}), 1000)
    assert (req.id, req.cmd, req.args, req.token) == (3, "subscribe", {"topic": "detect.", "max_hz": 2}, None)
    assert code("{") == "bad_json"
    assert code("[]") == "bad_request"
    assert code('{"cmd": "info", "x": 1}') == "bad_request"
    assert code('{"cmd": "rm -rf"}') == "unknown_command"
    assert code('{"cmd": "subscribe", "args": []}') == "bad_args"
    assert code('{"cmd": "subscribe", "args": {}}') == "bad_args"
    assert code('{"cmd": "subscribe", "args": {"topic": true}}') == "bad_args"
    assert code('{"cmd": "models.cleanup", "args": {"keep": true}}') == "bad_args"  # a bool is not an int here
    assert code('{"cmd": "info", "token": 5}') == "bad_request"
    assert code(json.dumps({"cmd": "info", "id": "x" * 2000})) == "too_large"


def test_destructive_commands() -> None:
    assert protocol.is_destructive("models.promote", {})
    assert protocol.is_destructive("supervisor", {"command": "stop"})
    assert protocol.is_destructive("ctl", {"command": "stop"})
    assert not protocol.is_destructive("supervisor", {"command": "restart"})
    assert not protocol.is_destructive("models.list", {})


@pytest.mark.parametrize("origin, host, scheme, allowed, ok", [
    (None, "127.0.0.1:8080", "http", [], True),                       # not a browser
    ("http://127.0.0.1:8080", "127.0.0.1:8080", "http", [], True),    # the console's own page
    ("http://localhost:8080", "localhost:8080", "http", [], True),
    ("http://evil.example", "127.0.0.1:8080", "http", [], False),     # another site
    ("http://127.0.0.1:9000", "127.0.0.1:8080", "http", [], False),   # another local page
    ("https://127.0.0.1:8080", "127.0.0.1:8080", "http", [], False),  # another scheme
    ("null", "127.0.0.1:8080", "http", [], False),                    # a sandboxed frame or a file
    ("https://app.example", "10.0.0.2:8443", "https", ["https://app.example"], True),
    ("https://10.0.0.2", "10.0.0.2:443", "https", [], True),          # default port
])
def test_origin_rules(origin, host, scheme, allowed, ok) -> None:
    assert origin_allowed(origin, host, scheme, allowed) is ok


def test_host_rule_on_loopback() -> None:
    assert protocol.host_allowed("127.0.0.1:8080", True) and protocol.host_allowed("[::1]:8080", True)
    assert protocol.host_allowed("localhost:8080", True)
    assert not protocol.host_allowed("evil.example:8080", True)
    assert protocol.host_allowed("console.lan:8443", False)


def test_token_bucket_and_latest_value_timing() -> None:
    bucket = TokenBucket(rate=10, burst=20, stamp=0.0)
    assert sum(bucket.take(0.0) for _ in range(100)) == 20
    assert not bucket.take(0.05) and bucket.take(0.1)
    assert next_send_at(None, 5, 10.0) == 10.0
    assert next_send_at(10.0, 5, 10.1) == pytest.approx(10.2)
    assert next_send_at(10.0, 5, 11.0) == 11.0


def test_progress_lines_make_the_job() -> None:
    job = {"state": "running", "signal": "cross"}
    for line in ["cross: 32 training, 8 validation samples (40 boxes); backbone v1 frozen",
                 "train cross: 4/8 epoch (50%), 3.1 s, loss=0.512, val_f1=0.400",
                 "train cross: 8/8 epoch (100%), 6.0 s, loss=0.301, val_f1=0.750",
                 "             precision  recall     F1",
                 "new u1           0.800   0.700  0.747",
                 "cross u1: first version: promoted itself",
                 "__exit__ 0"]:
        parse_line(job, line)
    assert job["state"] == "done" and job["exit_code"] == 0
    assert job["progress"] == {"epoch": 8, "loss": 0.301, "val_f1": 0.75, "epochs": 8, "percent": 100, "seconds": 6.0}
    assert [p["epoch"] for p in job["curve"]] == [4, 8]
    assert job["result"] == {"version": "u1", "precision": 0.8, "recall": 0.7, "f1": 0.747,
                             "decision": "first version: promoted itself", "promoted": True}
    failed = {"state": "running", "signal": "cross"}
    parse_line(failed, "sensorium models train: data: no boxes labelled 'cross'")
    parse_line(failed, "__exit__ 1")
    assert failed["state"] == "failed" and "no boxes" in failed["error"]
    waits = {"state": "running", "signal": "cross"}
    parse_line(waits, "cross u2: F1 0.700 vs the active 0.747: -4.7 points (not > 2): waits for a manual promote")
    assert waits["result"]["promoted"] is False and waits["result"]["version"] == "u2"


def test_accuracy_by_day() -> None:
    day = 1764460800.0  # 2025-11-30T00:00:00Z
    attempts = [{"ts": day + 10, "correct": True}, {"ts": day + 20, "correct": False},
                {"ts": day + 86400, "correct": True}]
    assert accuracy_by_day(attempts) == [
        {"day": "2025-11-30", "attempts": 2, "correct": 1, "accuracy": 0.5},
        {"day": "2025-12-01", "attempts": 1, "correct": 1, "accuracy": 1.0}]


def test_who_may_run_what(tmp_path) -> None:
    pytest.importorskip("aiohttp")
    from actors.console.server import Client, WebServer, load_or_make_token
    from actors.console.settings import ConsoleSettings
    from actors.console.protocol import Request

    token, made = load_or_make_token(tmp_path / "console" / "token")
    assert made and (tmp_path / "console" / "token").stat().st_mode & 0o777 == 0o600
    assert load_or_make_token(tmp_path / "console" / "token") == (token, False)  # made once
    server = WebServer(None, ConsoleSettings(), tmp_path, tmp_path)  # type: ignore[arg-type]
    server.token = token

    def allowed(cmd: str, args: dict, tok: str | None = None, authed: bool = False) -> bool | str:
        client = Client(None, ConsoleSettings(), authed=authed)  # type: ignore[arg-type]
        try:
            server._authorise(client, Request(1, cmd, args, tok))
        except ApiError as exc:
            return exc.code
        return True

    # Loopback: reading and restarting need nothing; destructive commands need the token.
    assert allowed("models.list", {}) is True
    assert allowed("supervisor", {"command": "restart", "actor": "x"}) is True
    assert allowed("supervisor", {"command": "stop", "actor": "x"}) == "unauthorized"
    assert allowed("supervisor", {"command": "stop", "actor": "x"}, token) is True
    assert allowed("models.promote", {"signal": "a", "version": "1"}, authed=True) is True
    assert allowed("models.list", {}, "wrong") == "unauthorized"
    # Off loopback: everything but info and auth needs the token.
    server.loopback = False
    assert allowed("info", {}) is True
    assert allowed("models.list", {}) == "unauthorized"
    assert allowed("actors", {}, token) is True
    assert allowed("actors", {}, authed=True) is True
