"""Whatever reaches the control socket, the supervisor answers and goes on.

Hypothesis throws random msgpack values and maps (shaped like requests, with
the real field names and a real actor name among the random ones) and random
multipart frames at a running supervisor's control socket; after each, and
at the end, the supervisor is alive and answers ``status``. Costs ~30-60 s.
"""

from __future__ import annotations

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import control
from tests.support import WAIT_S

pytestmark = pytest.mark.slow

ACTOR = "probe@f"
FAST = "[actor_defaults]\nbackoff = { initial_s = 0.1, jitter = 0.0 }\n"

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=20),
                    st.binary(max_size=20), st.sampled_from(["status", "start", "stop", "restart", ACTOR, "ghost"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-2**63, 2**63 - 1), st.sampled_from(
                          ["cmd", "actor", "token"])), inner, max_size=4), max_leaves=12)
requests = st.dictionaries(st.sampled_from(["cmd", "actor", "token", "timeout"]), values, max_size=3)
payloads = st.one_of(requests.map(lambda r: msgpack.packb(r, use_bin_type=True)),
                     values.map(lambda v: msgpack.packb(v, use_bin_type=True)), st.binary(max_size=64))
frame_lists = st.lists(st.one_of(st.just(b""), st.binary(max_size=32)), min_size=1, max_size=4)


class ControlClient:
    """A DEALER speaking REQ's framing ([b"", payload]), so that odd frames can be sent too."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def ask(self, payload: bytes, timeout_s: float = WAIT_S) -> dict:
        self.sock.send_multipart([b"", payload])
        assert self.sock.poll(int(timeout_s * 1000)), f"no answer to {payload[:80]!r}"
        frames = self.sock.recv_multipart()
        assert frames[0] == b"" and len(frames) == 2, frames
        reply = msgpack.unpackb(frames[1])
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
        assert reply["ok"] or isinstance(reply.get("error"), str), reply
        return reply

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fuzzed(supervisor_factory):
    sup = supervisor_factory(f'[actors."{ACTOR}"]\n', FAST)
    sup.wait_running(ACTOR)
    client = ControlClient(sup.control)
    yield sup, client
    client.close()


def alive_and_answering(sup) -> None:
    assert sup.proc.poll() is None, f"the supervisor exited {sup.proc.returncode}: {sup.output()[-2000:]}"
    assert control.request(sup.control, "status", timeout_s=10)["ok"]


def test_the_requests_of_the_issue_are_answered_with_an_error(fuzzed):
    sup, client = fuzzed
    for request, error in [({"cmd": "stop", "actor": [1]}, "needs 'actor'"),
                           ({"cmd": ["stop"]}, "unknown command"),
                           ({"cmd": "stop", "actor": "ghost"}, "no actor named 'ghost'"),
                           ({"cmd": "status", "actor": ACTOR}, "status takes no actor"),
                           ({"cmd": "status", "extra": {"a": 1}}, "unknown request field"),
                           ([1, 2], "not a map")]:
        reply = client.ask(msgpack.packb(request))
        assert not reply["ok"] and error in reply["error"], (request, reply)
    reply = client.ask(b"\xc1")  # never valid msgpack
    assert not reply["ok"] and "malformed" in reply["error"]
    alive_and_answering(sup)
    status = sup.status()
    assert status["control"]["invalid"] >= 7 and status["actors"][0]["state"] == "running"


def test_an_oversized_request_is_dropped_and_the_supervisor_goes_on(fuzzed):
    sup, client = fuzzed
    client.sock.send_multipart([b"", b"\x00" * (control.MAX_REQUEST_BYTES + 1)])  # libzmq drops the peer
    alive_and_answering(sup)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads)
def test_random_payloads_are_answered(fuzzed, payload):
    sup, client = fuzzed
    client.ask(payload)
    assert sup.proc.poll() is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=frame_lists)
def test_random_frames_leave_the_supervisor_answering(fuzzed, frames):
    sup, _client = fuzzed
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    try:
        raw.connect(sup.control)
        raw.send_multipart(frames)  # answered or not (no delimiter: nowhere to answer), never fatal
        alive_and_answering(sup)
    finally:
        raw.close()
