"""Topic rules and endpoint rules (where the bus may listen)."""

from __future__ import annotations

import os
import stat

import pytest

from bus.endpoints import EndpointError, Endpoints, check_endpoint, ensure_private_dir
from bus.topics import TopicError, validate_prefix, validate_topic


@pytest.mark.parametrize("topic", ["camera.frame", "detect.wifi_24", "ctl.detector@vision", "sys.heartbeat", "a"])
def test_valid_topics(topic):
    assert validate_topic(topic) == topic


@pytest.mark.parametrize("topic", ["Camera.frame", "camera.", ".camera", "camera..frame", "ca mera", "1abc", "é.x"])
def test_invalid_topics(topic):
    with pytest.raises(TopicError):
        validate_topic(topic)


@pytest.mark.parametrize("prefix", ["", "detect.", "sys.heartbeat"])
def test_subscription_prefixes(prefix):
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5555", "tcp://192.168.1.5:5555", "tcp://*:5555",
                                      "tcp://example.com:80", "tcp://128.1:5555", "tcp://0x80.0.0.1:1",
                                      "tcp://127.0.0.1 evil:1", "tcp://[::2]:1", "tcp://:1"])
def test_binding_beyond_loopback_is_refused_without_curve(endpoint):
    with pytest.raises(EndpointError, match="CURVE"):
        check_endpoint(endpoint, binding=True)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:5555",
                                      "tcp://127.1:5555", "tcp://127.0.0.2:5555", "tcp://127.255.255.254:1",
                                      "tcp://0x7f.1:1", "tcp://2130706433:1", "ipc:///tmp/x/pub.sock", "inproc://x"])
def test_loopback_and_ipc_may_be_bound(endpoint):
    check_endpoint(endpoint, binding=True)


def test_a_short_loopback_address_can_really_be_bound():
    """127.1 is what inet_aton (and so ZeroMQ's resolver) reads as 127.0.0.1: accepted, and it binds."""
    import zmq

    check_endpoint("tcp://127.1:0", binding=True)
    sock = zmq.Context.instance().socket(zmq.PUB)
    try:
        sock.bind("tcp://127.1:*")
        assert sock.getsockopt(zmq.LAST_ENDPOINT).decode().startswith("tcp://127.0.0.1:")
    finally:
        sock.close(linger=0)


def test_connecting_to_a_remote_bus_is_allowed():
    check_endpoint("tcp://192.168.1.5:5555", binding=False)


def test_ipc_paths_too_long_for_a_unix_socket_are_refused():
    with pytest.raises(EndpointError, match="runtime_dir"):
        check_endpoint("ipc:///tmp/" + "x" * 120 + "/pub.sock", binding=True)


def test_unknown_transport_is_refused():
    with pytest.raises(EndpointError, match="unsupported"):
        check_endpoint("udp://127.0.0.1:1", binding=True)


def test_runtime_dir_is_private(tmp_path):
    folder = tmp_path / "rt"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    ensure_private_dir(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    fresh = ensure_private_dir(tmp_path / "new" / "rt")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_default_endpoints_are_ipc_in_the_runtime_dir(tmp_path):
    eps = Endpoints.resolve(tmp_path)
    assert eps.frontend == f"ipc://{tmp_path}/pub.sock"
    assert eps.backend == f"ipc://{tmp_path}/sub.sock"
    assert eps.control == f"ipc://{tmp_path}/control.sock"
